/* The record ABI between the kernel programs (bpf/collector.c) and the Python
 * decoder (collector/abi.py). One header, one mirror; tests/kernel/test_abi.py
 * checks the mirror against the layouts clang produces and against the records
 * the loaded program emits.
 *
 * Invariants:
 *  - every record starts with struct vigil_hdr; hdr.op names the layout and
 *    hdr.size is sizeof() of the whole record (user space checks both);
 *  - fields are naturally aligned, explicit padding, no implicit holes;
 *  - a layout change bumps VIGIL_ABI_VERSION; new opcodes only append.
 */
#ifndef VIGIL_EVENTS_H
#define VIGIL_EVENTS_H

#define VIGIL_ABI_VERSION 1

#define VIGIL_PATH_LEN 256   /* exec path, open path, cgroup path */
#define VIGIL_ARGC 8         /* argv slots captured at execve */
#define VIGIL_ARG_LEN 64     /* bytes per argv slot (NUL-terminated, truncated) */
#define VIGIL_DNS_LEN 256    /* DNS payload bytes captured */
#define VIGIL_SYSCALL_WORDS 8 /* 512-bit syscall bitmap */

enum vigil_op {
    VIGIL_OP_EXEC = 1,
    VIGIL_OP_EXIT = 2,
    VIGIL_OP_OPEN = 3,
    VIGIL_OP_CONNECT = 4,
    VIGIL_OP_DNS = 5,
    VIGIL_OP_CGROUP_MKDIR = 6,
    VIGIL_OP_CGROUP_RMDIR = 7,
};

/* Indices of the per-cpu counters array. */
enum vigil_counter {
    VIGIL_CNT_SUBMITTED = 0,   /* records submitted to the ring */
    VIGIL_CNT_DROPPED = 1,     /* ring full: record lost */
    VIGIL_CNT_DEDUP_HIT = 2,   /* suppressed by the dedup map, before reserving */
    VIGIL_CNT_DEDUP_MISS = 3,  /* new (cgroup, behaviour) key */
    VIGIL_CNT_SYSCALLS_LOST = 4, /* syscall map full: a process's syscall not recorded */
    VIGIL_CNT_MAX = 5,
};

struct vigil_hdr {
    u64 ts;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 cgroup_id;   /* cgroup v2 id of the task (= directory inode) */
    u32 pid;         /* tgid */
    u32 tid;
    u32 uid;
    u16 op;          /* enum vigil_op */
    u16 size;        /* sizeof the whole record */
    char comm[16];
};                   /* 48 bytes */

struct vigil_exec {
    struct vigil_hdr hdr;
    u32 ppid;        /* 0: unknown (forked before the collector); user space reads /proc */
    u32 argc;        /* argv slots filled (<= VIGIL_ARGC) */
    char path[VIGIL_PATH_LEN];
    char argv[VIGIL_ARGC * VIGIL_ARG_LEN]; /* VIGIL_ARGC slots of VIGIL_ARG_LEN */
};

struct vigil_exit {
    struct vigil_hdr hdr;
    s32 code;        /* exit_group() status; -1: killed / unknown */
    u32 _pad;
};

struct vigil_open {
    struct vigil_hdr hdr;
    s32 flags;
    u32 _pad;
    char path[VIGIL_PATH_LEN];
};

struct vigil_connect {
    struct vigil_hdr hdr;
    u16 family;      /* AF_INET, AF_INET6, AF_UNIX, ... */
    u16 port;        /* host byte order */
    u32 _pad;
    u8 addr[16];     /* 4 bytes for AF_INET, 16 for AF_INET6 */
};

struct vigil_dns {
    struct vigil_hdr hdr;
    u16 len;         /* payload bytes captured */
    u16 port;
    u32 _pad;
    u8 payload[VIGIL_DNS_LEN];
};

struct vigil_cgroup {
    struct vigil_hdr hdr;
    u64 id;          /* the new / removed cgroup's id */
    s32 root;        /* hierarchy id (cgroup v2 is the default hierarchy) */
    s32 level;
    char path[VIGIL_PATH_LEN];
};

struct vigil_syscall_key {
    u64 cgroup_id;
    u32 pid;
    u32 _pad;
};

struct vigil_syscall_bits {
    u64 w[VIGIL_SYSCALL_WORDS];
};

/* What the kernel side lost, per cgroup (map "lost", drained by user space):
 * a cgroup's profile is complete only if nothing of it was lost. */
struct vigil_lost {
    u64 records;     /* records dropped: ring buffer full */
    u64 syscalls;    /* syscalls not recorded: syscall map full */
};

struct vigil_dedup_key {
    u64 cgroup_id;
    u64 hash;        /* FNV-1a over op + behaviour bytes */
};

#endif
