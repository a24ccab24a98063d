#!/usr/bin/env bash
# Creates .venv and installs sysdiag with its test dependencies.
# On a fresh Debian/Ubuntu machine, as root, it first installs the Debian packages
# the build and the tests need (a C compiler and Python headers for durable-rules,
# which PyPI ships as source only; iproute2 for the fault-injection tests).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "bootstrap: $PY not found; install Python 3.10-3.12 (e.g. apt-get install python3)" >&2
    exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)'; then
    echo "bootstrap: $("$PY" -V) is not supported: durable-rules 2.0.28 builds and imports only on" \
         "Python 3.10-3.12. Run with PYTHON=python3.12 (or 3.11/3.10)." >&2
    exit 2
fi

apt_packages=()
have_headers=$("$PY" -c 'import os, sysconfig; print(int(os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))')
[ "$have_headers" = 1 ] || apt_packages+=(python3-dev)
"$PY" -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
command -v cc >/dev/null 2>&1 || apt_packages+=(gcc libc6-dev)
command -v ip >/dev/null 2>&1 || apt_packages+=(iproute2)
command -v tc >/dev/null 2>&1 || apt_packages+=(iproute2)
if [ ${#apt_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing Debian packages: ${apt_packages[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
    else
        echo "bootstrap: missing: ${apt_packages[*]}; install them (as root: apt-get install ${apt_packages[*]})" >&2
        exit 2
    fi
fi

# Optional: tests that need these skip (saying why) when they are missing.
# bindfs: a FUSE daemon for tests/safety/test_fuse_deadline.py (a mount whose daemon hangs).
optional_packages=()
command -v bindfs >/dev/null 2>&1 || optional_packages+=(bindfs)
# bcc and kernel headers: the eBPF probes and tests/ebpf (docs/ebpf.md)
[ -f /usr/lib/python3/dist-packages/bcc/__init__.py ] || optional_packages+=(python3-bpfcc)
ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1 || optional_packages+=(linux-headers-amd64)
if [ ${#optional_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing optional test packages: ${optional_packages[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${optional_packages[@]}" >/dev/null \
            || echo "bootstrap: could not install ${optional_packages[*]}; their tests will skip" >&2
    else
        echo "bootstrap: optional test packages missing: ${optional_packages[*]} (their tests skip)" >&2
    fi
fi
if [ "$(id -u)" = 0 ] && ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
    scripts/link-kernel-headers.sh || echo "bootstrap: no kernel headers for bcc; eBPF tests skip" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
fi
