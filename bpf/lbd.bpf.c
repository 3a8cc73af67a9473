// SPDX-License-Identifier: GPL-2.0
/*
 * lbd.bpf.c: one table-driven syscall probe (compiled and loaded by lbd/probe.py with bcc).
 *
 *   raw tracepoint sys_enter  filter -> capture the arguments by kind into the thread's pending record
 *   raw tracepoint sys_exit   complete it (return value, latency, output arguments) -> ring buffer
 *   sched:sched_process_*     process tree records (fork: parent, exec: path, exit) and map upkeep
 *
 * Per-syscall cost is what matters, so the syscall programs are raw tracepoints (no perf record
 * is built for them, unlike classic tracepoints: about 90 ns less per syscall here) and:
 *   - a syscall that is not selected costs one descriptor lookup at enter, and at exit the read
 *     of its number plus that lookup;
 *   - a filtered one also the settings lookup and the filter checks; nothing is copied, reserved
 *     or counted twice for either;
 *   - a selected one finds its thread's record in task-local storage (no hash), takes comm, uid,
 *     gid and ppid from the copies cached there (refreshed every LBD_TASK_REFRESH_NS, after exec
 *     and after a syscall that may change them: one helper call each instead of four per
 *     syscall), copies its arguments, and writes one ring record at exit (no wakeup unless this
 *     CPU has written wake_bytes since its last one, see ring__emit()).
 *
 * One record per syscall, written at exit, whatever the exit looks like:
 *   - exit with its armed enter: the normal case;
 *   - exit with another number: rt_sigreturn (-1) and a successful execveat (59), see
 *     exit__renumbered();
 *   - exit without an enter (a new thread or process returning from clone/fork, capture started
 *     mid-call): LBD_F_NOENTER, no arguments;
 *   - no exit at all (exit, exit_group): written at enter, LBD_F_NORETURN.
 * With emit_enter, an enter record (dir '>') precedes each, except that noreturn syscalls have
 * only it.  A thread's record lives in task-local storage, which the kernel frees with the task
 * and which follows the thread when a non-leader thread execs and takes the leader's pid.
 *
 * Kernel memory is read only through tracepoint arguments, bpf helpers, and struct pt_regs at the
 * syscall tracepoints, whose x86_64 layout is the ptrace register ABI (uapi asm/ptrace.h,
 * user_regs_struct), unchanged since x86_64 exists.  Never other kernel struct offsets: the kernel
 * headers bcc compiles with may be from another kernel version (MACHINE.md).
 *
 * Compile-time parameters (-D from lbd/probe.py): LBD_RING_PAGES, LBD_MAX_THREADS.
 */
#include <uapi/linux/ptrace.h>
#define LBD_BPF 1
#include "lbd_record.h"

#ifndef LBD_RING_PAGES
#define LBD_RING_PAGES 2048
#endif
#ifndef LBD_MAX_THREADS
#define LBD_MAX_THREADS 65536
#endif

#define PAYLOAD_MASK   (LBD_PAYLOAD_MAX - 1)
#define STR_MASK       (LBD_PAYLOAD_MAX / 2 - 1)     /* str_max + 2 <= 2048 (config limit) */
#define SOCKADDR_MAX   128                            /* sizeof(struct sockaddr_storage) */
#define ARGV_LIMIT     64
#define NR_EXECVE      59
#define NR_EXECVEAT    322
#define NR_RT_SIGRETURN 15

/* struct pt_regs (x86_64): r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ... */
#define PT_REGS_R10_OFF     56
#define PT_REGS_ORIG_AX_OFF 120
struct x64_args { u64 r10, r9, r8, ax, cx, dx, si, di; };   /* pt_regs from r10 to di */

/* How long a thread's cached comm / uid / gid / ppid may be reused before it is read again.  Exec,
 * prctl and the set*id calls refresh it at once; this bounds what they cannot see (a comm written
 * through /proc/<pid>/task/<tid>/comm by another process). */
#define LBD_TASK_REFRESH_NS 10000000ull
/* How many times a thread's filter verdict is reused before it is computed again (a comm filter's
 * verdict follows the comm: exec and prctl clear it at once; this bounds the rest). */
#define LBD_VERDICT_REUSE 256

/* x &= mask, in a way clang cannot fold away: the verifier must see the bound on the register it
 * checks (clang otherwise turns a min() followed by a mask into code whose bound it loses). */
