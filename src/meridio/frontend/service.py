"""The frontend controller: one owner of the FE state, driving BIRD, the VIP rules and the NSP registration.

Inputs arrive through synchronous setters (:meth:`Frontend.set_attractor`, :meth:`~Frontend.set_secrets`,
:meth:`~Frontend.set_lb_available`) called by the watcher tasks of :mod:`meridio.frontend.app`; each only
records the value and wakes the reconciler. The background loops (all under :meth:`Frontend.run`):

- ``bird``: starts BIRD (as our child) with a minimal configuration, restarts it with backoff when it
  dies, and stops it on shutdown;
- ``reconcile``: recomputes the whole desired bird.conf (:mod:`desired`, :mod:`announce`), and when the
  text differs from what BIRD runs, writes it and sends ``configure`` over the control socket. A config
  BIRD refuses is logged with BIRD's own message and the running one stays; if the error is inside one
  gateway's protocol that gateway is left out (and the rest applied), else nothing changes. Then the
  VIP source routing rules are set to the VIPs;
- ``monitor``: queries the gateway protocols (and BFD sessions for static gateways) every second
  (every 3 s without connectivity), and at once when BIRD logs a session state change (``echo``), feeds
  :class:`gateways.Tracker` and reacts to connectivity changes;
- ``registration``: keeps the FRONTEND target registered in the NSP while there is connectivity
  (refreshed every ``refresh_interval_s``), unregistered otherwise.

Readiness (sub-service ``Egress``): connectivity, and BIRD accepted the whole desired configuration.

An :class:`Observer` (the frontend's metrics) is told what each check saw, when the sessions are lost
(BIRD restarted, died or stopped answering) and how each ``configure`` went; it never queries BIRD itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import os
import pathlib
import re
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from meridio.api import model
from meridio.bird import birdc, birdconf
from meridio.bird.birdconf import BirdConfig, BirdGateway
from meridio.common import health as healthmod
from meridio.common import log as logmod
from meridio.common import tasks
from meridio.common.retry import Backoff, PermanentError, TemporaryError
from meridio.frontend import announce, desired, gateways, registration
from meridio.kernel import bird

__all__ = ["Options", "RulesPort", "Observer", "ApplyResult", "Frontend"]

_ERROR_LINE = re.compile(r"^[^:]+:(\d+):\d+ ")
_QUERY_TIMEOUT_S = 2.0
"""A frozen BIRD fails the monitor's queries after this long (``max_session_errors`` failures = down)."""
_RELEVANT_NOTICE = ("State changed", "BFD session", "session closed", "session established")


class RulesPort(Protocol):
    """What the frontend needs of :class:`meridio.frontend.viprules.VipRules`."""

    def apply(self, vips: Iterable[birdconf.IPNetwork]) -> object: ...

    def clear(self) -> object: ...


class ApplyResult(str, enum.Enum):
    """How one ``configure`` of BIRD ended."""

    OK = "ok"
    REFUSED = "refused"
    """BIRD parsed the new configuration and refused it (it keeps running the old one)."""
    FAILED = "failed"
    """BIRD could not be asked (control socket gone or timed out)."""


class Observer(Protocol):
    """What the frontend reports as it works; :mod:`meridio.frontend.metrics` implements it.

    Called on the frontend's loop, synchronously, between two of its awaits (keep it cheap)."""

    def gateways_seen(self, gateways: Sequence[BirdGateway], protocols: Sequence[birdc.ProtocolInfo],
                      sessions: Sequence[birdc.BfdSession]) -> None:
        """One successful check: the configured gateways and what BIRD said of them."""

    def gateways_lost(self) -> None:
        """Nothing is known to be up any more (BIRD restarted, died, or failed too many queries)."""

    def bird_applied(self, result: ApplyResult, seconds: float) -> None:
        """One ``configure`` of BIRD took ``seconds`` and ended with ``result``."""


