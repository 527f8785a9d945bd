// SPDX-License-Identifier: Apache-2.0
/* Vigil node collector: tracepoint programs only (this kernel has no kprobes,
 * and refuses fentry/LSM). Records are defined in include/events.h.
 *
 * Parameters (all by -D from collector/ebpf.py, never by editing this text):
 *   SELF_PID        the collector's tgid; its own syscalls are never traced
 *   RINGBUF_PAGES   ring buffer size in pages (16 MiB by default)
 *   DEDUP_SIZE      entries in the (cgroup, behaviour) LRU
 *   DEDUP           1: suppress repeated keys in the kernel, 0: emit everything
 *   SYSCALL_MAP_SIZE  (cgroup, pid) syscall bitmaps held between drains (default 16384)
 *   TRACE_EXEC, TRACE_OPEN, TRACE_CONNECT, TRACE_DNS, TRACE_SYSCALLS  0/1
 *
 * Invariants:
 *   - the dedup map is checked BEFORE ring space is reserved: a hit costs a
 *     hash and a lookup, never a wakeup or a reservation;
 *   - submits use BPF_RB_NO_WAKEUP; user space consumes on a timer;
 *   - nothing is lost silently: a record dropped on a full ring and a syscall
 *     not recorded on a full syscall map are counted globally and per cgroup
 *     (map "lost"), and a dropped record's dedup key is forgotten, so the next
 *     occurrence of that behaviour is reported instead of suppressed forever;
 *   - struct layouts of kernel objects are never read (the header tree does
 *     not match this kernel): only helpers and tracepoint arguments.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include "events.h"

#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10
#define DNS_PORT 53

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_TABLE("lru_hash", struct vigil_dedup_key, u8, dedup, DEDUP_SIZE);
BPF_PERCPU_ARRAY(counters, u64, VIGIL_CNT_MAX);
BPF_TABLE("lru_hash", u32, u32, parents, 65536);            /* child tgid -> parent tgid */
BPF_TABLE("lru_hash", u32, s32, exit_codes, 16384);         /* tgid -> exit_group status */
BPF_TABLE("lru_hash", u64, u8, dns_fds, 16384);             /* tgid<<32|fd connected to :53 */
#ifndef SYSCALL_MAP_SIZE
#define SYSCALL_MAP_SIZE 16384
#endif
BPF_HASH(syscalls, struct vigil_syscall_key, struct vigil_syscall_bits, SYSCALL_MAP_SIZE);
BPF_TABLE("lru_hash", u64, struct vigil_lost, lost, 4096);  /* cgroup id -> what was lost */

struct exec_args {
    u32 argc;
    u32 _pad;
    char argv[VIGIL_ARGC][VIGIL_ARG_LEN];
};
BPF_TABLE("lru_hash", u32, struct exec_args, pending_argv, 4096);  /* tid -> argv at execve */

/* Per-cpu scratch: records are too big for the 512-byte stack. */
struct scratch {
    char buf[VIGIL_PATH_LEN];
    struct exec_args args;
};
BPF_PERCPU_ARRAY(scratch_map, struct scratch, 1);
BPF_PERCPU_ARRAY(exec_zero, struct exec_args, 1);