#define BOUND(x, mask) asm volatile("%0 &= " #mask : "+r"(x))

/*
 * A thread's record under construction, kept from enter to exit.  The payload area is twice the
 * largest payload so that every write at (used & PAYLOAD_MASK) of at most LBD_PAYLOAD_MAX / 2 bytes
 * is in bounds for the verifier; what is emitted is clamped to LBD_PAYLOAD_MAX.
 */
struct pending {
    struct lbd_hdr hdr;
    __u8 payload[2 * LBD_PAYLOAD_MAX];
    __u32 used;         /* payload bytes written */
    __u32 armed;        /* 1: enter captured, waiting for the exit of hdr.nr */
    __u32 generation;   /* settings.generation when armed */
    __u8 selected;      /* descs[hdr.nr].enabled when armed */
};

/*
 * A thread's small context, created at its first selected syscall (captured or filtered): its
 * identity as last read (comm, uid, gid, ppid: one helper call each, so cached) and the filters'
 * verdict on it (pid and comm lists: hash lookups, so cached).  The large record (struct pending)
 * is only created for threads that are captured.
 */
struct thread {
    __u64 task_ts;      /* when the identity was read */
    char comm[LBD_COMM_LEN];
    __u32 uid, gid, ppid;
    __u8 task_valid;    /* 1: the identity may be used (until LBD_TASK_REFRESH_NS after task_ts) */
    __u8 verdict;       /* 0: none; 1: keep; else 2 + the LBD_C_F_* counter of the reason to drop */
    __u16 verdict_uses; /* times reused: recomputed after LBD_VERDICT_REUSE */
    __u32 verdict_gen;  /* settings.filter_generation it was computed under */
};

struct comm_key {
    char comm[LBD_COMM_LEN];
};

BPF_RINGBUF_OUTPUT(events, LBD_RING_PAGES);
BPF_ARRAY(descs, struct lbd_desc, LBD_MAX_SYSCALLS);
BPF_ARRAY(settings, struct lbd_settings, 1);
BPF_PERCPU_ARRAY(counters, u64, LBD_C_COUNT);
BPF_PERCPU_ARRAY(wake_acc, u64, 1);          /* bytes written since this CPU's last wakeup */
BPF_HASH(own_tids, u32, u8, 64);             /* filter_own by thread (the Falco plugin) */
BPF_HASH(filter_pids, u32, u8, 64);
BPF_HASH(only_pids, u32, u8, 64);
BPF_HASH(filter_comms, struct comm_key, u8, 16);
BPF_HASH(only_comms, struct comm_key, u8, 16);
BPF_TASK_STORAGE(threads, struct thread);    /* the thread's context: at its first selected syscall */
BPF_TASK_STORAGE(pending, struct pending);   /* the thread's record: created at its first capture */
BPF_PERCPU_ARRAY(sched_scratch, struct pending, 1);  /* where process-tree records are built */
BPF_F_TABLE("hash", u32, u32, ppids, LBD_MAX_THREADS, BPF_F_NO_PREALLOC);  /* pid -> parent tgid */

static __always_inline void counter__add(u32 idx, u64 n)
{
    u64 *c = counters.lookup(&idx);
    if (c)
        *c += n;
}

static __always_inline struct lbd_settings *settings__get(void)
{
    u32 zero_key = 0;
    return settings.lookup(&zero_key);
}

/* Filters that depend on the task only.  Returns the counter of the reason to drop, or -1. */
static __always_inline int filter__task(struct lbd_settings *s, u32 tgid, u32 tid)
{
    if (s->filter_own_tgid && tgid == s->filter_own_tgid)
        return LBD_C_F_OWN;
    if (s->own_tids_on && own_tids.lookup(&tid))
        return LBD_C_F_OWN;
    if (s->filter_falco_tgid && tgid == s->filter_falco_tgid)
        return LBD_C_F_FALCO;
    if (s->filter_pids_on && filter_pids.lookup(&tgid))
        return LBD_C_F_PID;
    if (s->only_pids_on && !only_pids.lookup(&tgid))
        return LBD_C_F_ONLY;
    if (s->filter_comms_on || s->only_comms_on) {
        struct comm_key comm = {};
        bpf_get_current_comm(comm.comm, sizeof(comm.comm));
        if (s->filter_comms_on && filter_comms.lookup(&comm))
            return LBD_C_F_COMM;
        if (s->only_comms_on && !only_comms.lookup(&comm))
            return LBD_C_F_ONLY;
    }
    return -1;
}

