#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root):
#   ./run.sh demo    set up everything, then run the main job (the demo)
#   ./run.sh test    set up everything, then run the whole test suite
#   ./run.sh setup   only set up (system packages + .venv with the project)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(bird2 nftables libnftables1 iproute2 iptables iputils-ping iperf iperf3 socat tcpdump
              conntrack ethtool netcat-openbsd procps python3-venv prometheus chromium mmdebstrap umoci)

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