static __always_inline void count(u32 idx)
{
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline int is_self(u64 pid_tgid)
{
    return (u32)(pid_tgid >> 32) == SELF_PID;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static __always_inline u64 mix(u64 h, u64 v)
{
    return (h ^ v) * FNV_PRIME;
}

/* Hash the first len bytes of buf, 8 at a time (bytes past len masked off). */
static __always_inline u64 hash_bytes(u64 h, const char *buf, u32 len, u32 cap)
{
    for (u32 i = 0; i < cap / 8; i++) {
        u32 off = i * 8;
        if (off >= len)
            break;
        u64 w = *(const u64 *)(buf + off);
        u32 rest = len - off;
        if (rest < 8)
            w &= (1ULL << (rest * 8)) - 1;
        h = mix(h, w);
    }
    return mix(h, len);
}

/* 1: this (cgroup, key) was already reported, drop it; 0: new, report it.
 * (A per-CPU direct-mapped cache in front of the LRU was tried and measured:
 * no gain, the LRU lookup costs ~30 ns; see docs/collector.md.) */
static __always_inline int seen(u64 cgroup_id, u64 hash)
{
#if DEDUP
    struct vigil_dedup_key k = {.cgroup_id = cgroup_id, .hash = hash};
    if (dedup.lookup(&k)) {
        count(VIGIL_CNT_DEDUP_HIT);
        return 1;
    }
    u8 one = 1;
    dedup.update(&k, &one);
    count(VIGIL_CNT_DEDUP_MISS);
#endif
    return 0;
}

static __always_inline void fill_hdr(struct vigil_hdr *h, u16 op, u16 size, u64 pid_tgid, u64 cg)
{
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = cg;
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)bpf_get_current_uid_gid();
    h->op = op;
    h->size = size;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* Reserve ring space (NULL: ring full, counted) and fill the header. BCC
 * refuses map calls inside macros, hence functions. */
/* Count a loss of this cgroup (records: 1 = ring full, 0 = syscall map full). */
static __always_inline void lose(u64 cg, int records)
{
    struct vigil_lost *l = lost.lookup(&cg);
    if (!l) {
        struct vigil_lost none = {};
        lost.update(&cg, &none);
        l = lost.lookup(&cg);
        if (!l)
            return;
    }
    if (records)
        __sync_fetch_and_add(&l->records, 1);
    else
        __sync_fetch_and_add(&l->syscalls, 1);
}

static __always_inline void *reserve(u32 size, u16 op, u64 pid_tgid, u64 cg)
{
    struct vigil_hdr *h = events.ringbuf_reserve(size);
    if (!h) {
        count(VIGIL_CNT_DROPPED);
        lose(cg, 1);
        return NULL;
    }
    fill_hdr(h, op, size, pid_tgid, cg);
    return h;
}

/* reserve() for a behaviour seen() just called new: on a full ring its dedup
 * key is forgotten too, or every later occurrence would be suppressed and the
 * behaviour never reported at all. */
static __always_inline void *reserve_new(u32 size, u16 op, u64 pid_tgid, u64 cg, u64 hash)
{
    void *r = reserve(size, op, pid_tgid, cg);
#if DEDUP
    if (!r) {
        struct vigil_dedup_key k = {.cgroup_id = cg, .hash = hash};
        dedup.delete(&k);
    }
#endif
    return r;
}

static __always_inline void submit(void *rec)
{
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    count(VIGIL_CNT_SUBMITTED);
}

/* ---------------------------------------------------------------- processes */

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 child = args->child_pid, parent = args->parent_pid;
    if (child == parent)
        return 0;
    /* A new thread also fires this; only thread-group leaders matter, and
     * for those the tid equals the tgid. Threads are filtered by user space
     * reading hdr.pid == hdr.tid at exec. */
    parents.update(&child, &parent);
    return 0;
}

#if TRACE_EXEC
static __always_inline int stash_argv(const char *const *argv)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (is_self(pid_tgid))
        return 0;
    u32 zero = 0, tid = (u32)pid_tgid;
    struct exec_args *a = exec_zero.lookup(&zero);
    if (!a)
        return 0;
    a->argc = 0;
#pragma unroll
    for (int i = 0; i < VIGIL_ARGC; i++) {
        const char *p = NULL;
        bpf_probe_read_user(&p, sizeof(p), &argv[i]);
        if (!p)
            break;
        if (bpf_probe_read_user_str(a->argv[i], VIGIL_ARG_LEN, p) < 0)
            break;
        a->argc = i + 1;
    }
    pending_argv.update(&tid, a);
    return 0;
}


TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (is_self(pid_tgid))
        return 0;
    u32 zero = 0, tid = args->old_pid, pid = pid_tgid >> 32;
    struct scratch *s = scratch_map.lookup(&zero);
    if (!s)
        return 0;
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    int n = bpf_probe_read_kernel_str(s->buf, sizeof(s->buf), (void *)args + loc);
    if (n < 0)
        n = 0;
    struct exec_args *a = pending_argv.lookup(&tid);
    u64 h = hash_bytes(mix(FNV_OFFSET, VIGIL_OP_EXEC), s->buf, n, VIGIL_PATH_LEN);
    if (a) {
#pragma unroll
        for (int i = 0; i < VIGIL_ARGC; i++)
            if (i < a->argc)
                h = hash_bytes(h, a->argv[i], VIGIL_ARG_LEN, VIGIL_ARG_LEN);
    }
    u64 cg = bpf_get_current_cgroup_id();
    if (seen(cg, h)) {
        if (a)
            pending_argv.delete(&tid);
        return 0;
    }
    struct vigil_exec *r = reserve_new(sizeof(struct vigil_exec), VIGIL_OP_EXEC, pid_tgid, cg, h);
    if (!r)
        return 0;
    u32 *ppid = parents.lookup(&pid);
    r->ppid = ppid ? *ppid : 0;
    bpf_probe_read_kernel(r->path, sizeof(r->path), s->buf);
    if (a) {
        r->argc = a->argc;
        bpf_probe_read_kernel(r->argv, sizeof(r->argv), a->argv);
        pending_argv.delete(&tid);
    } else {
        r->argc = 0;
    }
    submit(r);
    return 0;
}

/* exit_group(code); called from the raw sys_enter dispatcher. */
static __always_inline int on_exit_group(u64 pid_tgid, s32 code)
{
    u32 pid = pid_tgid >> 32;
    exit_codes.update(&pid, &code);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 pid = pid_tgid >> 32;
    if (is_self(pid_tgid) || pid != (u32)pid_tgid)
        return 0; /* only the thread-group leader reports the process exit */
    s32 code = -1;
    s32 *c = exit_codes.lookup(&pid);
    if (c) {
        code = *c;
        exit_codes.delete(&pid);
    }
    parents.delete(&pid);
    u64 cg = bpf_get_current_cgroup_id();
    char comm[16];
    bpf_get_current_comm(&comm, sizeof(comm));
    u64 h = hash_bytes(mix(mix(FNV_OFFSET, VIGIL_OP_EXIT), (u32)code), comm, 16, 16);
    if (seen(cg, h))
        return 0;
    struct vigil_exit *r = reserve_new(sizeof(struct vigil_exit), VIGIL_OP_EXIT, pid_tgid, cg, h);
    if (!r)
        return 0;
    r->code = code;
    r->_pad = 0;
    submit(r);
    return 0;
}
#endif

/* -------------------------------------------------------------------- files */

#if TRACE_OPEN
/* Called from the raw sys_enter dispatcher (openat is hot: no classic
 * tracepoint, whose argument copy would run on every call). */
static __always_inline int on_openat(u64 pid_tgid, u64 cg, const char *filename, s32 flags)
{
    u32 zero = 0;
    struct scratch *s = scratch_map.lookup(&zero);
    if (!s)
        return 0;
    int n = bpf_probe_read_user_str(s->buf, sizeof(s->buf), filename);
    if (n <= 0)
        return 0;
    u64 h = hash_bytes(mix(mix(FNV_OFFSET, VIGIL_OP_OPEN), (u32)flags), s->buf, n, VIGIL_PATH_LEN);
    if (seen(cg, h))
        return 0;
    struct vigil_open *r = reserve_new(sizeof(struct vigil_open), VIGIL_OP_OPEN, pid_tgid, cg, h);
    if (!r)
        return 0;
    r->flags = flags;
    r->_pad = 0;
    bpf_probe_read_kernel(r->path, sizeof(r->path), s->buf);
    submit(r);
    return 0;
}
#endif

/* ------------------------------------------------------------------ network */

struct sockaddr_any {
    u16 family;
    u16 port;        /* network byte order */
    u32 v4;          /* AF_INET address; for AF_INET6 this is sin6_flowinfo */
    u8 v6[16];       /* AF_INET6 address */
};