/* filter__task(), remembered in the thread's context while the filters and its comm stay. */
static __always_inline int filter__thread(struct lbd_settings *s, struct thread *t, u32 tgid, u32 tid)
{
    if (!t)
        return filter__task(s, tgid, tid);
    if (t->verdict && t->verdict_gen == s->filter_generation && t->verdict_uses < LBD_VERDICT_REUSE) {
        t->verdict_uses++;
        return (int)t->verdict - 2;
    }
    int why = filter__task(s, tgid, tid);
    t->verdict = why + 2;
    t->verdict_gen = s->filter_generation;
    t->verdict_uses = 0;
    return why;
}

static __always_inline struct thread *thread__get(int create)
{
    return threads.task_storage_get(bpf_get_current_task_btf(), 0,
                                    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* The thread's comm or credentials may have changed: read them anew, and the filters' verdict. */
static __always_inline void thread__invalidate(void)
{
    struct thread *t = thread__get(0);
    if (t) {
        t->task_valid = 0;
        t->verdict = 0;
    }
}

/* The current thread's record; created (zeroed) on first use when create is set. */
static __always_inline struct pending *pending__get(int create)
{
    return pending.task_storage_get(bpf_get_current_task_btf(), 0,
                                    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Fill the task part of the header with helpers (process-tree records: rare, other tasks'). */
static __always_inline void hdr__task(struct lbd_hdr *h, u64 pid_tgid)
{
    u32 tgid = pid_tgid >> 32;
    u64 ugid = bpf_get_current_uid_gid();
    h->version = LBD_RECORD_VERSION;
    h->pid = tgid;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)ugid;
    h->gid = ugid >> 32;
    u32 *pp = ppids.lookup(&tgid);
    h->ppid = pp ? *pp : 0;
    bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Fill the task part of a syscall record from the thread's cached identity, reading it anew when
 * it is missing, older than LBD_TASK_REFRESH_NS or invalidated. */
static __always_inline void hdr__thread(struct lbd_hdr *h, struct thread *t, u64 pid_tgid, u64 now)
{
    u32 tgid = pid_tgid >> 32;
    if (!t->task_valid || now - t->task_ts > LBD_TASK_REFRESH_NS) {
        u64 ugid = bpf_get_current_uid_gid();
        t->uid = (u32)ugid;
        t->gid = ugid >> 32;
        u32 *pp = ppids.lookup(&tgid);
        t->ppid = pp ? *pp : 0;
        bpf_get_current_comm(t->comm, sizeof(t->comm));
        t->task_ts = now;
        t->task_valid = 1;
    }
    h->version = LBD_RECORD_VERSION;
    h->pid = tgid;
    h->tid = (u32)pid_tgid;
    h->uid = t->uid;
    h->gid = t->gid;
    h->ppid = t->ppid;
    __builtin_memcpy(h->comm, t->comm, LBD_COMM_LEN);
}

/* ---- argument readers: each stores one argument's payload at p->used ------------------------ */

static __always_inline void arg__done(struct pending *p, int i, u32 len, int trunc, int fault)
{
    u32 off = p->used;
    if (off + len > LBD_PAYLOAD_MAX) {          /* the record is full: keep what fits */
        len = off < LBD_PAYLOAD_MAX ? LBD_PAYLOAD_MAX - off : 0;
        trunc = 1;
    }
    p->hdr.slot[i].off = sizeof(struct lbd_hdr) + off;
    p->hdr.slot[i].len = len;
    p->used = off + len;
    if (trunc) {
        p->hdr.flags |= 1u << (LBD_F_TRUNC_SHIFT + i);
        counter__add(LBD_C_TRUNCATED, 1);
    }
    if (fault) {
        p->hdr.flags |= 1u << (LBD_F_FAULT_SHIFT + i);
        counter__add(LBD_C_READ_FAULT, 1);
    }
}

/* A NUL-terminated string of at most str_max bytes (one more is read to tell truncation). */
static __always_inline void arg__str(struct pending *p, int i, const void *src, u32 str_max)
{
    if (p->used >= LBD_PAYLOAD_MAX) {             /* full: (used & mask) would be 0, over arg 0 */
        arg__done(p, i, 0, 1, 0);
        return;
    }
    u32 off = p->used & PAYLOAD_MASK;
    u32 n = (str_max + 2) & STR_MASK;
    long r = bpf_probe_read_user_str(&p->payload[off], n, src);
    if (r < 0) {
        arg__done(p, i, 0, 0, 1);
        return;
    }
    u32 len = r > 0 ? r - 1 : 0;                  /* without the NUL */
    int trunc = len > str_max;
    arg__done(p, i, trunc ? str_max : len, trunc, 0);
}

/* Raw bytes: min(want, limit) of them. */
static __always_inline void arg__bytes(struct pending *p, int i, const void *src, u64 want, u32 limit)
{
    if (p->used >= LBD_PAYLOAD_MAX) {             /* full: see arg__str() */
        arg__done(p, i, 0, want != 0, 0);
        return;
    }
    u32 off = p->used & PAYLOAD_MASK;
    u32 n = want < limit ? want : limit;
    BOUND(n, 0x7ff);                              /* STR_MASK */
    if (n && bpf_probe_read_user(&p->payload[off], n, src) < 0) {
        arg__done(p, i, 0, 0, 1);
        return;
    }
    arg__done(p, i, n, want > n, 0);
}

/* argv / envp: the strings one after another, each with its NUL. */
static __always_inline void arg__strarr(struct pending *p, int i, const void *src, struct lbd_settings *s)
{
    u32 start = p->used;
    int trunc = 0, fault = 0;
    u32 max = s->argv_max;
    for (int k = 0; k < ARGV_LIMIT; k++) {
        const char *str = 0;
        if (bpf_probe_read_user(&str, sizeof(str), (const char *const *)src + k) < 0) {
            fault = 1;
            break;
        }
        if (!str)
            break;
        if (k >= max || p->used >= LBD_PAYLOAD_MAX - 1) {
            trunc = 1;
            break;
        }
        u32 off = p->used & PAYLOAD_MASK;
        u32 n = (s->str_max + 2) & STR_MASK;      /* one byte more than kept: tells a cut */
        long r = bpf_probe_read_user_str(&p->payload[off], n, str);
        if (r <= 0) {
            fault = 1;
            break;
        }
        u32 len = r;                              /* with the NUL */
        if (len > s->str_max + 1) {               /* cut: keep str_max bytes, end them with a NUL */
            len = s->str_max + 1;
            p->payload[(off + len - 1) & (2 * LBD_PAYLOAD_MAX - 1)] = 0;
            trunc = 1;
        }
        p->used += len;
    }
    u32 len = p->used - start;
    p->used = start;                              /* arg__done() accounts for it */
    arg__done(p, i, len, trunc, fault);
}

static __always_inline u64 len_arg(struct lbd_hdr *h, u8 idx)
{
    return idx < LBD_MAX_ARGS ? h->args[idx & 7] : 0;
}

/* Capture argument i at enter according to its kind. */
static __always_inline void arg__enter(struct pending *p, struct lbd_desc *d, int i, struct lbd_settings *s)
{
    u8 kind = d->kind[i];
    u64 v = p->hdr.args[i];
    if (kind < LBD_K_STR || kind >= LBD_K_OUT_BUF || !v)
        return;                                   /* values need no copy; outputs wait for exit */
    const void *ptr = (const void *)v;
    switch (kind) {
    case LBD_K_STR:
    case LBD_K_PATH:
        arg__str(p, i, ptr, s->str_max);
        break;
    case LBD_K_SOCKADDR:
        arg__bytes(p, i, ptr, (u32)len_arg(&p->hdr, d->aux[i]), SOCKADDR_MAX);
        break;
    case LBD_K_BUF:
        arg__bytes(p, i, ptr, len_arg(&p->hdr, d->aux[i]), s->buf_max);
        break;
    case LBD_K_STRARR:
        arg__strarr(p, i, ptr, s);
        break;
    }
}

/* Read output argument i when the syscall returns. */
static __always_inline void arg__exit(struct pending *p, struct lbd_desc *d, int i, struct lbd_settings *s)
{
    u8 kind = d->kind[i];
    u64 v = p->hdr.args[i];
    if (kind < LBD_K_OUT_BUF || !v || p->hdr.res < 0)
        return;
    const void *ptr = (const void *)v;
    switch (kind) {
    case LBD_K_OUT_BUF:
        arg__bytes(p, i, ptr, (u64)p->hdr.res, s->buf_max);
        break;
    case LBD_K_OUT_SOCKADDR: {
        int alen = 0;
        const void *lenp = (const void *)len_arg(&p->hdr, d->aux[i]);
        if (lenp && bpf_probe_read_user(&alen, sizeof(alen), lenp) == 0 && alen > 0)
            arg__bytes(p, i, ptr, (u32)alen, SOCKADDR_MAX);
        else
            arg__done(p, i, 0, 0, lenp != 0);
        break;
    }
    case LBD_K_OUT_FD2:
        arg__bytes(p, i, ptr, 8, 8);
        break;
    case LBD_K_OUT_INT:
        arg__bytes(p, i, ptr, 4, 4);
        break;
    }
}

/* Start a record in p: its header fields except the task's, no payload yet.  clear_args: the
 * argument values too (records that carry no arguments or fill only some). */
static __always_inline void record__begin(struct pending *p, u32 nr, u8 nargs, u32 flags, u64 ts, s64 res,
                                          int clear_args)
{
    p->hdr.nr = nr;
    p->hdr.dir = LBD_DIR_EXIT;
    p->hdr.nargs = nargs;
    p->hdr.flags = flags;
    p->hdr.ts = ts;
    p->hdr.latency = 0;
    p->hdr.res = res;
    p->used = 0;
#pragma unroll
    for (int i = 0; i < LBD_MAX_ARGS; i++) {
        if (clear_args)
            p->hdr.args[i] = 0;
        p->hdr.slot[i].off = 0;
        p->hdr.slot[i].len = 0;
    }
}

/*
 * Wakeups.  Records are written without waking the consumer, which drains on its own short timer;
 * but a fast producer can fill the ring between two timer ticks, so each CPU forces a wakeup once
 * it has written wake_bytes since its last one (user space sets wake_bytes per CPU).  A per-CPU
 * count keeps this free of shared cache lines (bpf_ringbuf_query() would read the ring's).
 */
static __always_inline void ring__emit(struct pending *p, struct lbd_settings *s, u32 counter)
{
    u32 used = p->used;
    if (used > LBD_PAYLOAD_MAX)                   /* arg__done() keeps it so; the verifier needs */
        used = LBD_PAYLOAD_MAX;                   /* the bound it can see, hence the mask below */
    u32 size = sizeof(struct lbd_hdr) + used;
    BOUND(size, 0x1fff);                          /* <= sizeof(struct pending): in bounds */
    p->hdr.size = size;
    u32 zero_key = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u64 *acc = wake_acc.lookup(&zero_key);
    if (acc) {
        *acc += size;
        if (*acc >= s->wake_bytes) {
            *acc = 0;
            flags = BPF_RB_FORCE_WAKEUP;
        }
    }
    if (events.ringbuf_output(&p->hdr, size, flags) == 0)
        counter__add(counter, 1);
    else
        counter__add(LBD_C_DROP_RINGFULL, 1);
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
    counter__add(LBD_C_SEEN, 1);
    u32 nr = ctx->args[1];
    if (nr >= LBD_MAX_SYSCALLS)
        return 0;
    struct lbd_desc *d = descs.lookup(&nr);
    if (!d)
        return 0;
    if (!d->enabled) {                            /* not selected: nothing more than this lookup */
        counter__add(LBD_C_F_SYSCALL, 1);
        return 0;
    }
    struct lbd_settings *s = settings__get();
    if (!s)
        return 0;
    if (s->drop_mode) {
        counter__add(LBD_C_F_DROP_MODE, 1);
        return 0;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct thread *t = thread__get(1);
    int why = filter__thread(s, t, pid_tgid >> 32, (u32)pid_tgid);
    if (why >= 0) {
        counter__add(why, 1);
        return 0;
    }
    struct pending *p = pending__get(1);
    if (!p || !t)
        return 0;
    u64 now = bpf_ktime_get_ns();
    hdr__thread(&p->hdr, t, pid_tgid, now);
    record__begin(p, nr, d->nargs, 0, now, 0, d->nargs == 0);
    if (d->nargs) {                               /* getpid and friends: no register read */
        struct x64_args ra = {};
        bpf_probe_read_kernel(&ra, sizeof(ra), (void *)ctx->args[0] + PT_REGS_R10_OFF);
        p->hdr.args[0] = ra.di;
        p->hdr.args[1] = ra.si;
        p->hdr.args[2] = ra.dx;
        p->hdr.args[3] = ra.r10;
        p->hdr.args[4] = ra.r8;
        p->hdr.args[5] = ra.r9;
    }
#pragma unroll
    for (int i = 0; i < LBD_MAX_ARGS; i++)
        arg__enter(p, d, i, s);

    if (d->flags & LBD_D_NORETURN) {              /* exit, exit_group: no sys_exit will come */
        p->hdr.flags |= LBD_F_NORETURN;
        p->hdr.dir = s->emit_enter ? LBD_DIR_ENTER : LBD_DIR_EXIT;
        p->armed = 0;
        ring__emit(p, s, LBD_C_EMITTED);
        return 0;
    }
    if (s->emit_enter) {
        p->hdr.dir = LBD_DIR_ENTER;
        ring__emit(p, s, LBD_C_EMITTED);
        p->hdr.dir = LBD_DIR_EXIT;
    }
    p->generation = s->generation;
    p->selected = d->enabled;
    p->armed = 1;
    return 0;
}

/* Finish an armed record at its exit: drop_failed, return value, latency, outputs; emit it. */
static __always_inline int exit__complete(struct pending *p, struct lbd_desc *d, struct lbd_settings *s,
                                          long ret, int is_status)
{
    p->armed = 0;
    if (is_status && s->drop_failed && ret < 0) {
        counter__add(LBD_C_F_FAILED, 1);
        return 0;
    }
    p->hdr.res = ret;
    p->hdr.latency = bpf_ktime_get_ns() - p->hdr.ts;
    u32 nr = p->hdr.nr;
    if ((nr == NR_EXECVE || nr == NR_EXECVEAT) && ret == 0) {
        p->hdr.flags |= LBD_F_NEWIMAGE;           /* the new program: show its name */
        bpf_get_current_comm(p->hdr.comm, sizeof(p->hdr.comm));
    }
    if (d->flags & LBD_D_EXIT_KINDS) {
#pragma unroll
        for (int i = 0; i < LBD_MAX_ARGS; i++)
            arg__exit(p, d, i, s);
    }
    ring__emit(p, s, LBD_C_EMITTED);
    return 0;
}

/*
 * Exits that report another number than their enter.  rt_sigreturn restores the registers of the
 * interrupted context, orig_ax included, and restore_sigcontext() sets that to -1, so its exit
 * reports -1; a tracer cancelling a syscall does the same.  A successful execveat() returns in the
 * new image as execve (59) on this kernel.  Syscalls of a thread never overlap, so the thread's
 * armed record is the syscall that is returning.  rt_sigreturn's "return value" is the restored
 * rax (as strace shows it), not a status: drop_failed does not apply to it.
 */
static __always_inline int exit__renumbered(struct pending *p, struct lbd_settings *s, long ret)
{
    u32 nr = p->hdr.nr;
    struct lbd_desc *d = descs.lookup(&nr);
    if (!d) {
        p->armed = 0;
        return 0;
    }
    return exit__complete(p, d, s, ret, nr != NR_RT_SIGRETURN);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    u64 regs_nr = -1;
    bpf_probe_read_kernel(&regs_nr, sizeof(regs_nr), (void *)ctx->args[0] + PT_REGS_ORIG_AX_OFF);
    long id = regs_nr;
    long ret = ctx->args[1];
    int renumbered = id < 0 || id >= LBD_MAX_SYSCALLS;
    int new_image = id == NR_EXECVE && ret == 0;  /* maybe an execveat: see exit__renumbered() */
    u32 nr = (u32)id;
    struct lbd_desc *d = 0;
    if (!renumbered) {
        d = descs.lookup(&nr);
        if (!d)
            return 0;
        if (d->flags & LBD_D_REFRESH)             /* comm or credentials may have changed */
            thread__invalidate();
        if (!d->enabled && !new_image)
            return 0;                             /* not selected: the lookup, as at enter */
    }
    struct lbd_settings *s = settings__get();
    if (!s || s->drop_mode)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    struct pending *p = pending__get(0);
    if (p && p->armed && p->generation == s->generation) {
        if (d && p->hdr.nr == nr && p->selected == d->enabled)
            return exit__complete(p, d, s, ret, 1);
        if (renumbered || (new_image && p->hdr.nr == NR_EXECVEAT))
            return exit__renumbered(p, s, ret);
    }
    if (!d || !d->enabled)
        return 0;

    /*
     * No enter for this exit.  Mostly the enter was filtered: the same filters drop the exit, and
     * are not counted again (the enter was).  Otherwise capture started mid-call (or resumed: the
     * record armed before is stale, another generation), or a new thread or process returns from
     * clone/fork/vfork (Falco users need these: the child's first event): emit what is known,
     * flagged LBD_F_NOENTER, with ts the exit time.
     */
    struct thread *t = thread__get(1);
    if (filter__thread(s, t, pid_tgid >> 32, tid) >= 0)
        return 0;
    if (s->drop_failed && ret < 0) {
        counter__add(LBD_C_F_FAILED, 1);
        return 0;
    }
    if (!p)
        p = pending__get(1);
    if (!p || !t)
        return 0;
    u64 now = bpf_ktime_get_ns();
    hdr__thread(&p->hdr, t, pid_tgid, now);
    record__begin(p, nr, 0, LBD_F_NOENTER, now, ret, 1);
    p->armed = 0;
    counter__add(LBD_C_NOENTER, 1);
    ring__emit(p, s, LBD_C_EMITTED);
    return 0;
}

/* ---- process tree ------------------------------------------------------------------------- */

/*
 * Process-tree records obey the task filters (own, falco, pids, comms, only_*) of the task they
 * run in, like its syscalls, but are not counted as filtered syscalls; the map upkeep (ppids,
 * the thread's cached identity) is done for every task.  They are built in a per-CPU scratch
 * record, so they never disturb a thread's record.
 */
static __always_inline struct pending *sched__begin(struct lbd_settings *s, u32 nr)
{
    if (!s || s->drop_mode)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (filter__task(s, pid_tgid >> 32, (u32)pid_tgid) >= 0)
        return 0;
    u32 key = 0;
    struct pending *p = sched_scratch.lookup(&key);
    if (!p)
        return 0;
    hdr__task(&p->hdr, pid_tgid);
    record__begin(p, nr, 3, 0, bpf_ktime_get_ns(), 0, 1);
    p->armed = 0;
    return p;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 child = args->child_pid;
    /* For a new thread child is a tid: the entry is never looked up and goes at its exit. */
    ppids.update(&child, &parent);
    struct lbd_settings *s = settings__get();
    struct pending *p = sched__begin(s, LBD_NR_SCHED_FORK);
    if (!p || !s)
        return 0;
    p->hdr.args[0] = parent;
    p->hdr.args[1] = child;
    p->hdr.args[2] = args->parent_pid;
    ring__emit(p, s, LBD_C_SCHED);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 pid = args->pid;
    u32 old_pid = args->old_pid;
    /* A non-leader thread that execs takes the leader's pid; its record, in task-local storage,
     * stays with it, and its own ppid entry (from its clone) goes: it sees no sched_process_exit. */
    if (old_pid != pid)
        ppids.delete(&old_pid);
    thread__invalidate();             /* new comm, maybe new credentials (setuid binary) */
    struct lbd_settings *s = settings__get();
    struct pending *p = sched__begin(s, LBD_NR_SCHED_EXEC);
    if (!p || !s)
        return 0;
    p->hdr.args[0] = pid;
    p->hdr.args[1] = old_pid;
    /* filename is a __data_loc string inside the tracepoint record (kernel memory). */
    u16 loc = args->data_loc_filename & 0xffff;
    u32 n = (s->str_max + 2) & STR_MASK;
    long r = bpf_probe_read_kernel_str(&p->payload[0], n, (char *)args + loc);
    if (r > 0) {
        u32 len = r - 1;
        int trunc = len > s->str_max;
        arg__done(p, 2, trunc ? s->str_max : len, trunc, 0);
    } else {
        arg__done(p, 2, 0, 0, 1);
    }
    ring__emit(p, s, LBD_C_SCHED);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = args->pid;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
#ifdef LBD_HAVE_GROUP_DEAD
    u32 group_dead = args->group_dead;
#else
    u32 group_dead = tid == tgid;     /* leader exit: best guess */
#endif
    struct lbd_settings *s = settings__get();
    struct pending *p = sched__begin(s, LBD_NR_SCHED_EXIT);
    if (p && s) {
        p->hdr.args[0] = tid;
        p->hdr.args[1] = group_dead;
        ring__emit(p, s, LBD_C_SCHED);
    }
    /* After the record took its ppid.  The process's entry goes with its last thread, not with
     * its leader: a leader exits first when another thread execs (de_thread), or by pthread_exit. */
    if (tid != tgid)
        ppids.delete(&tid);
    if (group_dead)
        ppids.delete(&tgid);
    return 0;
}
