"""``meridio validate``, ``meridio render configmap`` and ``meridio render crds``: resource files checked and
rendered offline, and the CustomResourceDefinitions they are checked against in a cluster.

Both read Meridio resource YAML (``-f FILE``, repeatable; ``-`` is stdin; a directory means its
``*.yaml``/``*.yml``/``*.json`` files in name order) and apply the files in order on top of an empty
state with the one validator (:func:`meridio.api.validation.validate_apply`), so a later file may
update an object of an earlier one exactly as ``kubectl apply -f a.yaml -f b.yaml`` would.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import TextIO

from meridio.api import configmap, meta, problems, resources, validation, yamlio
from meridio.cli.common import CliError
from meridio.runtime.kubernetes import crds, manifests

__all__ = ["register", "load_inputs"]

SUFFIXES = (".yaml", ".yml", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = subparsers.add_parser("validate", help="check Meridio resource files against every Meridio rule",
                              description="Check Meridio resource files against every Meridio rule; "
                                          "prints one line per problem, exit status 1 if there is any.")
    _add_files(v)
    v.set_defaults(func=_validate)

    r = subparsers.add_parser("render", help="render what the operator would create from resource files")
    what = r.add_subparsers(dest="what", metavar="WHAT", required=True)
    cm = what.add_parser("configmap", help="the trench ConfigMap the NSP reads",
                         description="Print the ConfigMap meridio-configuration-<trench> as YAML "
                                     "(after validating the files; nothing is printed if they are invalid).")
    _add_files(cm)
    cm.add_argument("--trench", required=True, help="the trench to render")
    cm.add_argument("-n", "--namespace", default="default", help="the trench's namespace (default: default)")
    cm.set_defaults(func=_render_configmap)
    crd = what.add_parser("crds", help="the CustomResourceDefinitions of meridio.nordix.org",
                          description="Print the CRDs of every Meridio kind as YAML (for kubectl apply -f -).")
    crd.set_defaults(func=_render_crds)
    inst = what.add_parser("install", help="every object of a cluster install (CRDs, RBAC, operator, webhook)",
                           description="Print the namespace, CRDs, RBAC, operator Deployment and webhook Service "
                                       "of a cluster install as YAML (for kubectl apply -f -).")
    inst.add_argument("-n", "--namespace", default="meridio", help="the operator's namespace (default: meridio)")
    inst.add_argument("--image", default=manifests.IMAGE, help=f"the image (default: {manifests.IMAGE})")
    inst.set_defaults(func=_render_install)
    dep = what.add_parser("deploy", help="write the kustomize base and the Helm chart under DIR (deploy/)",
                          description="Write deploy/kubernetes/{crds,base} and deploy/helm/meridio from the code.")
    dep.add_argument("directory", help="where to write (the repository's deploy/)")
    dep.set_defaults(func=_render_deploy)


def _add_files(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE",
                   help="a YAML file, a directory of them, or - for stdin (repeatable, applied in order)")


def _expand(name: str) -> list[str]:
    if name == "-" or not os.path.isdir(name):
        return [name]
    return [str(p) for p in sorted(pathlib.Path(name).iterdir()) if p.suffix in SUFFIXES and p.is_file()]


def _read(name: str, stdin: TextIO) -> str:
    if name == "-":
        return stdin.read()
    try:
        with open(name, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {name}: not UTF-8 text") from None


def load_inputs(files: Sequence[str], stdin: TextIO | None = None) -> list[resources.Resource]:
    """The resources of every file, in order; :class:`ProblemsError` with the problems of all files."""
    found: list[problems.Problem] = []
    out: list[resources.Resource] = []
    for name in (n for f in files for n in _expand(f)):
        try:
            out.extend(resources.loads(_read(name, stdin or sys.stdin), "<stdin>" if name == "-" else name))
        except problems.ProblemsError as exc:
            found.extend(exc.problems)
    if found:
        raise problems.ProblemsError(found)
    return out


def _checked(files: Sequence[str]) -> tuple[list[resources.Resource], list[problems.Problem]]:
    try:
        objs = load_inputs(files)
    except problems.ProblemsError as exc:
        return [], list(exc.problems)
    return objs, validation.validate_apply([], objs)


def _validate(args: argparse.Namespace) -> int:
    objs, found = _checked(args.files)
    for p in found:
        print(p)
    if found:
        return 1
    print(f"{len(objs)} objects valid")
    return 0


def _render_configmap(args: argparse.Namespace) -> int:
    objs, found = _checked(args.files)
    for p in found:
        print(p, file=sys.stderr)
    if found:
        return 1
    state = {o.ref: o for o in objs}  # later files update earlier objects
    try:
        text = configmap.render_manifest(state.values(), args.trench, args.namespace)
    except configmap.ConfigMapError as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(text)
    return 0


def _render_crds(_args: argparse.Namespace) -> int:
    sys.stdout.write(yamlio.dump_all(crds.crds()))
    return 0


def _render_install(args: argparse.Namespace) -> int:
    problem = meta.rfc1123_label_error(args.namespace)
    if problem:
        raise CliError(f"--namespace: {problem}", code=2)
    sys.stdout.write(yamlio.dump_all(manifests.install(args.namespace, args.image)))
    return 0


def _render_deploy(args: argparse.Namespace) -> int:
    for rel, text in manifests.packaging_files(yamlio.dump_all).items():
        path = pathlib.Path(args.directory) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0
