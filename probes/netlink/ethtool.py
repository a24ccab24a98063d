"""Offloads, ring sizes, channels and interrupt coalescing of every interface: what
`ethtool -k`, `-g`, `-l` and `-c` show (KNOWLEDGE.md §2.4, §5.I), without running ethtool.

One dump per message over the ethtool generic-netlink family (Linux 5.6+):
ETHTOOL_MSG_FEATURES_GET (compact bitsets, named through the global ETH_SS_FEATURES
string set), RINGS_GET, CHANNELS_GET, COALESCE_GET. A dump skips devices whose driver
lacks the operation (veth has no rings or coalescing), so a missing fact means "not
supported". Kernels without the family get the SIOCETHTOOL ioctl per interface instead
(pyroute2's IoctlEthtool). All of these are read-only "get" requests that need no
privileges.

`ethtool -k` prints one line per legacy flag (gro, tso, ...) whose value is on when any
feature of its group is active; a feature is "[fixed]" when the driver does not offer it
to change (not in hw) or the kernel never changes it (nochange). The groups and their
patterns are ethtool's (off_flag_def in its common.c).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from sysdiag.facts import Fact, NicChannels, NicCoalesce, NicOffloads, NicRings

from ..base import Probe, ProbeContext, pct
from ..registry import register_probe
from .genl import GenlSocket, NetlinkError, attr, attr_map, attrs, cstring, u32, u8
from .rtnl import require_live

FAMILY = "ethtool"
VERSION = 1
MSG_STRSET_GET, MSG_FEATURES_GET, MSG_RINGS_GET = 1, 11, 15
MSG_CHANNELS_GET, MSG_COALESCE_GET = 17, 19
A_HEADER = 1  # the header is attribute 1 of every ethtool message
HEADER_DEV_INDEX, HEADER_DEV_NAME, HEADER_FLAGS = 1, 2, 3
FLAG_COMPACT_BITSETS = 1
ETH_SS_FEATURES = 4
# ETHTOOL_A_STRSET_*, _STRINGSETS_*, _STRINGSET_*, _STRINGS_*, _STRING_*
STRSET_STRINGSETS, STRINGSETS_STRINGSET = 2, 1
STRINGSET_ID, STRINGSET_STRINGS, STRINGS_STRING = 1, 3, 1
STRING_INDEX, STRING_VALUE = 1, 2
# ETHTOOL_A_FEATURES_*
FEATURES_HW, FEATURES_ACTIVE, FEATURES_NOCHANGE = 2, 4, 5
# ETHTOOL_A_BITSET_*, _BITS_*, _BIT_*
BITSET_NOMASK, BITSET_SIZE, BITSET_BITS, BITSET_VALUE = 1, 2, 3, 4
BITS_BIT, BIT_INDEX, BIT_NAME, BIT_VALUE = 1, 1, 2, 3

#: ETHTOOL_A_RINGS_* / _CHANNELS_* / _COALESCE_* attribute -> field
RINGS = {2: "rx_max", 5: "tx_max", 6: "rx", 9: "tx"}
CHANNELS = {2: "rx_max", 3: "tx_max", 4: "other_max", 5: "combined_max", 6: "rx", 7: "tx",
            8: "other", 9: "combined"}
COALESCE_U32 = {2: "rx_usecs", 3: "rx_frames", 6: "tx_usecs", 7: "tx_frames"}
COALESCE_U8 = {11: "adaptive_rx", 12: "adaptive_tx"}

#: fact field -> ethtool's kernel-name pattern for the legacy flag (one '*' at most)
OFFLOAD_GROUPS = {
    "rx_csum": "rx-checksum",
    "tx_csum": "tx-checksum-*",
    "sg": "tx-scatter-gather*",
    "tso": "tx-tcp*-segmentation",
    "gso": "tx-generic-segmentation",
    "gro": "rx-gro",
    "lro": "rx-lro",
}


def pattern_match(name: str, pattern: str) -> bool:
    """ethtool's flag_pattern_match: a '*' stands for any (possibly empty) middle.

    >>> [pattern_match(n, "tx-tcp*-segmentation") for n in
    ...  ("tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-udp-segmentation")]
    [True, True, False]
    """
    head, star, tail = pattern.partition("*")
    if not star:
        return name == pattern
    return len(name) + 1 >= len(pattern) and name.startswith(head) and name.endswith(tail)


@dataclass(frozen=True)
class FeatureState:
    names: frozenset[str]  # every feature the kernel knows
    hw: frozenset[str]  # the driver lets them change
    active: frozenset[str]
    nochange: frozenset[str]


def offloads(state: FeatureState) -> dict[str, Optional[bool]]:
    """The NicOffloads fields from one device's feature bitsets."""
    out: dict[str, Optional[bool]] = {}
    for key, pattern in OFFLOAD_GROUPS.items():
        members = [n for n in state.names if pattern_match(n, pattern)]
        if not members:
            out[key] = out[f"{key}_fixed"] = None
            continue
        out[key] = any(n in state.active for n in members)
        out[f"{key}_fixed"] = all(n not in state.hw or n in state.nochange for n in members)
    return out


