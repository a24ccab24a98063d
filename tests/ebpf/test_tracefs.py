"""Tracepoint format parsing, on format files copied from the 6.18 kernel."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.probes.ebpf.drops import reason_names
from sysdiag.probes.ebpf.offcpu import d_state_bit
from sysdiag.probes.ebpf.runqlat import state_mask
from sysdiag.probes.ebpf.tcpretrans import family_values, state_names
from sysdiag.probes.ebpf.tracefs import flag_table, parse_format, symbolic_table
from sysdiag.probes.base import Unavailable
from sysdiag.probes.parse import ParseError

EVENTS = Path(__file__).with_name("fixtures") / "tracing-events"


def fmt(event: str):
    path = EVENTS / event / "format"
    return parse_format(path.read_text(), str(path))


def test_kfree_skb_fields_and_reason_table():
    f = fmt("skb/kfree_skb")
    assert f.name == "kfree_skb" and f.event_id == 2310
    assert f.fields["reason"] == "enum skb_drop_reason reason"
    names = reason_names(f)
    # the values KNOWLEDGE.md §6 lists for 6.18, read from the format, not from a copy
    assert names[2] == "NOT_SPECIFIED" and names[3] == "NO_SOCKET"
    assert names[6] == "SOCKET_RCVBUFF" and names[12] == "NETFILTER_DROP"
    assert names[40] == "TCP_LISTEN_OVERFLOW" and names[64] == "QDISC_DROP"
    assert names[128] == "MAX" and len(names) == 127


def test_other_kernels_number_reasons_differently():
    text = ('name: kfree_skb\nID: 1\nformat:\n\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n'
            '\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n\n'
            'print fmt: "reason: %s", __print_symbolic(REC->reason, { 1, "NOT_SPECIFIED" }, '
            '{ 2, "NO_SOCKET" }, { 9, "NETFILTER_DROP" })')
    assert reason_names(parse_format(text)) == {1: "NOT_SPECIFIED", 2: "NO_SOCKET", 9: "NETFILTER_DROP"}


def test_sched_switch_state_bits():
    f = fmt("sched/sched_switch")
    flags = flag_table(f.print_fmt, "prev_state")
    assert flags[0x2] == "D" and flags[0x80] == "I"
    assert state_mask(f) == 0xFF
    assert d_state_bit(f) == 0x2


def test_tcp_retransmit_family_and_states():
    f = fmt("tcp/tcp_retransmit_skb")
    assert family_values(f) == {"AF_INET": 2, "AF_INET6": 10}
    states = state_names(f)
    assert states[1] == "ESTABLISHED" and states[2] == "SYN_SENT" and states[12] == "NEW_SYN_RECV"
    # the state table names C constants, not numbers: symbolic_table leaves them out
    assert symbolic_table(f.print_fmt, "state") == {}


def test_format_without_a_flag_table_is_unsupported():
    text = ('name: sched_switch\nID: 3\nformat:\n\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;\n\n'
            'print fmt: "prev_state=%ld", REC->prev_state')
    with pytest.raises(Unavailable, match="no prev_state flag table"):
        state_mask(parse_format(text))
    with pytest.raises(Unavailable, match="no D state bit"):
        d_state_bit(parse_format(text))


@pytest.mark.parametrize("text", ["", "name: x\nID: 1\n", "garbage\nmore garbage",
                                  "name: x\nID: 1\nformat:\n\tfield:int a;\toff"])
def test_malformed_or_truncated_format_is_a_parse_error(text):
    with pytest.raises(ParseError, match="not a tracepoint format file"):
        parse_format(text, "events/x/y/format")


def test_bad_id_is_a_parse_error():
    with pytest.raises(ParseError, match="ID is not a number"):
        parse_format("name: x\nID: zz\nformat:\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n")


def test_unknown_field_has_no_table():
    f = fmt("skb/kfree_skb")
    assert symbolic_table(f.print_fmt, "nonexistent") == {}
    assert flag_table(f.print_fmt, "reason") == {}
