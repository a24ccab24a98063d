#!/usr/bin/env bash
# Creates .venv and installs sysdiag with its test dependencies.
# `bootstrap.sh --test` also installs (as root) the optional Debian packages some
# tests use; without them those tests skip and say why.
# On a fresh Debian/Ubuntu machine, as root, it first installs the Debian packages
# the build and the tests need (a C compiler and Python headers for durable-rules,
# which PyPI ships as source only; iproute2 for the fault-injection tests).
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST_PACKAGES=0
[ "${1:-}" = "--test" ] && WITH_TEST_PACKAGES=1
PY=${PYTHON:-python3}
apt_updated=0
apt_install() {  # apt_install PACKAGE...: as root, update the lists once, then install
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
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
        apt_install "${apt_packages[@]}"
    else
        echo "bootstrap: missing: ${apt_packages[*]}; install them (as root: apt-get install ${apt_packages[*]})" >&2
        exit 2
    fi
fi

# Optional, for `make test`: tests that need these skip (saying why) when they are missing.
#   bindfs: a FUSE daemon that tests hang on purpose (tests/safety, tests/e2e)
#   python3-bpfcc, linux-headers-amd64: the eBPF probes and tests/ebpf (docs/ebpf.md)
#   ethtool, conntrack, nftables, iptables: live cross-checks of the probes against the
#   system's own tools (the probes themselves never run them)
if [ "$WITH_TEST_PACKAGES" = 1 ]; then
    optional_packages=()
    command -v bindfs >/dev/null 2>&1 || optional_packages+=(bindfs)
    [ -f /usr/lib/python3/dist-packages/bcc/__init__.py ] || optional_packages+=(python3-bpfcc)
    ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1 || optional_packages+=(linux-headers-amd64)
    command -v ethtool >/dev/null 2>&1 || optional_packages+=(ethtool)
    command -v conntrack >/dev/null 2>&1 || optional_packages+=(conntrack)
    command -v nft >/dev/null 2>&1 || optional_packages+=(nftables)
    command -v iptables-legacy >/dev/null 2>&1 || optional_packages+=(iptables)
    if [ ${#optional_packages[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "bootstrap: installing optional test packages: ${optional_packages[*]}" >&2
            apt_install "${optional_packages[@]}" \
                || echo "bootstrap: could not install ${optional_packages[*]}; their tests will skip" >&2
        else
            echo "bootstrap: optional test packages missing: ${optional_packages[*]} (their tests skip)" >&2
        fi
    fi
    if [ "$(id -u)" = 0 ] && ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
        scripts/link-kernel-headers.sh || echo "bootstrap: no kernel headers for bcc; eBPF tests skip" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
fi
# Byte-compile the sources once: where PYTHONDONTWRITEBYTECODE is set, every run would
# otherwise recompile ~100 modules (+0.1 s per diagnose; docs/performance.md).
"$VENV/bin/python" -m compileall -q -j 0 facts probes engine sysdiag >/dev/null