@dataclass
class EthtoolReading:
    """What one interface answered; None = not supported by its driver."""

    ifname: str
    features: Optional[FeatureState] = None
    rings: Optional[dict[str, int]] = None
    channels: Optional[dict[str, int]] = None
    coalesce: Optional[dict[str, int]] = None
    source: str = "netlink ethtool"


# ---- netlink parsing (pure) -------------------------------------------------------------

def parse_header(payload: bytes) -> tuple[Optional[int], Optional[str]]:
    found = attr_map(payload, "ethtool header")
    return u32(found.get(HEADER_DEV_INDEX)), cstring(found.get(HEADER_DEV_NAME))


def parse_bitset(payload: bytes, names: list[str]) -> frozenset[str]:
    """The names of the bits set in an ethtool bitset, compact (SIZE + VALUE words,
    indexes named through `names`) or verbose (a list of BIT nests with names)."""
    found = attr_map(payload, "ethtool bitset")
    out = set()
    if BITSET_BITS in found:  # verbose
        nomask = BITSET_NOMASK in found
        for kind, bit in attrs(found[BITSET_BITS], "ethtool bitset bits"):
            if kind != BITS_BIT:
                continue
            fields = attr_map(bit, "ethtool bitset bit")
            name = cstring(fields.get(BIT_NAME))
            index = u32(fields.get(BIT_INDEX))
            if name is None and index is not None and index < len(names):
                name = names[index]
            if name and (nomask or BIT_VALUE in fields):
                out.add(name)
        return frozenset(out)
    size = u32(found.get(BITSET_SIZE)) or 0
    value = found.get(BITSET_VALUE, b"")
    words = struct.unpack_from(f"={len(value) // 4}I", value)
    for index in range(min(size, len(words) * 32)):
        if words[index // 32] >> (index % 32) & 1:
            out.add(names[index] if index < len(names) else f"bit{index}")
    return frozenset(out)


def parse_feature_names(blocks: list[bytes]) -> list[str]:
    """ETH_SS_FEATURES from STRSET_GET replies: the names by bit index."""
    names: dict[int, str] = {}
    for block in blocks:
        sets = attr_map(block, "ethtool strset").get(STRSET_STRINGSETS, b"")
        for kind, one in attrs(sets, "ethtool stringsets"):
            fields = attr_map(one, "ethtool stringset")
            if kind != STRINGSETS_STRINGSET or u32(fields.get(STRINGSET_ID)) != ETH_SS_FEATURES:
                continue
            for skind, string in attrs(fields.get(STRINGSET_STRINGS, b""), "ethtool strings"):
                if skind != STRINGS_STRING:
                    continue
                entry = attr_map(string, "ethtool string")
                index, value = u32(entry.get(STRING_INDEX)), cstring(entry.get(STRING_VALUE))
                if index is not None and value:
                    names[index] = value
    return [names.get(i, "") for i in range(max(names) + 1)] if names else []


def parse_features(block: bytes, names: list[str]) -> tuple[Optional[str], FeatureState]:
    found = attr_map(block, "ethtool features")
    _, ifname = parse_header(found.get(A_HEADER, b""))

    def bits(kind: int) -> frozenset[str]:
        return parse_bitset(found[kind], names) if kind in found else frozenset()

    known = frozenset(n for n in names if n)
    return ifname, FeatureState(known, bits(FEATURES_HW), bits(FEATURES_ACTIVE),
                                bits(FEATURES_NOCHANGE))


def parse_values(block: bytes, u32_fields: Mapping[int, str],
                 u8_fields: Mapping[int, str] = {}) -> tuple[Optional[str], dict[str, int]]:
    """The header's device name and the listed u32/u8 attributes that are present."""
    found = attr_map(block, "ethtool reply")
    _, ifname = parse_header(found.get(A_HEADER, b""))
    values: dict[str, int] = {}
    for kind, name in u32_fields.items():
        if kind in found and (value := u32(found[kind])) is not None:
            values[name] = value
    for kind, name in u8_fields.items():
        if kind in found and (value := u8(found[kind])) is not None:
            values[name] = value
    return ifname, values


# ---- reading ------------------------------------------------------------------------------

def _header(flags: int = 0) -> bytes:
    return attr(A_HEADER, attr(HEADER_FLAGS, struct.pack("=I", flags)), nested=True)


def read_netlink(warn: Callable[[str], None]) -> Optional[dict[str, EthtoolReading]]:
    """Every interface of the calling thread's namespace; None without the family."""
    with GenlSocket() as sock:
        family = sock.family_id(FAMILY)
        if family is None:
            return None
        readings: dict[str, EthtoolReading] = {}

        def reading(ifname: str) -> EthtoolReading:
            return readings.setdefault(ifname, EthtoolReading(ifname))

        def dump(cmd: int, what: str, payload: bytes) -> list[bytes]:
            try:
                return sock.dump(family, cmd, VERSION, payload)
            except NetlinkError as err:
                warn(f"ethtool netlink {what}: {err.strerror} (errno {err.errno}); "
                     f"{what} unknown")
                return []

        request = attr(STRSET_STRINGSETS, attr(STRINGSETS_STRINGSET, attr(
            STRINGSET_ID, struct.pack("=I", ETH_SS_FEATURES)), nested=True), nested=True)
        try:  # a request without a device: the global string sets
            names = parse_feature_names([sock.get(family, MSG_STRSET_GET, VERSION,
                                                  _header() + request)])
        except NetlinkError as err:
            warn(f"ethtool netlink feature names: {err.strerror}; offloads unknown")
            names = []
        if names:
            for block in dump(MSG_FEATURES_GET, "features", _header(FLAG_COMPACT_BITSETS)):
                ifname, state = parse_features(block, names)
                if ifname:
                    reading(ifname).features = state
        for cmd, what, fields, u8s, slot in (
                (MSG_RINGS_GET, "rings", RINGS, {}, "rings"),
                (MSG_CHANNELS_GET, "channels", CHANNELS, {}, "channels"),
                (MSG_COALESCE_GET, "coalescing", COALESCE_U32, COALESCE_U8, "coalesce")):
            for block in dump(cmd, what, _header()):
                ifname, values = parse_values(block, fields, u8s)
                if ifname:
                    setattr(reading(ifname), slot, values)
        return readings


def read_ioctl(ifnames: list[str], warn: Callable[[str], None]) -> dict[str, EthtoolReading]:
    """The SIOCETHTOOL fallback, one interface at a time."""
    from pyroute2.ethtool.ioctl import IoctlEthtool, NoSuchDevice, NotSupportedError

    readings = {}
    tool = IoctlEthtool()
    try:
        for ifname in ifnames:
            tool.change_ifname(ifname)
            out = EthtoolReading(ifname, source="ioctl SIOCETHTOOL")

            def get(call: Callable[[], Any]) -> Any:
                try:
                    return call()
                except (NotSupportedError, NoSuchDevice):
                    return None
                except OSError as err:
                    warn(f"{ifname}: SIOCETHTOOL {getattr(call, '__name__', '')}: {err}")
                    return None

            features = get(tool.get_features)
            if features is not None:
                names = list(features.keys())
                out.features = FeatureState(
                    frozenset(names),
                    frozenset(n for n in names if features.is_available(n)),
                    frozenset(n for n in names if features.is_active(n)),
                    frozenset(n for n in names if features.is_never_changed(n)))
            rings = get(tool.get_rings)
            if rings is not None:
                out.rings = {k: rings[k] for k in ("rx_max", "tx_max", "rx", "tx")}
            channels = get(tool.get_channels)
            if channels is not None:
                out.channels = {k: channels[f"max_{k}"] for k in
                                ("rx", "tx", "other", "combined") if channels[f"max_{k}"]}
                out.channels = {**{f"{k}_max": v for k, v in out.channels.items()},
                                **{k: channels[f"{k}_count"] for k in out.channels}}
            coalesce = get(tool.get_coalesce)
            if coalesce is not None:
                out.coalesce = {
                    "rx_usecs": coalesce["rx_coalesce_usecs"],
                    "rx_frames": coalesce["rx_max_coalesced_frames"],
                    "tx_usecs": coalesce["tx_coalesce_usecs"],
                    "tx_frames": coalesce["tx_max_coalesced_frames"],
                    "adaptive_rx": coalesce["use_adaptive_rx_coalesce"],
                    "adaptive_tx": coalesce["use_adaptive_tx_coalesce"]}
            readings[ifname] = out
    finally:
        tool.close()
    return readings


# ---- facts --------------------------------------------------------------------------------

def _na(values: Mapping[str, int], prefixes: tuple[str, ...]) -> dict[str, Optional[int]]:
    """`X` and `X_max`, both None when the maximum is 0 or absent (ethtool's "n/a")."""
    out: dict[str, Optional[int]] = {}
    for prefix in prefixes:
        top = values.get(f"{prefix}_max")
        ok = bool(top)
        out[prefix] = values.get(prefix) if ok else None
        out[f"{prefix}_max"] = top if ok else None
    return out


def reading_facts(r: EthtoolReading) -> list[Fact]:
    facts: list[Fact] = []
    if r.features is not None:
        values = offloads(r.features)
        off = [k for k in OFFLOAD_GROUPS if values[k] is False and values[f"{k}_fixed"] is False]
        facts.append(NicOffloads(source=f"{r.source} features", ifname=r.ifname, **values,
                                 off_changeable=",".join(off) or None,
                                 off_changeable_count=len(off)))
    if r.rings is not None:
        ring = _na(r.rings, ("rx", "tx"))
        if any(v is not None for v in ring.values()):
            facts.append(NicRings(source=f"{r.source} rings", ifname=r.ifname, **ring,
                                  rx_pct_of_max=pct(ring["rx"], ring["rx_max"], 1),
                                  tx_pct_of_max=pct(ring["tx"], ring["tx_max"], 1)))
    if r.channels is not None:
        chan = _na(r.channels, ("combined", "rx", "tx", "other"))
        if any(v is not None for v in chan.values()):
            facts.append(NicChannels(source=f"{r.source} channels", ifname=r.ifname, **chan))
    if r.coalesce is not None and r.coalesce:
        c = r.coalesce
        facts.append(NicCoalesce(
            source=f"{r.source} coalesce", ifname=r.ifname,
            rx_usecs=c.get("rx_usecs"), rx_frames=c.get("rx_frames"),
            tx_usecs=c.get("tx_usecs"), tx_frames=c.get("tx_frames"),
            adaptive_rx=None if "adaptive_rx" not in c else bool(c["adaptive_rx"]),
            adaptive_tx=None if "adaptive_tx" not in c else bool(c["adaptive_tx"])))
    return facts


@dataclass(frozen=True)
class EthtoolSample:
    readings: Mapping[str, EthtoolReading] = field(default_factory=dict)


@register_probe
class OffloadsProbe(Probe):
    name = "offloads"
    provides = ("nic_offloads", "nic_rings", "nic_channels", "nic_coalesce")
    description = ("per-interface offloads (TSO/GSO/GRO/LRO/SG/checksums), ring sizes, "
                   "channels and coalescing (ethtool netlink; SIOCETHTOOL without it)")
    sampled = False
    netns_scoped = True

    def __init__(self, use_netlink: bool = True) -> None:
        super().__init__()
        #: False: go straight to the ioctl fallback (tests)
        self.use_netlink = use_netlink

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        require_live(ctx)

    def sample(self, ctx: ProbeContext) -> EthtoolSample:
        readings = read_netlink(self.warn) if self.use_netlink else None
        if readings is None:
            text = ctx.read_optional(ctx.net("dev")) or ""
            ifnames = [line.partition(":")[0].strip()
                       for line in text.splitlines()[2:] if ":" in line]
            readings = read_ioctl([n for n in ifnames if ctx.wants_iface(n)], self.warn)
        return EthtoolSample({k: v for k, v in readings.items() if ctx.wants_iface(k)})

    def facts(self, ctx: ProbeContext, first: Optional[EthtoolSample], last: EthtoolSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        return [f for _, reading in sorted(last.readings.items())
                for f in reading_facts(reading)]
