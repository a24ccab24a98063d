"""Which kernel modules are loaded or built in, read without loading anything.

Read-only requests can make the kernel load a module on demand (request_module):
a NETLINK_SOCK_DIAG dump for a family or protocol without a handler loads
inet_diag, tcp_diag or udp_diag (this is how `ss` loads them); opening a
NETLINK_NETFILTER socket loads nfnetlink; the first message to the nf_tables
subsystem loads nf_tables; asking ip_tables for a table loads iptable_<name>.
sysdiag never loads a module (DESIGN.md "Safety"), so probes call
`KernelModules.safe(...)` before such a request.

A kernel without module support has no /proc/modules: there every feature is
built in or absent, and no request can load anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ..base import ProbeContext
from ..parse import ParseError

#: /lib/modules/RELEASE/modules.builtin (outside the /proc and /sys roots: live only)
MODULES_DIR = "/lib/modules"


def normalize(name: str) -> str:
    """Module names treat '-' and '_' alike (modprobe does); the kernel prints '_'."""
    return name.strip().replace("-", "_")


def parse_proc_modules(text: str, source: str = "/proc/modules") -> dict[str, str]:
    """module name -> state ("Live", "Loading", "Unloading").

    Lines are "name size refcount deps state address".

    >>> parse_proc_modules("nf_tables 286720 0 - Live 0x0000000000000000\\n")
    {'nf_tables': 'Live'}
    """
    modules = {}
    for number, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < 5:
            raise ParseError(source, f"line {number}: expected 'name size refcount deps state "
                                     f"...', got {line.strip()[:80]!r}")
        modules[normalize(cols[0])] = cols[4]
    return modules


def parse_modules_builtin(text: str) -> frozenset[str]:
    """Module names from modules.builtin ("kernel/net/ipv4/inet_diag.ko" per line).

    >>> sorted(parse_modules_builtin("kernel/net/ipv4/inet_diag.ko\\nkernel/net/ipv4/tcp_diag.ko\\n"))
    ['inet_diag', 'tcp_diag']
    """
    names = set()
    for line in text.splitlines():
        base = os.path.basename(line.strip())
        if base.endswith(".ko"):
            names.add(normalize(base[:-3]))
    return frozenset(names)


@dataclass(frozen=True)
class KernelModules:
    #: False: the kernel cannot load modules (no /proc/modules on a live host);
    #: None: unknown (a captured tree without /proc/modules)
    supported: Optional[bool]
    #: modules in /proc/modules that finished loading (state Live)
    loaded: frozenset[str] = frozenset()
    #: built into the kernel (modules.builtin, or /sys/module/NAME without initstate)
    builtin: frozenset[str] = frozenset()
    #: where the answer came from, for facts and messages
    source: str = "/proc/modules"
    #: module names seen in /sys/module (built in with parameters, or loaded)
    sys_module: frozenset[str] = field(default_factory=frozenset)

    def present(self, name: str) -> Optional[bool]:
        """True: loaded or built in; False: neither; None: cannot tell (a kernel without
        module support, where a feature is built in or absent)."""
        key = normalize(name)
        if key in self.loaded or key in self.builtin:
            return True
        if self.supported is not True:
            return None
        return False

    def safe(self, *names: str) -> bool:
        """True when a request that could autoload these modules cannot load anything:
        they are all there already, or the kernel has no module support."""
        if self.supported is False:
            return True
        return all(self.present(n) is True for n in names)

    def why_not(self, *names: str) -> str:
        """The reason a request is skipped, for an `unavailable` outcome or a fact."""
        missing = [n for n in names if self.present(n) is not True]
        if self.supported is None:
            return (f"cannot tell whether {', '.join(missing)} is loaded ({self.source} "
                    "is not in the captured tree)")
        return (f"{', '.join(missing)} not loaded, and asking the kernel would load "
                f"{'it' if len(missing) == 1 else 'them'} (sysdiag never loads modules)")


def read_kernel_modules(ctx: ProbeContext) -> KernelModules:
    """Read /proc/modules, /sys/module and (live) modules.builtin. Never loads anything."""
    path = ctx.proc("modules")
    text = ctx.read_optional(path)
    sys_dir = ctx.sys("module")
    try:
        in_sys = frozenset(normalize(n) for n in os.listdir(sys_dir))
    except OSError:
        in_sys = frozenset()
    if text is None:
        # live: CONFIG_MODULES=n; captured tree: the file was simply not captured
        return KernelModules(supported=False if ctx.live else None, source=str(path),
                             builtin=in_sys if ctx.live else frozenset(), sys_module=in_sys)
    loaded = frozenset(n for n, state in parse_proc_modules(text, str(path)).items()
                       if state == "Live")
    builtin = set(_modules_builtin(ctx))
    # built-in modules with parameters have /sys/module/NAME but no initstate
    for name in in_sys - loaded:
        if not os.path.lexists(os.path.join(sys_dir, name, "initstate")):
            builtin.add(name)
    return KernelModules(supported=True, loaded=loaded, builtin=frozenset(builtin),
                         source=str(path), sys_module=in_sys)


def _modules_builtin(ctx: ProbeContext) -> frozenset[str]:
    if not ctx.live:
        return frozenset()
    release = ctx.read_optional(ctx.proc("sys", "kernel", "osrelease"))
    if not release or not release.strip() or "/" in release.strip():
        return frozenset()
    try:
        with open(os.path.join(MODULES_DIR, release.strip(), "modules.builtin"),
                  encoding="utf-8", errors="replace") as fh:
            return parse_modules_builtin(fh.read(4 << 20))
    except OSError:
        return frozenset()
