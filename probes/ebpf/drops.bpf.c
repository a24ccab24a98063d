// Packet drops: every skb freed through kfree_skb (a drop, not a normal
// consume_skb), counted by drop reason, kernel location and protocol.
//
// -D flags (from sysdiag/probes/ebpf/drops.py):
//   HAS_REASON   the tracepoint has a `reason` field (kernel 5.17+); reason names are
//                read in user space from the format's __print_symbolic table
#include <uapi/linux/ptrace.h>

#ifdef HAS_REASON
// bcc declares the tracepoint's record from its format, where `reason` is an
// `enum skb_drop_reason`; the headers we compile against need not define it (or may
// define an older one). Complete the type here: only its size matters (4 bytes, as
// the format says); the values are read from the format in user space.
enum skb_drop_reason { SYSDIAG_SKB_DROP_REASON_ANY };
#endif

struct key_t {
    u64 location;
    u32 reason;
    u16 protocol;
    u16 pad;
};

BPF_HASH(drops, struct key_t, u64, 10240);

TRACEPOINT_PROBE(skb, kfree_skb)
{
    struct key_t key = {};
    key.location = (u64)args->location;
#ifdef HAS_REASON
    key.reason = args->reason;
#endif
    key.protocol = args->protocol;
    drops.increment(key);
    return 0;
}
