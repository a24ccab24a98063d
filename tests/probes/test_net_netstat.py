"""netstat: /proc/net/{snmp,netstat,snmp6,sockstat} parsing, the counter table, rates.

The *_6_18 texts are this 6.18 host's own files.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sysdiag.facts import NetCounters, SockStat
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.netstat import (
    COUNTERS, GAUGES, NetstatProbe, NetstatSample, counter_facts, parse_snmp6,
    parse_snmp_pairs, parse_sockstat, parse_triple, select_counters, sockstat_fact)

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

SNMP_6_18 = """\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 1766 0 0 0 0 0 1766 1122 0 0 0 0 0 0 0 0 0 1122
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 1 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
IcmpMsg: InType3
IcmpMsg: 1
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 24 2 0 0 0 1720 1077 0 0 30 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 45 0 0 46 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
"""

NETSTAT_6_18 = """\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps
TcpExt: 0 0 0 0 0 0 0 0 0 0 9 0 0 0 0 0 0 0 0 0 0 0 0 0 19 28 24 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 0 0 0 0 53 0 0 0 0 15 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1254 0 0 0 0 0 0 0 0 0 0 0 0 2 0 0 19 19 1 0 174 0 0 0 0 0 0 0 0 0 0 0 0 0 0 197 0 0 0 0 0 0 2 0 0 0 0 0 0 0 0 0 0 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps
IpExt: 0 0 0 0 0 0 51511397 141494 0 0 0 0 0 1766 0 0 0 0
MPTcpExt: MPCapableSYNRX MPCapableSYNTX MPCapableSYNACKRX MPCapableACKRX MPCapableFallbackACK MPCapableFallbackSYNACK MPCapableSYNTXDrop MPCapableSYNTXDisabled MPCapableEndpAttempt MPFallbackTokenInit MPTCPRetrans MPJoinNoTokenFound MPJoinSynRx MPJoinSynBackupRx MPJoinSynAckRx MPJoinSynAckBackupRx MPJoinSynAckHMacFailure MPJoinAckRx MPJoinAckHMacFailure MPJoinRejected MPJoinSynTx MPJoinSynTxCreatSkErr MPJoinSynTxBindErr MPJoinSynTxConnectErr DSSNotMatching DSSCorruptionFallback DSSCorruptionReset InfiniteMapTx InfiniteMapRx DSSNoMatchTCP DataCsumErr OFOQueueTail OFOQueue OFOMerge NoDSSInWindow DuplicateData AddAddr AddAddrTx AddAddrTxDrop EchoAdd EchoAddTx EchoAddTxDrop PortAdd AddAddrDrop MPJoinPortSynRx MPJoinPortSynAckRx MPJoinPortAckRx MismatchPortSynRx MismatchPortAckRx RmAddr RmAddrDrop RmAddrTx RmAddrTxDrop RmSubflow MPPrioTx MPPrioRx MPFailTx MPFailRx MPFastcloseTx MPFastcloseRx MPRstTx MPRstRx SubflowStale SubflowRecover SndWndShared RcvWndShared RcvWndConflictUpdate RcvWndConflict MPCurrEstab Blackhole MPCapableDataFallback MD5SigFallback DssFallback SimultConnectFallback FallbackFailed WinProbe
MPTcpExt: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""

# first lines of this host's /proc/net/snmp6 (tab-separated)
SNMP6_HEAD = """\
Ip6InReceives                   	1
Ip6InNoRoutes                   	0
Ip6InDiscards                   	0
Ip6OutNoRoutes                  	0
Ip6ReasmTimeout                 	0
Ip6ReasmFails                   	0
Ip6FragFails                    	0
Udp6InDatagrams                 	0
Udp6NoPorts                     	0
Udp6InErrors                    	0
Udp6OutDatagrams                	0
Udp6RcvbufErrors                	0
Udp6SndbufErrors                	0
Udp6InCsumErrors                	0
Udp6IgnoredMulti                	0
Udp6MemErrors                   	0
"""

