// Run-queue latency: the time from a task becoming runnable (sched_wakeup,
// sched_wakeup_new, or being switched out while still runnable) to it running
// (sched_switch next_pid). log2 histograms in microseconds, per CPU for the host,
// and one more for the tasks of the scope (--pid/--cgroup) when FILTER_TIDS is set.
//
// -D flags (from sysdiag/probes/ebpf/runqlat.py):
//   STATE_MASK   every task-state bit of sched_switch's prev_state, read from the
//                tracepoint format; (prev_state & STATE_MASK) == 0 means "still runnable"
//                (preempted: 6.18 sets a higher bit, printed "R+")
//   MAX_CPUS     number of possible CPUs (sizes the per-CPU histogram)
//   FILTER_TIDS  set when a scope is given; filter_tids holds its thread ids
#include <uapi/linux/ptrace.h>

typedef struct cpu_slot {
    u32 cpu;
    u32 slot;
} cpu_slot_t;

BPF_HASH(start, u32, u64, 65536);
BPF_HISTOGRAM(hist_cpu, cpu_slot_t, MAX_CPUS * 64);
BPF_HASH(sum_cpu, u32, u64, MAX_CPUS);
#ifdef FILTER_TIDS
BPF_HASH(filter_tids, u32, u8, 4096);
BPF_HISTOGRAM(hist_scope, u32, 64);
BPF_ARRAY(sum_scope, u64, 1);
#endif

static inline void enqueued(u32 pid)
{
    // pid 0 is the idle task: it is never waiting for a CPU (without this the
    // histogram fills with 16-64 ms idle periods)
    if (pid == 0)
        return;
    u64 ts = bpf_ktime_get_ns();
    start.update(&pid, &ts);
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    enqueued(args->pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    enqueued(args->pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    if ((args->prev_state & STATE_MASK) == 0)
        enqueued(args->prev_pid);

    u32 next = args->next_pid;
    if (next == 0)
        return 0;
    u64 *tsp = start.lookup(&next);
    if (tsp == 0)
        return 0;
    u64 delta_us = (bpf_ktime_get_ns() - *tsp) / 1000;
    start.delete(&next);

    cpu_slot_t key = {};
    key.cpu = bpf_get_smp_processor_id();
    key.slot = bpf_log2l(delta_us);
    hist_cpu.increment(key);
    u32 cpu = key.cpu;
    sum_cpu.increment(cpu, delta_us);
#ifdef FILTER_TIDS
    if (filter_tids.lookup(&next)) {
        u32 slot = key.slot;
        hist_scope.increment(slot);
        int zero = 0;
        sum_scope.increment(zero, delta_us);
    }
#endif
    return 0;
}