class _NoObserver:
    def gateways_seen(self, gateways: Sequence[BirdGateway], protocols: Sequence[birdc.ProtocolInfo],
                      sessions: Sequence[birdc.BfdSession]) -> None:
        pass

    def gateways_lost(self) -> None:
        pass

    def bird_applied(self, result: ApplyResult, seconds: float) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Options:
    hostname: str
    base: BirdConfig
    """Interface, router id, tables, logging and timers; VIPs and gateways come from the NSP."""
    run_dir: pathlib.Path
    bird_binary: str = "bird"
    defaults: desired.GatewayDefaults = desired.GatewayDefaults()
    monitor_interval_s: float = 1.0
    monitor_interval_down_s: float = 3.0
    max_session_errors: int = 5
    refresh_interval_s: float = 30.0
    """How often the FRONTEND target is re-registered (``NFE_NSP_ENTRY_TIMEOUT``)."""
    detailed_checks: bool = False
    """Each check asks ``show protocols all`` (route counts) and every gateway's BFD session, not only
    what connectivity needs (the metrics want them; off by default: a little less work per check)."""

    @property
    def config_path(self) -> pathlib.Path:
        return self.run_dir / "bird-fe-meridio.conf"

    @property
    def socket_path(self) -> pathlib.Path:
        return self.run_dir / "bird.ctl"


