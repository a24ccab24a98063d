"""Read-only rtnetlink access shared by the netlink probes.

Every dump opens its own socket and closes it (`with rtnl(...)`): no multicast
groups are joined, nothing is ever sent but dump requests, and a namespace is
only entered, never created (pyroute2 creates a missing netns by default).
"""
from __future__ import annotations

import os
import struct
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ..base import ProbeContext, Unavailable

NEEDS_LIVE = "netlink needs a live kernel; a captured tree has only /proc and /sys"

#: where `ip netns add NAME` binds a namespace
NETNS_RUN_DIR = "/run/netns"

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1  # also the parent of clsact
TC_H_UNSPEC = 0

#: how often a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried
DUMP_RETRIES = 3


def require_live(ctx: ProbeContext) -> None:
    if not ctx.live:
        raise Unavailable(NEEDS_LIVE)


@contextmanager
def rtnl(netns: Optional[str] = None) -> Iterator[Any]:
    """An IPRoute socket in the current namespace, or in the named one (/run/netns/NAME)."""
    from pyroute2 import IPRoute  # imported here: captured-tree runs never need it

    if netns is not None:
        path = netns if os.path.isabs(netns) else os.path.join(NETNS_RUN_DIR, netns)
        # checked first: pyroute2 leaks its helper's sockets when entering a netns fails
        if not os.path.exists(path):
            raise Unavailable(f"network namespace {netns!r} does not exist "
                              "(list them with `ip netns list`)")
    try:
        if netns is None:
            ipr = IPRoute(groups=0)
        else:
            # flags=0: open an existing namespace; pyroute2's default O_CREAT would create it
            ipr = IPRoute(netns=netns, flags=0, groups=0)
    except FileNotFoundError as err:
        raise Unavailable(f"network namespace {netns!r} does not exist "
                          "(list them with `ip netns list`)") from err
    except PermissionError as err:
        what = f"enter network namespace {netns!r}" if netns else "open a netlink socket"
        raise Unavailable(f"not allowed to {what} ({err.strerror}); run as root") from err
    try:
        yield ipr
    finally:
        ipr.close()


def dump(call: Callable[[], Any]) -> list[Any]:
    """Run a dump, retrying when the kernel flags it as interrupted by a concurrent change."""
    from pyroute2 import NetlinkDumpInterrupted

    for attempt in range(DUMP_RETRIES):
        try:
            return list(call())
        except NetlinkDumpInterrupted:
            if attempt == DUMP_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def attr_payload(nla: Any) -> Optional[bytes]:
    """The raw payload of a decoded attribute (without its 4-byte header), or None.

    pyroute2 decodes structs with a fixed field list; the kernel appends fields over
    time (rtnl_link_stats64 grew rx_nohandler and rx_otherhost_dropped), so the newer
    tail is read from the raw bytes."""
    data = getattr(nla, "data", None)
    offset = getattr(nla, "offset", None)
    length = getattr(nla, "length", None)
    if data is None or offset is None or not length or length < 4:
        return None
    return bytes(data[offset + 4: offset + length])


def attr_objects(parent: Any) -> Iterator[tuple[str, Any]]:
    """(name, attribute object) pairs. pyroute2's get_attr returns an attribute's *value*,
    which for raw ("hex") and unknown attributes is a string, not the bytes; the
    attribute object keeps data/offset/length for attr_payload."""
    for slot in parent.get("attrs", ()):
        obj = getattr(slot, "nla", None)  # nla_slot in decoded messages; tuples in built ones
        yield (slot.name, obj) if obj is not None else (slot[0], slot[1])


def raw_attr(parent: Any, name: Optional[str] = None,
             attr_type: Optional[int] = None) -> Optional[bytes]:
    """The payload of the first attribute with that name, or (for attributes pyroute2
    does not know, named "UNKNOWN") that type number."""
    for attr_name, obj in attr_objects(parent):
        if name is not None and attr_name == name:
            return attr_payload(obj)
        if attr_type is not None and attr_name == "UNKNOWN":
            header = (obj.get("header") or {}) if hasattr(obj, "get") else {}
            if header.get("type", -1) & 0x3FFF == attr_type:  # without NLA_F_* flags
                return attr_payload(obj)
    return None


def unpack_u64s(payload: bytes, names: tuple[str, ...]) -> dict[str, int]:
    """Native-endian u64 fields in order; fields the payload is too short for are left out."""
    count = min(len(payload) // 8, len(names))
    values = struct.unpack_from(f"={count}Q", payload, 0)
    return dict(zip(names, values))


def format_handle(handle: int) -> str:
    """A qdisc handle or class id in tc notation: 0x10000 -> "1:", 0x10010 -> "1:10"."""
    major, minor = handle >> 16, handle & 0xFFFF
    return f"{major:x}:" if minor == 0 else f"{major:x}:{minor:x}"


def format_parent(parent: int) -> str:
    if parent == TC_H_ROOT:
        return "root"
    if parent == TC_H_INGRESS:
        return "ingress"
    if parent == TC_H_UNSPEC:
        return "none"
    return format_handle(parent)
