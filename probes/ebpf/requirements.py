"""What a bcc tracing probe needs, checked one by one so that a probe that cannot run
says exactly what is missing and what to install.

Order matters: the checks that cost nothing come first, and kernel headers are
checked *before* bcc compiles anything, because bcc, finding no headers, falls back
to running `modprobe kheaders`, and sysdiag never loads kernel modules.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from ..base import ProbeContext, Unavailable
from .tracefs import MOUNT_HINT, EventFormat, find_tracefs, read_event_format

#: Debian's python3-bpfcc installs the `bcc` package here, for the system Python. It is
#: pure Python over libbcc.so (ctypes), so any Python 3 can import it. We append the
#: directory at the *end* of sys.path, and only when `import bcc` fails on its own, so
#: the packages of the venv keep priority over Debian's (a .pth file in the venv would
#: expose every Debian package to every import, all the time).
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"

BCC_HINT = ("install bcc: `apt-get install python3-bpfcc` (Debian/Ubuntu; Fedora/RHEL: "
            "`dnf install python3-bcc`)")
HEADERS_HINT = ("install the kernel headers (`apt-get install linux-headers-$(uname -r)`; "
                "if none match this kernel, `apt-get install linux-headers-amd64` and link "
                "/lib/modules/$(uname -r)/build and .../source to it: enough for tracepoint "
                "programs), or point BCC_KERNEL_SOURCE at a headers tree")

_bcc: Optional[ModuleType] = None


def import_bcc() -> ModuleType:
    """The `bcc` module, or Unavailable saying how to install it."""
    global _bcc
    if _bcc is not None:
        return _bcc
    try:
        import bcc  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError:
        if DEBIAN_DIST_PACKAGES not in sys.path and os.path.isdir(DEBIAN_DIST_PACKAGES):
            sys.path.append(DEBIAN_DIST_PACKAGES)
        try:
            import bcc  # noqa: PLC0415
        except ImportError as err:
            raise Unavailable(f"the bcc Python module is not installed ({err}); {BCC_HINT}") \
                from err
        except OSError as err:  # bcc/libbcc.py loads libbcc.so.0 with ctypes
            raise Unavailable(f"bcc is installed but libbcc cannot be loaded ({err}); "
                              f"{BCC_HINT}") from err
    except OSError as err:
        raise Unavailable(f"bcc is installed but libbcc cannot be loaded ({err}); "
                          f"{BCC_HINT}") from err
    _bcc = bcc
    return bcc


def kernel_headers_dir(release: Optional[str] = None,
                       modules_root: Path = Path("/lib/modules")) -> Optional[Path]:
    """The headers tree bcc will use, or None when there is none."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        return Path(env) if Path(env, "include").is_dir() else None
    release = release or os.uname().release
    build = modules_root / release / "build"
    return build if (build / "include").is_dir() else None


def check_tracing(ctx: ProbeContext, tracepoints: tuple[str, ...],
                  modules_root: Path = Path("/lib/modules")) -> dict[str, EventFormat]:
    """Raise Unavailable naming the first missing piece; return each tracepoint's format."""
    if not ctx.live:
        raise Unavailable("tracing needs the live kernel; a snapshot or captured tree has "
                          "nothing to trace")
    if not ctx.is_root:
        raise Unavailable("needs root (loading BPF programs needs CAP_BPF and CAP_PERFMON)")
    tracefs = find_tracefs(ctx)
    if tracefs is None:
        raise Unavailable(f"tracefs is not mounted at {ctx.sys('kernel/tracing')} (nor under "
                          f"{ctx.sys('kernel/debug')}); bcc reads tracepoint formats there: "
                          f"{MOUNT_HINT}")
    formats = {}
    for tp in tracepoints:
        fmt = read_event_format(ctx, tracefs, tp)
        if fmt is None:
            raise Unavailable(f"this kernel has no tracepoint {tp} "
                              f"({tracefs}/events/{tp.replace(':', '/')} is missing)")
        formats[tp] = fmt
    if kernel_headers_dir(modules_root=modules_root) is None:
        raise Unavailable(f"no kernel headers at {modules_root}/{os.uname().release}/build; "
                          f"{HEADERS_HINT}")
    import_bcc()
    return formats