class Frontend:
    def __init__(self, opts: Options, *, rules: RulesPort, registry: registration.Registry | None = None,
                 health: healthmod.Health | None = None, observer: Observer | None = None,
                 log: logmod.Logger = logmod.null) -> None:
        self.opts = opts
        self.observer: Observer = observer or _NoObserver()
        self.rules = rules
        self.registry = registry
        self.health = health
        self.log = log
        self.tracker = gateways.Tracker(opts.max_session_errors)
        self.process: bird.BirdProcess | None = None
        self.control: bird.BirdControl | None = None
        self.config_accepted = True
        self._attractor: model.Attractor | None = None
        self._secrets: desired.Secrets = {}
        self._lb_available = False
        self._applied_text: str | None = None
        self._applied: BirdConfig = opts.base
        self._refused: dict[BirdGateway, str] = {}
        self._skipped: tuple[desired.Skipped, ...] = ()
        self._decision = announce.Decision(False, announce.Reason.NO_CONNECTIVITY)
        self._candidate_text = ""
        self._last_refusal = ""
        self._dirty = asyncio.Event()
        self._poke = asyncio.Event()
        self._registration = asyncio.Event()
        self._bird_up = asyncio.Event()
        self._stopping = False

    # --- inputs (synchronous: record and wake the reconciler) ----------------------------------

    def set_attractor(self, attractor: model.Attractor | None) -> None:
        self._attractor = attractor
        self._dirty.set()

    def set_secrets(self, secrets: desired.Secrets) -> None:
        self._secrets = secrets
        self._dirty.set()

    def set_lb_available(self, available: bool) -> None:
        self._lb_available = available
        self._dirty.set()

    @property
    def connectivity(self) -> bool:
        return self.tracker.connectivity

    @property
    def ready(self) -> bool:
        return self.tracker.connectivity and self.config_accepted

    @property
    def announced(self) -> bool:
        """Whether the configuration BIRD runs announces the VIPs."""
        return self._applied.advertise_vips

    @property
    def applied(self) -> BirdConfig:
        """The configuration BIRD runs."""
        return self._applied

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> bool:
        """Run every loop until ``stop`` is set, then withdraw and clean up (see :meth:`shutdown`).

        Returns ``False`` if a loop ended on its own (a bug: it is logged by its guard)."""
        self.opts.run_dir.mkdir(parents=True, exist_ok=True)
        loops = {"bird": self._bird_loop(), "reconcile": self._reconcile_loop(), "monitor": self._monitor_loop(),
                 "birdNotices": self._notice_loop(), "registration": self._registration_loop()}
        running = [asyncio.ensure_future(tasks.guard(coro, name, self.log)) for name, coro in loops.items()]
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
            return stopped in done
        finally:
            self._stopping = True
            for t in [stopped, *running]:
                t.cancel()
            for t in running:
                with contextlib.suppress(BaseException):
                    await t
            await self.shutdown()

    async def shutdown(self) -> None:
        """Withdraw (stop BIRD), remove the VIP rules, unregister the FRONTEND target."""
        self._stopping = True
        await self._drop_control()
        if self.process is not None:
            await self.process.stop()
        self._bird_up.clear()
        try:
            await asyncio.to_thread(self.rules.clear)
        except OSError as exc:
            self.log.error("vipRulesCleanupFailed", error=str(exc))
        if self.registry is not None:
            with contextlib.suppress(TemporaryError, PermanentError, asyncio.TimeoutError):
                await asyncio.wait_for(self.registry.unregister(announce.frontend_target(self.opts.hostname)), 5)
                self.log.info("frontendTargetUnregistered", reason="shutdown")
        self.log.info("frontendStopped")

    # --- BIRD process ---------------------------------------------------------------------------

    async def _bird_loop(self) -> None:
        backoff = Backoff(initial=0.5, cap=5.0)
        while not self._stopping:
            base = desired.desired(self.opts.base, None, {}).bird
            text = birdconf.render(base)
            self.opts.config_path.write_text(text)
            proc = bird.BirdProcess(self.opts.config_path, self.opts.socket_path, binary=self.opts.bird_binary,
                                    log=self.log.bind(bird="fe"))
            self.process = proc
            try:
                await proc.start()
                await self._drop_control()
                self.control = await bird.connect(self.opts.socket_path)
            except (bird.BirdStartError, bird.BirdConnectionError) as exc:
                self.log.error("birdStartFailed", error=str(exc))
                await proc.stop()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._applied_text, self._applied, self._refused = text, base, {}
            self._changes(self.tracker.reset("birdStarted"))
            self.observer.gateways_lost()
            self._bird_up.set()
            self._dirty.set()
            code = await proc.wait()
            self._bird_up.clear()
            await self._drop_control()
            if self._stopping:
                return
            self.log.error("birdExited", exitCode=code, error=proc.last_words(), reason="birdDied")
            self._applied = dataclasses.replace(self._applied, advertise_vips=False)
            self._changes(self.tracker.reset("birdExited"))
            self.observer.gateways_lost()
            await asyncio.sleep(backoff.next_delay())

    async def _control(self) -> bird.BirdControl:
        """The command connection, reconnected if a timeout or error closed it."""
        if not self._bird_up.is_set():
            raise bird.BirdConnectionError("BIRD is not running")
        if self.control is None:
            self.control = await bird.connect(self.opts.socket_path, timeout=_QUERY_TIMEOUT_S)
        return self.control

    async def _drop_control(self) -> None:
        if self.control is not None:
            await self.control.close()
            self.control = None

    # --- reconciliation -------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self._bird_up.wait()
            self._dirty.clear()
            await self._reconcile()

    def _desired(self) -> desired.Desired:
        has_vips = bool(self._attractor and self._attractor.vips)
        self._decision = announce.decide(connectivity=self.tracker.connectivity,
                                         lb_available=self._lb_available, has_vips=has_vips)
        d = desired.desired(self.opts.base, self._attractor, self._secrets, defaults=self.opts.defaults,
                            advertise=self._decision.announce)
        self._refused = {g: m for g, m in self._refused.items() if g in d.bird.gateways}
        kept = tuple(g for g in d.bird.gateways if g not in self._refused)
        self._log_skipped(d.skipped)
        return dataclasses.replace(d, bird=dataclasses.replace(d.bird, gateways=kept))

    async def _reconcile(self) -> None:
        before = self.announced
        d = self._desired()
        accepted = await self._configure(d.bird)
        while accepted is None and self._isolate_refused_gateway(d.bird):
            d = self._desired()
            accepted = await self._configure(d.bird)
        self.config_accepted = accepted is True and not self._refused
        if self.announced != before:
            self.log.info("vipsAnnounced" if self.announced else "vipsWithdrawn", reason=self._decision.reason.value,
                          vips=[str(v) for v in self._applied.vips])
        try:
            # pyroute2's synchronous API runs its own event loop: keep it off ours.
            await asyncio.to_thread(self.rules.apply, d.vips)
        except OSError as exc:
            self.config_accepted = False
            self.log.error("vipRulesFailed", error=str(exc))
        self._report_readiness()
        self._poke.set()

    async def _configure(self, cfg: BirdConfig) -> bool | None:
        """``True`` applied, ``False`` BIRD unreachable, ``None`` refused (see ``self._last_refusal``)."""
        text = birdconf.render(cfg)
        if text == self._applied_text:
            return True
        candidate = self.opts.config_path.with_suffix(".conf.new")
        candidate.write_text(text)
        self._candidate_text = text
        start = time.perf_counter()
        try:
            result = await (await self._control()).configure(candidate)
        except bird.BirdConnectionError as exc:
            self.observer.bird_applied(ApplyResult.FAILED, time.perf_counter() - start)
            await self._drop_control()
            self.log.error("birdConfigureFailed", error=str(exc))
            return False
        self.observer.bird_applied(ApplyResult.OK if result.ok else ApplyResult.REFUSED, time.perf_counter() - start)
        if not result.ok:
            self._last_refusal = result.message
            self.log.error("birdConfigRefused", error=result.message, reason="birdRefused")
            return None
        os.replace(candidate, self.opts.config_path)
        self._applied_text, self._applied = text, cfg
        self.log.info("birdReconfigured", announce=cfg.advertise_vips, vips=[str(v) for v in cfg.vips],
                      gateways=[g.name for g in cfg.gateways])
        return True

    def _isolate_refused_gateway(self, cfg: BirdConfig) -> bool:
        """If BIRD's error points into one gateway's protocol, leave that gateway out from now on."""
        m = _ERROR_LINE.match(self._last_refusal)
        name = birdconf.gateway_at_line(self._candidate_text, int(m.group(1))) if m else None
        culprit = next((g for g in cfg.gateways if g.name == name), None)
        if culprit is None:
            return False
        self._refused[culprit] = self._last_refusal
        self.log.error("gatewayRefused", gateway=culprit.name, error=self._last_refusal, reason="birdRefused")
        return True

    def _log_skipped(self, skipped: tuple[desired.Skipped, ...]) -> None:
        if skipped != self._skipped:
            for s in skipped:
                if s not in self._skipped:
                    self.log.error(f"{s.kind}Skipped", **{s.kind: s.name}, error=s.error, reason="invalidConfig")
            self._skipped = skipped

    def _report_readiness(self) -> None:
        if self.health is not None:
            self.health.set_serving(healthmod.EGRESS, self.ready)

    # --- supervision ----------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            await self._bird_up.wait()
            interval = self.opts.monitor_interval_s if self.tracker.connectivity else self.opts.monitor_interval_down_s
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), interval)
            self._poke.clear()
            await self.check_gateways()

    async def check_gateways(self) -> list[gateways.Change]:
        gws = self._applied.gateways
        detailed = self.opts.detailed_checks
        wants_bfd = any(g.bfd is not None for g in gws) if detailed else gateways.needs_bfd_sessions(gws)
        try:
            control = await self._control()
            protocols = await control.show_protocols(birdconf.NAME_PREFIX + "*", details=detailed,
                                                     timeout=_QUERY_TIMEOUT_S) if gws else []
            sessions = await control.show_bfd_sessions(timeout=_QUERY_TIMEOUT_S) if wants_bfd else []
        except (bird.BirdConnectionError, birdc.CommandError, birdc.ProtocolError) as exc:
            if not isinstance(exc, birdc.CommandError):
                await self._drop_control()
            changes = self.tracker.observe_error(str(exc))
            if self.tracker.errors > self.tracker.max_errors:
                self.observer.gateways_lost()
        else:
            changes = self.tracker.observe(gateways.assess(gws, protocols, sessions, self.opts.base.interface))
            self.observer.gateways_seen(gws, protocols, sessions)
        self._changes(changes)
        return changes

    def _changes(self, changes: list[gateways.Change]) -> None:
        for c in changes:
            fields = {"reason": c.reason, **({"gateway": c.gateway} if c.gateway else {}),
                      **({"detail": c.detail} if c.detail else {})}
            (self.log.info if c.event.endswith("Up") else self.log.warning)(c.event, **fields)
            if not c.gateway:
                self._dirty.set()
                self._registration.set()
                self._report_readiness()

    async def _notice_loop(self) -> None:
        """React to BIRD's log (``echo all``): a session state change triggers a check at once."""
        while True:
            await self._bird_up.wait()
            try:
                control = await bird.connect(self.opts.socket_path)
            except bird.BirdConnectionError:
                await asyncio.sleep(0.2)
                continue
            try:
                async for notice in control.notices():
                    if notice.text.startswith(birdconf.NAME_PREFIX) and any(
                            key in notice.text for key in _RELEVANT_NOTICE):
                        self._poke.set()
            except (bird.BirdConnectionError, birdc.ProtocolError, birdc.CommandError):
                await asyncio.sleep(0.2)
            finally:
                await control.close()

    # --- NSP registration -----------------------------------------------------------------------

    async def _registration_loop(self) -> None:
        if self.registry is None:
            await asyncio.Event().wait()
        assert self.registry is not None
        await registration.keep_registered(
            self.registry, announce.frontend_target(self.opts.hostname), lambda: self.tracker.connectivity,
            self._registration, refresh_s=self.opts.refresh_interval_s, log=self.log)
