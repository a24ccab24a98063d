"""The running kernel and its configuration (KNOWLEDGE.md §2.12, §5.K, §5.L).

Sources, all optional (a field whose file is missing stays None):
- /proc/sys/kernel/{osrelease,version,arch}, /proc/uptime, /proc/stat `btime`;
- /proc/cmdline: psi=, mitigations=, isolcpus=, transparent_hugepage=, console=;
  words after a lone "--" belong to init and are not kernel parameters;
- the build configuration from /proc/config.gz (CONFIG_IKCONFIG_PROC) or, on a
  live host, /boot/config-RELEASE;
- /proc/sys/kernel/tainted, /sys/kernel/mm/{transparent_hugepage,ksm},
  /sys/devices/system/clocksource/clocksource0, /sys/devices/system/cpu/vulnerabilities;
- on a live host only, "recent changes": the newest mtime among the files of
  /etc/sysctl.*, /etc/security/limits.*, /etc/systemd/system (top level) and
  /etc/nftables*. Entries are lstat'ed, never followed or opened; /etc on a
  network or FUSE filesystem is skipped (lstat could hang there).
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sysdiag.facts import ConfigChange, Fact, KernelConfig

from ..base import Probe, ProbeContext, Unavailable
from ..parse import SYSCTL_BYTES, ParseError, first_line, to_float, to_int
from ..registry import register_probe
from .deleted import mount_of
from .mounts import read_mountinfo

#: the CONFIG_ options reported (KNOWLEDGE.md §5.K "Observability gaps", §5.L)
CONFIG_OPTIONS = ("PSI", "PSI_DEFAULT_DISABLED", "KPROBES", "SCHEDSTATS", "KASAN",
                  "PROVE_LOCKING", "DEBUG_PAGEALLOC", "KMEMLEAK", "HZ", "BPF_SYSCALL")
DEBUG_OPTIONS = ("KASAN", "PROVE_LOCKING", "DEBUG_PAGEALLOC", "KMEMLEAK")
#: a decompressed .config is ~300 KiB; refuse anything absurd
CONFIG_MAX_BYTES = 16 << 20
CMDLINE_CHARS = 1024

#: Documentation/admin-guide/tainted-kernels.rst: bit -> (letter, name)
TAINT_BITS = {
    0: ("P", "proprietary_module"), 1: ("F", "forced_module_load"),
    2: ("S", "out_of_spec_system"), 3: ("R", "forced_module_unload"),
    4: ("M", "machine_check"), 5: ("B", "bad_page"), 6: ("U", "user_request"),
    7: ("D", "oops_or_bug"), 8: ("A", "acpi_table_override"), 9: ("W", "warning"),
    10: ("C", "staging_driver"), 11: ("I", "firmware_workaround"),
    12: ("O", "out_of_tree_module"), 13: ("E", "unsigned_module"), 14: ("L", "soft_lockup"),
    15: ("K", "live_patched"), 16: ("X", "auxiliary"), 17: ("T", "randstruct_build"),
    18: ("N", "in_kernel_test"), 19: ("J", "fwctl_debug_write"),
}
TAINT_WARN_BIT = 9

#: console= names of serial ports (printk to them is slow and synchronous); hvc is the
#: hypervisor console (virtio/Xen/PowerVM), just as slow under a message storm
SERIAL_CONSOLE_PREFIXES = ("ttyS", "ttyAMA", "ttySAC", "ttymxc", "ttyO", "ttyPS", "ttyMSM",
                           "ttyHS", "ttyUSB", "ttyLP", "hvc", "uart")

#: area -> files or globs under /etc (relative); directories are scanned one level deep
CHANGE_AREAS = {
    "sysctl": ("sysctl.conf", "sysctl.d"),
    "limits": ("security/limits.conf", "security/limits.d"),
    "systemd": ("systemd/system",),
    "nftables": ("nftables*",),
}
MAX_ENTRIES_PER_AREA = 5000


@dataclass(frozen=True)
class Cmdline:
    text: str
    params: dict[str, str]  # the last value of each name=value (bare flags map to "")
    consoles: tuple[str, ...]


def cmdline_words(text: str) -> list[str]:
    """Split as the kernel does (lib/cmdline.c next_arg): on blanks, except inside
    double quotes, which are dropped; single quotes and backslashes mean nothing.

    >>> cmdline_words('a "b c" d="e f"')
    ['a', 'b c', 'd=e f']
    """
    words, current, quoted, started = [], [], False, False
    for ch in text:
        if ch == '"':
            quoted, started = not quoted, True
        elif ch.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        words.append("".join(current))
    return words


def parse_cmdline(text: str, source: str = "/proc/cmdline") -> Cmdline:
    """Kernel parameters: name=value words, double quotes allowed around values.

    >>> c = parse_cmdline('console=tty0 console=ttyS0,115200 psi=1 quiet -- --init-arg x=1')
    >>> c.params["psi"], c.consoles, "x" in c.params
    ('1', ('tty0', 'ttyS0,115200'), False)
    """
    params: dict[str, str] = {}
    consoles = []
    for word in cmdline_words(text):
        if word == "--":
            break  # everything after it is passed to init
        name, _, value = word.partition("=")
        params[name] = value
        if name == "console" and value:
            consoles.append(value)
    return Cmdline(text=text.strip(), params=params, consoles=tuple(consoles))


def is_serial_console(console: str) -> bool:
    """'ttyS0,115200n8' -> True; 'tty0' -> False."""
    return console.startswith(SERIAL_CONSOLE_PREFIXES)


def parse_kconfig(text: str, source: str = "config") -> dict[str, str]:
    """A kernel .config: {"PSI": "y", "HZ": "250", "KPROBES": "n"} for every option
    set or marked "# CONFIG_X is not set". Values keep no quotes.

    >>> parse_kconfig('CONFIG_HZ=250\\n# CONFIG_KPROBES is not set\\nCONFIG_X="a b"\\n')
    {'HZ': '250', 'KPROBES': 'n', 'X': 'a b'}
    """
    out: dict[str, str] = {}
    saw_config = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[len("# CONFIG_"):-len(" is not set")]] = "n"
            saw_config = True
        elif line.startswith("CONFIG_"):
            name, eq, value = line[len("CONFIG_"):].partition("=")
            if not eq:
                raise ParseError(source, f"expected CONFIG_NAME=value, got {line[:80]!r}")
            out[name] = value.strip('"')
            saw_config = True
        elif line and not line.startswith("#"):
            raise ParseError(source, f"not a kernel config line: {line[:80]!r}")
    if not saw_config and text.strip():
        raise ParseError(source, "no CONFIG_ lines (not a kernel config?)")
    return out


def config_bool(config: dict[str, str], name: str) -> bool:
    """Built in or as a module. An option missing from a readable config is off."""
    return config.get(name, "n") in ("y", "m")


def decode_taint(value: int) -> tuple[str, str]:
    """(letters, names) of the set taint bits, in bit order.

    >>> decode_taint(512 + 4096 + 1)
    ('PWO', 'proprietary_module,warning,out_of_tree_module')
    """
    letters, names = [], []
    for bit in range(max(value.bit_length(), 1)):
        if value >> bit & 1:
            letter, name = TAINT_BITS.get(bit, ("?", f"bit{bit}"))
            letters.append(letter)
            names.append(name)
    return "".join(letters), ",".join(names)


def parse_bracketed(text: str, source: str) -> str:
    """The selected choice of a sysfs choice file: "always [madvise] never" -> "madvise"."""
    start, end = text.find("["), text.find("]")
    if start < 0 or end < start:
        raise ParseError(source, f"no [selected] value in {text.strip()[:80]!r}")
    return text[start + 1:end]


def parse_btime(stat_text: str, source: str = "/proc/stat") -> Optional[int]:
    """Boot time (epoch seconds) from the `btime` line of /proc/stat."""
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            return to_int(line.split()[1], source, "btime")
    return None


@dataclass(frozen=True)
class Vulnerabilities:
    total: int
    vulnerable: tuple[str, ...]
    mitigated: int


def summarize_vulnerabilities(states: dict[str, str]) -> Vulnerabilities:
    """{"mds": "Vulnerable", "spectre_v1": "Mitigation: ..."} -> counts.
    "Not affected" and "Unknown: ..." count as neither."""
    vulnerable = tuple(sorted(n for n, s in states.items() if s.startswith("Vulnerable")))
    mitigated = sum(1 for s in states.values() if s.startswith("Mitigation"))
    return Vulnerabilities(total=len(states), vulnerable=vulnerable, mitigated=mitigated)


@dataclass
class Newest:
    files: int = 0
    path: Optional[str] = None
    mtime: Optional[float] = None
    errors: list[str] = field(default_factory=list)

    def add(self, path: str, mtime: float) -> None:
        self.files += 1
        if self.mtime is None or mtime > self.mtime:
            self.path, self.mtime = path, mtime


def scan_area(etc: Path, patterns: tuple[str, ...], limit: int = MAX_ENTRIES_PER_AREA
              ) -> Newest:
    """lstat the files a pattern names, and the top-level entries of directories."""
    newest = Newest()
    for pattern in patterns:
        for path in sorted(etc.glob(pattern)) if "*" in pattern else [etc / pattern]:
            try:
                st = path.lstat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            newest.add(str(path), st.st_mtime)
            if not path.is_dir() or path.is_symlink():
                continue
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        if newest.files >= limit:
                            newest.errors.append(f"{path}: more than {limit} entries; "
                                                 "the rest not looked at")
                            return newest
                        try:
                            newest.add(entry.path, entry.stat(follow_symlinks=False).st_mtime)
                        except FileNotFoundError:
                            continue  # removed while we looked
            except PermissionError:
                newest.errors.append(f"{path}: permission denied (its entries not looked at)")
    return newest


@dataclass
class KernelReading:
    fields: dict[str, object] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    changes: list[ConfigChange] = field(default_factory=list)


@register_probe
class KernelProbe(Probe):
    name = "kernel"
    provides = ("kernel", "config_change")
    description = ("running kernel: release, cmdline flags, CONFIG_ options, taint, THP/KSM, "
                   "clocksource, CPU vulnerabilities, uptime; recent /etc config changes")
    sampled = False

    def __init__(self, etc_root: Path = Path("/etc"), boot_root: Path = Path("/boot")) -> None:
        super().__init__()
        self.etc_root = etc_root
        self.boot_root = boot_root

    def sample(self, ctx: ProbeContext) -> KernelReading:
        reading = KernelReading()
        f = reading.fields
        self._identity(ctx, reading)
        self._cmdline(ctx, reading)
        self._config(ctx, reading, f.get("release"))
        self._taint(ctx, reading)
        self._mm(ctx, reading)
        self._clock_and_cpu(ctx, reading)
        if not reading.sources:
            raise Unavailable(f"none of the kernel files exist under {ctx.proc_root} and "
                              f"{ctx.sys_root} (not a /proc and /sys tree?)")
        if ctx.live:
            reading.changes = self._changes(ctx, f.get("boot_time"))
        return reading

    def _read(self, ctx: ProbeContext, reading: KernelReading, path: Path,
              limit: int = SYSCTL_BYTES) -> Optional[str]:
        try:
            text = ctx.read_text(path, limit)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            self.warn(f"{path}: permission denied (run as root to read it)")
            return None
        reading.sources.append(str(path))
        return text

    def _identity(self, ctx: ProbeContext, reading: KernelReading) -> None:
        f = reading.fields
        for key, name in (("release", "osrelease"), ("version", "version"), ("machine", "arch")):
            f[key] = first_line(self._read(ctx, reading, ctx.proc("sys", "kernel", name)))
        if f["machine"] is None and ctx.live:
            f["machine"] = os.uname().machine  # /proc/sys/kernel/arch is new in 6.1
        uptime = self._read(ctx, reading, ctx.proc("uptime"))
        if uptime and uptime.split():
            f["uptime_s"] = to_float(uptime.split()[0], str(ctx.proc("uptime")), "uptime")
        stat = self._read(ctx, reading, ctx.proc("stat"), 4 << 20)
        if stat:
            f["boot_time"] = parse_btime(stat, str(ctx.proc("stat")))

    def _cmdline(self, ctx: ProbeContext, reading: KernelReading) -> None:
        text = self._read(ctx, reading, ctx.proc("cmdline"))
        if text is None:
            return
        cmd = parse_cmdline(text, str(ctx.proc("cmdline")))
        reading.fields.update(
            cmdline=cmd.text[:CMDLINE_CHARS], psi_cmdline=cmd.params.get("psi"),
            mitigations=cmd.params.get("mitigations"), isolcpus=cmd.params.get("isolcpus"),
            transparent_hugepage_cmdline=cmd.params.get("transparent_hugepage"),
            consoles=",".join(cmd.consoles) or None,
            serial_console=any(is_serial_console(c) for c in cmd.consoles))

    def _config(self, ctx: ProbeContext, reading: KernelReading,
                release: Optional[object]) -> None:
        text, source = self._config_text(ctx, reading, release)
        f = reading.fields
        f["psi_enabled"] = ctx.proc("pressure", "cpu").exists()
        if text is None:
            return
        config = parse_kconfig(text, source)
        f["config_source"] = source
        for name in CONFIG_OPTIONS:
            if name == "HZ":
                hz = config.get("HZ")
                f["config_hz"] = to_int(hz, source, "CONFIG_HZ") if hz else None
            else:
                f[f"config_{name.lower()}"] = config_bool(config, name)
        f["debug_kernel"] = any(config_bool(config, name) for name in DEBUG_OPTIONS)

    def _config_text(self, ctx: ProbeContext, reading: KernelReading,
                     release: Optional[object]) -> tuple[Optional[str], str]:
        gz = ctx.proc("config.gz")
        try:
            ctx.check_inside_root(gz)
            with open(gz, "rb") as fh:
                raw = fh.read(CONFIG_MAX_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raw = None
        except PermissionError:
            self.warn(f"{gz}: permission denied")
            raw = None
        if raw is not None:
            reading.sources.append(str(gz))
            inflate = zlib.decompressobj(wbits=31)  # gzip header
            try:
                data = inflate.decompress(raw, CONFIG_MAX_BYTES)
            except zlib.error as err:
                raise ParseError(str(gz), f"not gzip data ({err})") from None
            return data.decode("utf-8", errors="replace"), str(gz)
        if ctx.live and isinstance(release, str) and "/" not in release:
            path = self.boot_root / f"config-{release}"
            try:
                with open(path, "rb") as fh:
                    return fh.read(CONFIG_MAX_BYTES).decode("utf-8", errors="replace"), str(path)
            except FileNotFoundError:
                pass
            except PermissionError:
                self.warn(f"{path}: permission denied")
        return None, ""

    def _taint(self, ctx: ProbeContext, reading: KernelReading) -> None:
        path = ctx.proc("sys", "kernel", "tainted")
        line = first_line(self._read(ctx, reading, path))
        if line is None:
            return
        value = to_int(line, str(path), "tainted")
        letters, names = decode_taint(value)
        reading.fields.update(tainted=value, taint_flags=letters, taint_reasons=names,
                              taint_warn=bool(value >> TAINT_WARN_BIT & 1))

    def _mm(self, ctx: ProbeContext, reading: KernelReading) -> None:
        for key, name in (("thp_enabled", "enabled"), ("thp_defrag", "defrag")):
            path = ctx.sys("kernel", "mm", "transparent_hugepage", name)
            text = self._read(ctx, reading, path)
            if text is not None:
                reading.fields[key] = parse_bracketed(text, str(path))
        path = ctx.sys("kernel", "mm", "ksm", "run")
        line = first_line(self._read(ctx, reading, path))
        if line is not None:
            reading.fields["ksm_run"] = to_int(line, str(path), "ksm run")

    def _clock_and_cpu(self, ctx: ProbeContext, reading: KernelReading) -> None:
        base = ctx.sys("devices", "system", "clocksource", "clocksource0")
        reading.fields["clocksource"] = first_line(
            self._read(ctx, reading, base / "current_clocksource"))
        available = self._read(ctx, reading, base / "available_clocksource")
        reading.fields["clocksources_available"] = " ".join(available.split()) \
            if available else None
        vuln_dir = ctx.sys("devices", "system", "cpu", "vulnerabilities")
        try:
            ctx.check_inside_root(vuln_dir)
            names = sorted(os.listdir(vuln_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        states = {}
        for name in names:
            text = first_line(self._read(ctx, reading, vuln_dir / name))
            if text is not None:
                states[name] = text
        if states:
            v = summarize_vulnerabilities(states)
            reading.fields.update(vulnerabilities_total=v.total,
                                  vulnerable_count=len(v.vulnerable),
                                  vulnerable=",".join(v.vulnerable) or None,
                                  mitigated_count=v.mitigated)

    def _changes(self, ctx: ProbeContext, boot_time: Optional[object]) -> list[ConfigChange]:
        etc = str(self.etc_root)
        try:
            # a malformed mountinfo line is the "mounts" probe's to report, not ours
            _, mounts = read_mountinfo(ctx, on_error=lambda problem: None)
        except Unavailable:
            mounts = []
        where = mount_of(os.path.realpath(etc), mounts)
        if where is not None and (where.network_fs or where.fuse):
            self.warn(f"{etc} is on {where.fstype} ({where.mountpoint}): configuration "
                      "mtimes not read (lstat could hang on a dead server)")
            return []
        now = time.time()
        out = []
        for area, patterns in CHANGE_AREAS.items():
            newest = scan_area(self.etc_root, patterns)
            for problem in newest.errors:
                self.warn(problem)
            since_boot = None
            if newest.mtime is not None and isinstance(boot_time, int):
                since_boot = newest.mtime > boot_time
            out.append(ConfigChange(
                source=etc, area=area,  # type: ignore[arg-type]
                paths=",".join(str(self.etc_root / p) for p in patterns),
                files=newest.files, newest_path=newest.path, newest_mtime=newest.mtime,
                age_s=round(now - newest.mtime, 1) if newest.mtime is not None else None,
                changed_since_boot=since_boot))
        return out

    def facts(self, ctx: ProbeContext, first: object, last: KernelReading,
              elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("sys", "kernel"))
        return [KernelConfig(source=source, **last.fields), *last.changes]
