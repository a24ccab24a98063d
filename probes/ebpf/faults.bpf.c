// User page faults by process (exceptions:page_fault_user), with the write and
// protection-fault shares from the x86 error code (hardware bits: 0x1 protection
// violation, 0x2 write). Minor and major faults alike: the tracepoint fires before the
// kernel knows which one it is.
//
// -D flags (from sysdiag/probes/ebpf/faults.py):
//   FILTER_TIDS  set when a scope is given; filter_tids holds its thread ids
#include <uapi/linux/ptrace.h>

struct val_t {
    u64 faults;
    u64 writes;
    u64 protection;
    char comm[16];
};

BPF_HASH(faults, u32, struct val_t, 10240);
#ifdef FILTER_TIDS
BPF_HASH(filter_tids, u32, u8, 4096);
#endif

TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
#ifdef FILTER_TIDS
    u32 tid = (u32)id;
    if (filter_tids.lookup(&tid) == 0)
        return 0;
#endif
    struct val_t *val = faults.lookup(&tgid);
    if (val == 0) {
        struct val_t init = {};
        bpf_get_current_comm(&init.comm, sizeof(init.comm));
        faults.insert(&tgid, &init);  // BPF_NOEXIST: another thread may have won
        val = faults.lookup(&tgid);
        if (val == 0)
            return 0;
    }
    __sync_fetch_and_add(&val->faults, 1);
    if (args->error_code & 0x2)
        __sync_fetch_and_add(&val->writes, 1);
    if (args->error_code & 0x1)
        __sync_fetch_and_add(&val->protection, 1);
    return 0;
}
