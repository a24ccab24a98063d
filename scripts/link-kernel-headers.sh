#!/usr/bin/env bash
# bcc compiles its programs against /lib/modules/$(uname -r)/build. When no headers
# package matches the running kernel (a custom or cloud kernel), link build and source to
# the Debian headers that are installed (linux-headers-amd64): tracepoint programs only
# need the generic headers, since bcc reads each tracepoint's layout from tracefs.
# Without headers bcc would try `modprobe kheaders`; sysdiag checks first and refuses.
# Runs as root, changes nothing when headers for this kernel already exist.
set -euo pipefail
release=$(uname -r)
dir=/lib/modules/$release
if [ -e "$dir/build/include" ]; then
    exit 0
fi
build=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$build" ]; then
    echo "link-kernel-headers: no /usr/src/linux-headers-*-amd64 (apt-get install linux-headers-amd64)" >&2
    exit 1
fi
common=${build%-amd64}-common
[ -d "$common" ] || common=$build
mkdir -p "$dir"
ln -sfn "$build" "$dir/build"
ln -sfn "$common" "$dir/source"
echo "link-kernel-headers: $dir/build -> $build, source -> $common" >&2