SOCKSTAT_6_18 = """\
sockets: used 15
TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 0
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""


def test_counter_table_matches_the_fact_model():
    fields = set(NetCounters.model_fields) - {"kind", "source", "retrans_pct",
                                              "retrans_pct_since_boot"}
    from_table = {f"{stem}_{suffix}" for _, _, stem in COUNTERS for suffix in ("total", "per_s")}
    from_table |= {stem for _, _, stem in GAUGES}
    assert fields == from_table
    assert len({(section, name) for section, name, _ in COUNTERS + GAUGES}) == len(
        COUNTERS + GAUGES)


def test_parse_snmp():
    sections = parse_snmp_pairs(SNMP_6_18, "/proc/net/snmp")
    assert list(sections) == ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]
    assert sections["Tcp"]["MaxConn"] == -1
    assert sections["Tcp"]["ActiveOpens"] == int(SNMP_6_18.split("\nTcp: ")[2].split()[4])
    assert sections["IcmpMsg"] == {"InType3": 1}


def test_parse_netstat_and_every_counter_this_kernel_has():
    sections = parse_snmp_pairs(SNMP_6_18, "snmp")
    sections.update(parse_snmp_pairs(NETSTAT_6_18, "netstat"))
    sections[""] = parse_snmp6(SNMP6_HEAD)
    assert set(sections) >= {"TcpExt", "IpExt", "MPTcpExt"}
    values = select_counters(sections)
    # 6.18 has every counter the catalog uses
    assert set(values) == {stem for _, _, stem in COUNTERS + GAUGES}
    assert values["tcpext_listen_overflows"] == sections["TcpExt"]["ListenOverflows"]
    assert values["tcpext_req_q_full_drop"] == sections["TcpExt"]["TCPReqQFullDrop"]
    assert values["udp6_rcvbuf_errors"] == sections[""]["Udp6RcvbufErrors"]


@pytest.mark.parametrize("text, problem", [
    ("", "no counters"),
    ("Tcp: RtoMin MaxConn\n", "odd number of lines.*'Tcp:'"),
    ("Tcp: A B\nUdp: 1 2\n", "line 2: expected the values of 'Tcp'"),
    ("Tcp: A B\nTcp: 1\n", "Tcp: 2 names but 1 values"),
    ("Tcp: A B\nTcp: 1 x\n", "Tcp B: expected an integer"),
    ("Tcp: A B\n1 2\n", "line 2"),
])
def test_parse_snmp_pairs_rejects_bad_input(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_snmp_pairs(text, "/proc/net/snmp")


def test_parse_snmp_truncated_mid_line():
    cut = SNMP_6_18[: SNMP_6_18.index("Udp: InDatagrams") + 40]
    with pytest.raises(ParseError, match="odd number of lines"):
        parse_snmp_pairs(cut, "/proc/net/snmp")


def test_parse_snmp6():
    values = parse_snmp6(SNMP6_HEAD)
    assert "Ip6InReceives" in values and values["Udp6MemErrors"] == 0
    with pytest.raises(ParseError, match="line 1: expected 'name value'"):
        parse_snmp6("Ip6InReceives\n")
    with pytest.raises(ParseError, match="empty"):
        parse_snmp6("")


def test_parse_sockstat():
    s = parse_sockstat(SOCKSTAT_6_18)
    assert set(s) == {"sockets", "TCP", "UDP", "UDPLITE", "RAW", "FRAG"}
    assert set(s["TCP"]) == {"inuse", "orphan", "tw", "alloc", "mem"}
    assert set(s["FRAG"]) == {"inuse", "memory"}


@pytest.mark.parametrize("text, problem", [
    ("", "empty"),
    ("TCP: inuse 1 orphan\n", "line 1: expected 'PROTO: key value"),
    ("TCP inuse 1\n", "line 1"),
    ("TCP: inuse many\n", "TCP inuse: expected an integer"),
])
def test_parse_sockstat_rejects_bad_input(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_sockstat(text)


def test_parse_triple():
    assert parse_triple("287901\t383868\t575802\n", "tcp_mem") == (287901, 383868, 575802)
    assert parse_triple(None, "tcp_mem") is None
    with pytest.raises(ParseError, match="tcp_mem: expected three numbers"):
        parse_triple("1 2\n", "tcp_mem")


def sample(**counters) -> NetstatSample:
    return NetstatSample(counters=counters, sources=("/proc/net/snmp",))


def test_rates_and_retransmit_share():
    first = sample(tcp_out_segs=1_000, tcp_retrans_segs=10, tcpext_listen_overflows=5,
                   tcp_curr_estab=3)
    last = sample(tcp_out_segs=3_000, tcp_retrans_segs=70, tcpext_listen_overflows=5,
                  tcp_curr_estab=9)
    fact = counter_facts(first, last, 2.0)
    assert fact.tcp_out_segs_per_s == 1000.0 and fact.tcp_retrans_segs_per_s == 30.0
    assert fact.retrans_pct == 3.0  # 60 of 2000 segments in the window
    assert fact.retrans_pct_since_boot == pytest.approx(70 / 3000 * 100, abs=1e-3)
    assert (fact.tcpext_listen_overflows_total, fact.tcpext_listen_overflows_per_s) == (5, 0.0)
    assert fact.tcp_curr_estab == 9
    # a counter this kernel lacks is unknown, not 0
    assert fact.tcpext_rcv_q_drop_total is None and fact.tcpext_rcv_q_drop_per_s is None
    assert fact.source == "/proc/net/snmp"


def test_no_window_rates_with_one_sample_or_no_segments():
    fact = counter_facts(None, sample(tcp_out_segs=10, tcp_retrans_segs=1), None)
    assert fact.tcp_out_segs_per_s is None and fact.retrans_pct is None
    assert fact.retrans_pct_since_boot == 10.0
    flat = sample(tcp_out_segs=10, tcp_retrans_segs=1)
    assert counter_facts(flat, flat, 1.0).retrans_pct is None  # no segments sent: no share


def test_sockstat_fact_with_thresholds():
    s = NetstatSample(sockstat=parse_sockstat(
        "sockets: used 15\nTCP: inuse 1 orphan 2 tw 3 alloc 4 mem 287901\n"
        "UDP: inuse 5 mem 6\nFRAG: inuse 7 memory 8\n"),
        tcp_mem=(287901, 383868, 575802), udp_mem=(1, 2, 3), frag_high_thresh=4194304)
    fact = sockstat_fact(s)
    assert isinstance(fact, SockStat)
    assert (fact.sockets_used, fact.tcp_inuse, fact.tcp_orphan, fact.tcp_tw, fact.tcp_alloc) == (
        15, 1, 2, 3, 4)
    assert (fact.tcp_mem_pages, fact.udp_inuse, fact.udp_mem_pages) == (287901, 5, 6)
    assert (fact.frag_inuse, fact.frag_memory_bytes, fact.frag_high_thresh_bytes) == (
        7, 8, 4194304)
    assert (fact.tcp_mem_min_pages, fact.tcp_mem_pressure_pages, fact.tcp_mem_max_pages) == (
        287901, 383868, 575802)
    assert fact.tcp_mem_pct_of_max == 50.0
    assert (fact.udp_mem_pressure_pages, fact.udp_mem_max_pages) == (2, 3)
    assert sockstat_fact(replace(s, sockstat=None)) is None


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_probe_on_a_full_tree(tmp_path):
    write(tmp_path, {"net/snmp": SNMP_6_18, "net/netstat": NETSTAT_6_18,
                     "net/snmp6": SNMP6_HEAD, "net/sockstat": SOCKSTAT_6_18,
                     "sys/net/ipv4/tcp_mem": "287901\t383868\t575802\n",
                     "sys/net/ipv4/ipfrag_high_thresh": "4194304\n"})
    ctx = ProbeContext(proc_root=tmp_path, live=False)
    probe = NetstatProbe()
    counters, sockstat = probe.facts(ctx, None, probe.sample(ctx), None)
    assert isinstance(counters, NetCounters) and isinstance(sockstat, SockStat)
    assert counters.source == ", ".join(str(tmp_path / "net" / n)
                                        for n in ("snmp", "netstat", "snmp6"))
    assert counters.tcp_out_rsts_total is not None and counters.udp6_no_ports_total == 0
    assert sockstat.tcp_mem_max_pages == 575802 and sockstat.udp_mem_max_pages is None
    assert probe.warnings == []


def test_probe_without_snmp6_and_sockstat(tmp_path):
    write(tmp_path, {"net/snmp": SNMP_6_18})
    ctx = ProbeContext(proc_root=tmp_path, live=False)
    probe = NetstatProbe()
    (counters,) = probe.facts(ctx, None, probe.sample(ctx), None)
    assert counters.tcp_in_segs_total is not None
    assert counters.tcpext_listen_overflows_total is None  # no /proc/net/netstat
    assert counters.ip6_in_no_routes_total is None  # IPv6 disabled
    assert any("netstat missing: TcpExt/IpExt" in w for w in probe.warnings)
    assert any("sockstat missing" in w for w in probe.warnings)


def test_probe_with_nothing_to_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="none of /proc/net"):
        NetstatProbe().sample(ProbeContext(proc_root=tmp_path, live=False))


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_tree():
    # the fixture has sockstat but neither snmp nor netstat
    ctx = ProbeContext(proc_root=FIXTURE / "proc", sys_root=FIXTURE / "sys", live=False)
    probe = NetstatProbe()
    (fact,) = probe.facts(ctx, None, probe.sample(ctx), None)
    assert isinstance(fact, SockStat)
    assert (fact.sockets_used, fact.tcp_inuse, fact.tcp_tw, fact.tcp_alloc, fact.tcp_mem_pages) == (
        1602, 35, 4, 59, 22)
    assert (fact.udp_inuse, fact.udp_mem_pages, fact.frag_memory_bytes) == (12, 62, 0)
    assert fact.tcp_mem_max_pages is None  # no proc/sys/net in the fixture
    assert len(probe.warnings) == 2