#if TRACE_CONNECT || TRACE_DNS
/* connect(fd, uservaddr); called from the raw sys_enter dispatcher. */
static __always_inline int on_connect(u64 pid_tgid, u64 cg, int fd, const void *uservaddr)
{
    struct sockaddr_any sa = {};
    if (bpf_probe_read_user(&sa, sizeof(sa), uservaddr) < 0 && bpf_probe_read_user(&sa, 8, uservaddr) < 0)
        return 0;
    u16 port = bpf_ntohs(sa.port);
    /* Remember fds connected to :53 for write()/send() without an address.
     * close() is deliberately not traced (it is hot): a reused fd is dropped
     * here when it connects elsewhere, and a stale entry at worst sends a
     * non-DNS payload that user space rejects (counted as not_dns). */
    u64 fdkey = (pid_tgid & 0xFFFFFFFF00000000ULL) | (u32)fd;
    if ((sa.family == AF_INET_ || sa.family == AF_INET6_) && port == DNS_PORT) {
        u8 one = 1;
        dns_fds.update(&fdkey, &one);
    } else {
        dns_fds.delete(&fdkey);
    }
#if TRACE_CONNECT
    u64 h = mix(mix(mix(FNV_OFFSET, VIGIL_OP_CONNECT), sa.family), port);
    if (sa.family == AF_INET_)
        h = mix(h, sa.v4);
    else if (sa.family == AF_INET6_)
        h = mix(mix(h, *(u64 *)&sa.v6[0]), *(u64 *)&sa.v6[8]);
    if (seen(cg, h))
        return 0;
    struct vigil_connect *r = reserve_new(sizeof(struct vigil_connect), VIGIL_OP_CONNECT, pid_tgid, cg, h);
    if (!r)
        return 0;
    r->family = sa.family;
    r->port = (sa.family == AF_INET_ || sa.family == AF_INET6_) ? port : 0;
    r->_pad = 0;
    __builtin_memset(r->addr, 0, sizeof(r->addr));
    if (sa.family == AF_INET_)
        __builtin_memcpy(r->addr, &sa.v4, 4);
    else if (sa.family == AF_INET6_)
        __builtin_memcpy(r->addr, sa.v6, 16);
    submit(r);
#endif
    return 0;
}
#endif

#if TRACE_DNS
/* Report a DNS query payload; the question is parsed in user space. The
 * 2-byte transaction id is left out of the dedup hash. */
static __always_inline int dns_payload(const void *buf, u64 len, u16 port)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 zero = 0;
    struct scratch *s = scratch_map.lookup(&zero);
    if (!s || !buf || len < 12)
        return 0;
    u32 n = len > VIGIL_DNS_LEN ? VIGIL_DNS_LEN : len;
    asm volatile("" : "+r"(n));
    if (n > VIGIL_DNS_LEN)
        return 0;
    if (bpf_probe_read_user(s->buf, n, buf) < 0)
        return 0;
    u64 cg = bpf_get_current_cgroup_id();
    u16 id = *(u16 *)s->buf;
    *(u16 *)s->buf = 0;
    u64 h = hash_bytes(mix(FNV_OFFSET, VIGIL_OP_DNS), s->buf, n, VIGIL_DNS_LEN);
    *(u16 *)s->buf = id;
    if (seen(cg, h))
        return 0;
    struct vigil_dns *r = reserve_new(sizeof(struct vigil_dns), VIGIL_OP_DNS, pid_tgid, cg, h);
    if (!r)
        return 0;
    r->len = n;
    r->port = port;
    r->_pad = 0;
    bpf_probe_read_kernel(r->payload, sizeof(r->payload), s->buf);
    submit(r);
    return 0;
}

/* Port of a user sockaddr if it is an inet one, else 0. */
static __always_inline u16 dest_port(const void *addr)
{
    struct sockaddr_any sa = {};
    if (!addr || bpf_probe_read_user(&sa, 4, addr) < 0)
        return 0;
    if (sa.family != AF_INET_ && sa.family != AF_INET6_)
        return 0;
    return bpf_ntohs(sa.port);
}

static __always_inline int fd_is_dns(u64 pid_tgid, int fd)
{
    u64 key = (pid_tgid & 0xFFFFFFFF00000000ULL) | (u32)fd;
    return dns_fds.lookup(&key) != NULL;
}

/* sendto(fd, buff, len, flags, addr); called from the raw sys_enter dispatcher. */
static __always_inline int on_sendto(u64 pid_tgid, int fd, const void *buff, u64 len, const void *addr)
{
    u16 port = dest_port(addr);
    if (port == DNS_PORT || (!addr && fd_is_dns(pid_tgid, fd)))
        return dns_payload(buff, len, DNS_PORT);
    return 0;
}

