"""The one OCI image, built offline by ``scripts/build-image`` (Debian packages by mmdebstrap, the
project's wheel, umoci): a valid OCI layout whose image runs ``meridio``, BIRD and nft from its own root
filesystem (unpacked by umoci, run under chroot in a mount and pid namespace of their own).
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from meridio import __version__

# The first build makes the Debian root filesystem (mmdebstrap: a few minutes on a slow mirror).
pytestmark = [pytest.mark.kube, pytest.mark.timeout(1800)]

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("image") / "oci"
    done = subprocess.run([str(ROOT / "scripts" / "build-image"), str(out)], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def rootfs(image: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    bundle = tmp_path_factory.mktemp("bundle") / "b"
    done = subprocess.run(["umoci", "unpack", "--image", f"{image}:{__version__}", str(bundle)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return bundle / "rootfs"


def in_image(rootfs: pathlib.Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--mount", "--pid", "--fork", "chroot", str(rootfs), *argv],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"})


def test_the_image_is_an_oci_layout_with_meridios_entrypoint(image: pathlib.Path) -> None:
    index = json.loads((image / "index.json").read_text())
    (manifest_ref,) = index["manifests"]
    assert manifest_ref["annotations"]["org.opencontainers.image.ref.name"] == __version__
    blob = lambda d: image / "blobs" / d.split(":")[0] / d.split(":")[1]  # noqa: E731
    manifest = json.loads(blob(manifest_ref["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    assert config["config"]["Entrypoint"] == ["/usr/bin/tini", "--", "/usr/local/bin/meridio"]
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == __version__
    assert len(manifest["layers"]) >= 1 and (image.parent / "oci.tar").stat().st_size > 10_000_000


def test_meridio_bird_and_nft_run_from_the_images_root_filesystem(rootfs: pathlib.Path) -> None:
    meridio = in_image(rootfs, "/usr/local/bin/meridio", "--version")
    assert (meridio.returncode, meridio.stdout.strip()) == (0, f"meridio {__version__}"), meridio.stderr
    bird = in_image(rootfs, "bird", "--version")
    assert bird.returncode == 0 and (bird.stdout + bird.stderr).startswith("BIRD version 2."), bird
    nft = in_image(rootfs, "nft", "--version")
    assert nft.returncode == 0 and nft.stdout.startswith("nftables v1.0."), nft
    ip = in_image(rootfs, "ip", "-V")
    assert ip.returncode == 0 and "iproute2" in ip.stdout, ip
    site = rootfs / "opt" / "meridio" / "site" / "meridio"
    # the LB's eBPF program and the Maglev helper, compiled at set-up, are in the image
    assert (site / "loadbalancer" / "bpf" / "fastpath.bpf.o").stat().st_size > 0
    assert (site / "kernel" / "native" / "libmeridio_native.so").stat().st_size > 0


def test_the_image_renders_what_the_operator_installs(rootfs: pathlib.Path) -> None:
    """The whole package and its dependencies import inside the image (not just the entry point)."""
    crds = in_image(rootfs, "/usr/local/bin/meridio", "render", "crds")
    assert crds.returncode == 0, crds.stderr
    assert crds.stdout == (ROOT / "deploy" / "kubernetes" / "crds" / "meridio.nordix.org.yaml").read_text()
    validate = in_image(rootfs, "/usr/local/bin/meridio", "operator", "--help")
    assert validate.returncode == 0 and "--webhook-cert-dir" in validate.stdout, validate.stderr
