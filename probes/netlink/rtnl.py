"""Constants and small helpers shared by the rtnetlink probes.

The dumps themselves go through nldump.py (struct-decoded, no pyroute2): every dump
opens its own socket and closes it, no multicast group is joined, nothing is ever sent
but dump requests, and a namespace is only entered, never created.
"""
from __future__ import annotations

import struct

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
