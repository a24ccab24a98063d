"""Tracing probes with bcc (eBPF), tracepoints only: many production kernels, this one
included, are built without kprobes. Each program is a `.bpf.c` file in this package,
configured with -D flags; the probes run only when the playbook or --ebpf asks for
tracing (cost class "tracing"). docs/ebpf.md describes each program."""
