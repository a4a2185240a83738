"""Scrape a component's ``/metrics`` over 127.0.0.1 in a test and look samples up by name and labels.

    samples = scrape(port)                                   # {(name, frozenset(labels)): value}
    value(samples, "meridio_nsp_watchers", kind="stream")    # the one sample with those labels (0 if none)
    await until(port, lambda s: value(s, ...) == 1)          # async tests: scrape until it holds
"""
from __future__ import annotations

import asyncio
import sys
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meridio.kernel import netns as netnsmod

__all__ = ["Samples", "scrape", "until", "value"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


_FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def scrape(port: int, host: str = "127.0.0.1", *, ns: str | None = None) -> Samples:
    """The samples of ``http://host:port/metrics``; with ``ns``, fetched from inside that namespace
    (``{}`` there if nothing answers yet)."""
    url = f"http://{host}:{port}/metrics"
    if ns is None:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    else:
        done = netnsmod.run(ns, [sys.executable, "-c", _FETCH, url], check=False, timeout=10)
        if done.returncode != 0:
            return {}
        text = done.stdout
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels``; 0 if none, an error if several match."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else 0.0


async def until(port: int, predicate: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape (off the event loop) until ``predicate`` holds; fail with the last scrape after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if predicate(samples):
            return samples
        if loop.time() > deadline:
            pytest.fail(f"metrics on port {port} did not get there within {timeout}s: {samples}")
        await asyncio.sleep(0.1)
