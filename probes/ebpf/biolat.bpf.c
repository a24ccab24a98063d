// Block I/O latency by device and operation: block_rq_issue to block_rq_complete
// (device time, what the disk itself takes), keyed by (dev, sector) like bcc's
// biolatency. log2 histograms in microseconds.
//
// Operations, from the rwbs string (blktrace's letters): 1 read (R), 2 write (W),
// 3 discard (D), 4 flush only (F without data), 0 other.
#include <uapi/linux/ptrace.h>

struct start_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct hist_key {
    u32 dev;
    u32 op;
    u32 slot;
    u32 pad;
};

struct sum_key {
    u32 dev;
    u32 op;
};

BPF_HASH(start, struct start_key, u64, 16384);
BPF_HISTOGRAM(hist, struct hist_key, 8192);
BPF_HASH(sums, struct sum_key, u64, 1024);

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct start_key key = {};
    key.dev = args->dev;
    key.sector = args->sector;
    u64 ts = bpf_ktime_get_ns();
    start.update(&key, &ts);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct start_key skey = {};
    skey.dev = args->dev;
    skey.sector = args->sector;
    u64 *tsp = start.lookup(&skey);
    if (tsp == 0)
        return 0;
    u64 delta_us = (bpf_ktime_get_ns() - *tsp) / 1000;
    start.delete(&skey);

    char rwbs[8] = {};
    bpf_probe_read_kernel(&rwbs, sizeof(rwbs), args->rwbs);
    u32 op = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        char c = rwbs[i];
        if (c == 'R') { op = 1; break; }
        if (c == 'W') { op = 2; break; }
        if (c == 'D') { op = 3; break; }
        if (c == 'N' || c == 0) break;
    }
    if (op == 0 && rwbs[0] == 'F')
        op = 4;

    struct hist_key hkey = {};
    hkey.dev = skey.dev;
    hkey.op = op;
    hkey.slot = bpf_log2l(delta_us);
    hist.increment(hkey);
    struct sum_key sk = {};
    sk.dev = skey.dev;
    sk.op = op;
    sums.increment(sk, delta_us);
    return 0;
}