struct iovec_user {
    void *iov_base;
    u64 iov_len;
};

struct msghdr_user {
    void *name;
    int namelen;
    int _pad;
    struct iovec_user *iov;
    u64 iovlen;
};

/* sendmsg(fd, msg) and sendmmsg(fd, mmsg): struct mmsghdr starts with a
 * msghdr, so only the first message of a sendmmsg is read. Called from the
 * raw sys_enter dispatcher. */
static __always_inline int dns_msghdr(u64 pid_tgid, const void *msg, int fd)
{
    struct msghdr_user m = {};
    if (bpf_probe_read_user(&m, sizeof(m), msg) < 0)
        return 0;
    u16 port = dest_port(m.name);
    if (port != DNS_PORT && !(m.name == NULL && fd_is_dns(pid_tgid, fd)))
        return 0;
    if (m.iovlen == 0 || !m.iov)
        return 0;
    struct iovec_user iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), m.iov) < 0)
        return 0;
    return dns_payload(iov.iov_base, iov.iov_len, DNS_PORT);
}


/* write() on an fd connected to :53; called from the raw sys_enter dispatcher. */
static __always_inline int on_write(u64 pid_tgid, int fd, const void *buf, u64 count)
{
    if (!fd_is_dns(pid_tgid, fd))
        return 0;
    return dns_payload(buf, count, DNS_PORT);
}

#endif

/* ----------------------------------------------------------------- syscalls */

#if TRACE_SYSCALLS
/* Per-CPU copy of the bitmap of the last (cgroup, pid) seen on this CPU: a
 * syscall already recorded for it returns after an (inlined) array lookup,
 * without touching the hash map. After user space drains the hash entry a
 * cached bit can skip re-recording a syscall of that process; that syscall
 * was already reported for the container, which is all a profile needs. */
struct syscall_cache {
    struct vigil_syscall_key key;
    struct vigil_syscall_bits bits;
};
BPF_PERCPU_ARRAY(syscall_last, struct syscall_cache, 1);

/* A raw tracepoint: the classic raw_syscalls:sys_enter tracepoint copies the
 * syscall arguments into a trace buffer before the program runs, on every
 * syscall of every process; the raw one hands over (regs, id) as they are. */
static __always_inline int record_syscall(u64 pid_tgid, u64 cg, long id)
{
    if (id < 0 || id >= VIGIL_SYSCALL_WORDS * 64)
        return 0;
    u64 bit = 1ULL << (id & 63);
    u32 w = (id >> 6) & (VIGIL_SYSCALL_WORDS - 1);
    u32 zero = 0;
    struct syscall_cache *c = syscall_last.lookup(&zero);
    if (!c)
        return 0;
    u32 pid = pid_tgid >> 32;
    if (c->key.cgroup_id == cg && c->key.pid == pid) {
        if (c->bits.w[w] & bit)
            return 0;
    } else {
        c->key.cgroup_id = cg;
        c->key.pid = pid;
        __builtin_memset(&c->bits, 0, sizeof(c->bits));
    }
    c->bits.w[w] |= bit;
    struct vigil_syscall_key k = {.cgroup_id = cg, .pid = pid};
    struct vigil_syscall_bits *b = syscalls.lookup(&k);
    if (!b) {
        struct vigil_syscall_bits zero_bits = {};
        syscalls.update(&k, &zero_bits);
        b = syscalls.lookup(&k);
        if (!b) {  /* map full until the next drain: counted, and tried again next time */
            c->bits.w[w] &= ~bit;
            count(VIGIL_CNT_SYSCALLS_LOST);
            lose(cg, 0);
            return 0;
        }
    }
    if (!(b->w[w] & bit))
        __sync_fetch_and_or(&b->w[w], bit);
    return 0;
}
#endif


/* x86_64 syscall numbers of the syscalls handled in the dispatcher. */
#define NR_WRITE 1
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_SENDMSG 46
#define NR_EXECVE 59
#define NR_EXIT_GROUP 231
#define NR_OPENAT 257
#define NR_SENDMMSG 307
#define NR_EXECVEAT 322

