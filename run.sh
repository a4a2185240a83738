#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root):
#   ./run.sh demo    set up everything, then run the main job (the demo)
#   ./run.sh test    set up everything, then run the whole test suite
#   ./run.sh setup   only set up (system packages + .venv with the project)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(bird2 nftables libnftables1 iproute2 iptables iputils-ping iperf iperf3 socat tcpdump
              conntrack ethtool netcat-openbsd procps python3-venv prometheus chromium mmdebstrap umoci
              gcc clang libbpf1 libbpf-dev linux-libc-dev bpftool)

NATIVE_SRC=src/meridio/kernel/native/maglev.c
NATIVE_LIB=src/meridio/kernel/native/libmeridio_native.so
BPF_SRC=src/meridio/loadbalancer/bpf/fastpath.bpf.c
BPF_OBJ=src/meridio/loadbalancer/bpf/fastpath.bpf.o

# The Maglev fill helper and the LB's eBPF fast path, built in the package directory (gitignored, but
# package data: a wheel or an image built from this tree ships them). Rebuilt when the source is newer.
build_native() {
    if [ ! -f "$NATIVE_LIB" ] || [ "$NATIVE_SRC" -nt "$NATIVE_LIB" ]; then
        echo "==> building $NATIVE_LIB"
        cc -O2 -Wall -Werror -shared -fPIC -o "$NATIVE_LIB" "$NATIVE_SRC"
    fi
    if [ -f "$BPF_SRC" ] && { [ ! -f "$BPF_OBJ" ] || [ "$BPF_SRC" -nt "$BPF_OBJ" ]; }; then
        echo "==> building $BPF_OBJ"
        clang -O2 -g -Wall -Werror -target bpf -I/usr/include/x86_64-linux-gnu -c "$BPF_SRC" -o "$BPF_OBJ"
    fi
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "meridio: this needs root (network namespaces, nftables, BIRD): run it with sudo" >&2
        exit 1
    fi
}

setup() {
    need_root
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating .venv"
        python3 -m venv .venv
    fi
    if ! .venv/bin/python -c "import meridio, pytest, grpc_tools" 2>/dev/null \
       || [ pyproject.toml -nt .venv/.installed ]; then
        echo "==> installing Python dependencies"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[test]'
        touch .venv/.installed
    fi
    build_native
}

cmd="${1:-demo}"
shift || true
case "$cmd" in
    setup) setup ;;
    demo)  setup; exec .venv/bin/meridio demo "$@" ;;
    test)  setup
           # The kube tier's kube-apiserver, kube-controller-manager and kine, built from the Go module
           # proxy once (minutes) and cached: built here, not inside a test's time limit.
           scripts/kube-test-servers >/dev/null
           exec .venv/bin/python -m pytest -p no:cacheprovider "$@" ;;
    *) echo "usage: ./run.sh demo|test|setup" >&2; exit 2 ;;
esac
