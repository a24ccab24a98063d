// Off-CPU time in uninterruptible sleep (D state): from a task's switch-out with
// the D bit in prev_state to its next switch-in, summed by (task, kernel stack at
// switch-out). The stack names what the task waits for (the first frame outside the
// scheduler, as /proc/PID/wchan would). Waits still in progress at the end of the
// window stay in `start`; user space reads them from there.
//
// -D flags (from sysdiag/probes/ebpf/offcpu.py):
//   STATE_D      the "D" bit of prev_state, read from the sched_switch format
//   FILTER_TIDS  set when a scope is given; filter_tids holds its thread ids
#include <uapi/linux/ptrace.h>

struct start_t {
    u64 ts;
    s64 stackid;
    char comm[16];
};

struct key_t {
    u32 pid;
    s32 stackid;
    char comm[16];
};

struct val_t {
    u64 total_ns;
    u64 count;
    u64 max_ns;
};

BPF_HASH(start, u32, struct start_t, 16384);
BPF_HASH(waits, struct key_t, struct val_t, 16384);
BPF_STACK_TRACE(stacks, 4096);
#ifdef FILTER_TIDS
BPF_HASH(filter_tids, u32, u8, 4096);
#endif

TRACEPOINT_PROBE(sched, sched_switch)
{
    u32 prev = args->prev_pid;
    if (prev != 0 && (args->prev_state & STATE_D)) {
#ifdef FILTER_TIDS
        if (filter_tids.lookup(&prev))
#endif
        {
            struct start_t s = {};
            s.ts = bpf_ktime_get_ns();
            s.stackid = stacks.get_stackid(args, 0);
            bpf_probe_read_kernel(&s.comm, sizeof(s.comm), args->prev_comm);
            start.update(&prev, &s);
        }
    }

    u32 next = args->next_pid;
    struct start_t *sp = start.lookup(&next);
    if (sp == 0)
        return 0;
    u64 delta = bpf_ktime_get_ns() - sp->ts;
    struct key_t key = {};
    key.pid = next;
    key.stackid = sp->stackid;
    __builtin_memcpy(&key.comm, sp->comm, sizeof(key.comm));
    start.delete(&next);

    struct val_t zero = {};
    struct val_t *val = waits.lookup_or_try_init(&key, &zero);
    if (val) {
        __sync_fetch_and_add(&val->total_ns, delta);
        __sync_fetch_and_add(&val->count, 1);
        if (delta > val->max_ns)
            val->max_ns = delta;
    }
    return 0;
}