/* Syscall arguments as they sit in x86_64's pt_regs (args: di, si, dx, r10,
 * r8, r9): r10, r9, r8, ax, cx, dx, si, di are adjacent there, so one read
 * fetches the five arguments the handlers use. */
struct regs_args {
    u64 r10, r9, r8, ax, cx, dx, si, di;
};
_Static_assert(offsetof(struct pt_regs, di) == offsetof(struct pt_regs, r10) + 56, "pt_regs: r10 .. di adjacent");

/* One raw tracepoint for every syscall entry: the syscall bitmap and every
 * syscall the collector traces (openat, write, execve[at], exit_group,
 * connect, sendto, sendmsg, sendmmsg). Attaching a program to any classic
 * syscalls:sys_enter_* tracepoint makes the kernel run its per-syscall
 * dispatcher on EVERY syscall of every process (measured: ~65 ns each here),
 * and classic tracepoints copy their arguments into a trace buffer first; the
 * raw one hands over (regs, id) as they are, and arguments are read from
 * pt_regs. Syscalls the collector does not trace return after an id test.
 * The cgroup id is fetched once and shared by the handlers. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (is_self(pid_tgid))
        return 0;
    long id = (long)ctx->args[1];
#if TRACE_SYSCALLS
    u64 cg = bpf_get_current_cgroup_id();
    record_syscall(pid_tgid, cg, id);
#endif
    switch (id) {
    case NR_OPENAT:
    case NR_WRITE:
    case NR_EXECVE:
    case NR_EXECVEAT:
    case NR_EXIT_GROUP:
    case NR_CONNECT:
    case NR_SENDTO:
    case NR_SENDMSG:
    case NR_SENDMMSG:
        break;
    default:
        return 0;
    }
#if !TRACE_SYSCALLS
    u64 cg = bpf_get_current_cgroup_id();
#endif
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    struct regs_args a = {};
    /* openat/write/exec/exit/connect/sendmsg use di, si, dx; sendto also r8. */
    if (id == NR_SENDTO)
        bpf_probe_read_kernel(&a, sizeof(a), &regs->r10);
    else
        bpf_probe_read_kernel(&a.dx, 3 * sizeof(u64), &regs->dx);
#if TRACE_OPEN
    if (id == NR_OPENAT)
        return on_openat(pid_tgid, cg, (const char *)a.si, (s32)a.dx);
#endif
#if TRACE_EXEC
    if (id == NR_EXECVE)
        return stash_argv((const char *const *)a.si);
    if (id == NR_EXECVEAT)
        return stash_argv((const char *const *)a.dx);
    if (id == NR_EXIT_GROUP)
        return on_exit_group(pid_tgid, (s32)a.di);
#endif
#if TRACE_CONNECT || TRACE_DNS
    if (id == NR_CONNECT)
        return on_connect(pid_tgid, cg, (int)a.di, (const void *)a.si);
#endif
#if TRACE_DNS
    if (id == NR_WRITE)
        return on_write(pid_tgid, (int)a.di, (const void *)a.si, a.dx);
    if (id == NR_SENDTO)
        return on_sendto(pid_tgid, (int)a.di, (const void *)a.si, a.dx, (const void *)a.r8);
    if (id == NR_SENDMSG || id == NR_SENDMMSG)
        return dns_msghdr(pid_tgid, (const void *)a.si, (int)a.di);
#endif
    return 0;
}

/* ------------------------------------------------------------------ cgroups */

static __always_inline int cgroup_event(u16 op, u64 id, int root, int level, const void *path)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct vigil_cgroup *r = reserve(sizeof(struct vigil_cgroup), op, pid_tgid, bpf_get_current_cgroup_id());
    if (!r)
        return 0;
    r->id = id;
    r->root = root;
    r->level = level;
    bpf_probe_read_kernel_str(r->path, sizeof(r->path), path);
    submit(r);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    unsigned short loc = args->data_loc_path & 0xFFFF;
    return cgroup_event(VIGIL_OP_CGROUP_MKDIR, args->id, args->root, args->level, (void *)args + loc);
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    unsigned short loc = args->data_loc_path & 0xFFFF;
    return cgroup_event(VIGIL_OP_CGROUP_RMDIR, args->id, args->root, args->level, (void *)args + loc);
}
