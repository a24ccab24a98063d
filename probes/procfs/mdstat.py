"""/proc/mdstat: Linux software RAID arrays (drivers/md/md.c md_seq_show;
KNOWLEDGE.md §5.E `io-raid-degraded`).

    md6 : active raid1 sdb2[2](F) sdc[1](S) sda2[0]
          195310144 blocks [2/1] [U_]
          [=>...................]  recovery =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec

An array is a line "NAME : active|inactive [(read-only)] [LEVEL] DEV[N][(F|S|W|R|J)]..."
followed by indented lines: "[wanted/working] [UU_]" (an '_' is a missing or failed
member), a progress line ("resync|recovery|reshape|check = P%"), or "resync=DELAYED"
/ "resync=PENDING" while it waits. raid0 and linear have no member status.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from sysdiag.facts import Fact, RaidArray

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError, to_float, to_int
from ..registry import register_probe

_HEADER = re.compile(r"^(?P<name>\S+)\s*:\s*(?P<state>active|inactive)\b(?P<rest>.*)$")
_LEVEL = re.compile(r"^(raid\d+|linear|multipath|faulty|container)$")
_MEMBER = re.compile(r"^(?P<dev>[^\[\s]+)\[(?P<slot>\d+)\](?P<flags>(\([A-Z]\))*)$")
_STATUS = re.compile(r"\[(?P<wanted>\d+)/(?P<working>\d+)\]\s+\[(?P<map>[U_]*)\]")
_PROGRESS = re.compile(r"\b(?P<action>resync|recovery|reshape|check)\s*=\s*(?P<pct>[\d.]+)%")
_FINISH = re.compile(r"\bfinish=(?P<min>[\d.]+)min")
_SPEED = re.compile(r"\bspeed=(?P<kib>\d+)K/sec")
_WAITING = re.compile(r"\b(?:resync|recovery|reshape|check)=(?P<why>DELAYED|PENDING|REMOTE)")


@dataclass
class Array:
    name: str
    active: bool
    read_only: bool = False
    level: Optional[str] = None
    members: list[str] = field(default_factory=list)
    failed: int = 0
    spares: int = 0
    wanted: Optional[int] = None
    working: Optional[int] = None
    member_map: Optional[str] = None
    action: Optional[str] = None
    pct: Optional[float] = None
    finish_min: Optional[float] = None
    speed_kib: Optional[int] = None
    waiting: Optional[str] = None


def parse_header(line: str, source: str = "/proc/mdstat") -> Array:
    """The first line of an array.

    >>> a = parse_header("md0 : active (auto-read-only) raid1 sdb2[0] sdc3[2](F) hda[4](S)")
    >>> a.level, a.read_only, a.members, a.failed, a.spares
    ('raid1', True, ['sdb2', 'sdc3', 'hda'], 1, 1)
    """
    match = _HEADER.match(line.strip())
    if not match:
        raise ParseError(source, f"expected 'mdN : active|inactive ...', got {line.strip()[:80]!r}")
    array = Array(name=match["name"], active=match["state"] == "active")
    for word in match["rest"].split():
        if word in ("(read-only)", "(auto-read-only)"):
            array.read_only = True
        elif array.level is None and not array.members and _LEVEL.match(word):
            array.level = word
        else:
            member = _MEMBER.match(word)
            if not member:
                raise ParseError(source, f"{array.name}: unexpected member {word[:40]!r}")
            array.members.append(member["dev"])
            flags = member["flags"]
            array.failed += "(F)" in flags
            array.spares += "(S)" in flags
    return array


def parse_detail(array: Array, line: str, source: str = "/proc/mdstat") -> None:
    """Fold one indented line (status, progress, waiting) into the array."""
    status = _STATUS.search(line)
    if status:
        array.wanted = to_int(status["wanted"], source, f"{array.name} raid disks")
        array.working = to_int(status["working"], source, f"{array.name} working disks")
        array.member_map = status["map"]
    progress = _PROGRESS.search(line)
    if progress:
        array.action = progress["action"]
        array.pct = to_float(progress["pct"], source, f"{array.name} {array.action} %")
        finish, speed = _FINISH.search(line), _SPEED.search(line)
        array.finish_min = to_float(finish["min"], source, "finish") if finish else None
        array.speed_kib = to_int(speed["kib"], source, "speed") if speed else None
    waiting = _WAITING.search(line)
    if waiting:
        array.waiting = waiting["why"]


def parse_mdstat(text: str, source: str = "/proc/mdstat") -> list[Array]:
    """Every array, in file order. Lines the kernel may add (bitmap:, unused devices)
    are skipped; an unindented line that is not an array is a ParseError."""
    arrays: list[Array] = []
    current: Optional[Array] = None
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{source} line {number}"
        if not line.strip():
            current = None
            continue
        if line[0].isspace():
            if current is not None:
                parse_detail(current, line, where)
            continue
        if line.startswith(("Personalities", "unused devices", "Event:")):
            current = None
            continue
        current = parse_header(line, where)
        arrays.append(current)
    return arrays


def array_fact(source: str, a: Array) -> RaidArray:
    return RaidArray(
        source=source, name=a.name, active=a.active, read_only=a.read_only, level=a.level,
        members=len(a.members), member_devices=",".join(a.members), failed_members=a.failed,
        spare_members=a.spares, raid_disks=a.wanted, working_disks=a.working,
        degraded="_" in (a.member_map or ""),
        sync_action=a.action,  # type: ignore[arg-type]
        sync_pct=a.pct, sync_finish_min=a.finish_min, sync_speed_kib_per_s=a.speed_kib,
        sync_waiting=a.waiting)


@register_probe
class MdstatProbe(Probe):
    name = "mdstat"
    provides = ("raid_array",)
    description = "software RAID arrays: degraded members, resync/recovery progress (/proc/mdstat)"
    sampled = False

    def sample(self, ctx: ProbeContext) -> list[Array]:
        path = ctx.proc("mdstat")
        text = ctx.read_optional(path)
        if text is None:
            raise Unavailable(f"{path} does not exist: no software RAID (kernel without "
                              "CONFIG_BLK_DEV_MD, or the md module is not loaded)")
        return parse_mdstat(text, str(path))

    def facts(self, ctx: ProbeContext, first: object, last: list[Array],
              elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("mdstat"))
        return [array_fact(source, a) for a in last]
