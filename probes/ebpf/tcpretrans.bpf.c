// TCP retransmits by flow (local address and port, remote address and port, family,
// socket state), from tcp:tcp_retransmit_skb. Ports in the tracepoint are already in
// host order.
//
// -D flags (from sysdiag/probes/ebpf/tcpretrans.py):
//   FAMILY_INET6  the AF_INET6 value, from the format's family table (else IPv4 is read)
#include <uapi/linux/ptrace.h>

struct key_t {
    u8 saddr[16];
    u8 daddr[16];
    u16 sport;
    u16 dport;
    u16 family;
    u16 state;
};

BPF_HASH(retrans, struct key_t, u64, 10240);

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    struct key_t key = {};
    key.sport = args->sport;
    key.dport = args->dport;
    key.family = args->family;
    key.state = args->state;
    // the address arrays sit at unaligned offsets: copy them with probe reads
    // (a direct context load must be aligned to its size)
    if (key.family == FAMILY_INET6) {
        bpf_probe_read_kernel(&key.saddr, 16, args->saddr_v6);
        bpf_probe_read_kernel(&key.daddr, 16, args->daddr_v6);
    } else {
        bpf_probe_read_kernel(&key.saddr, 4, args->saddr);
        bpf_probe_read_kernel(&key.daddr, 4, args->daddr);
    }
    retrans.increment(key);
    return 0;
}
