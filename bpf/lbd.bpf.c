// SPDX-License-Identifier: GPL-2.0
/*
 * lbd.bpf.c: one table-driven syscall probe, one source for both loaders (bpf/lib/compat.h):
 * compiled ahead of time into build/lbd.bpf.o and loaded by libbpf with CO-RE (the default), or
 * compiled at load time by bcc (the fallback where the kernel has no BTF).
 *
 *   sys_enter           filter -> capture the arguments by kind into the thread's pending record
 *   sys_exit            complete it (return value, latency, output arguments, arguments whose
 *                       read faulted at enter, the socket) -> the ring of this CPU
 *   sched_process_*     process-tree records (fork: real parent; exec: argv, executable, the new
 *                       image's identity; exit: group exit and code), kept-process following
 *
 * Per-syscall cost is what matters:
 *   - a syscall that is neither selected nor a state syscall costs one descriptor lookup at enter,
 *     and at exit the read of its number plus that lookup;
 *   - a filtered one also the settings lookup and the filter checks, whose verdict is cached per
 *     thread; nothing is copied, reserved or counted twice for either;
 *   - a captured one finds its thread's record in task-local storage (no hash), takes comm, uid,
 *     gid, cgroup and namespaces from the copies cached there (refreshed every
 *     LBD_TASK_REFRESH_NS, after exec and after a syscall that may change them), the parent from
 *     the task (CO-RE: reparenting shows at once), copies its arguments, and writes one record at
 *     exit into its CPU's ring (no wakeup unless this CPU has written wake_bytes since its last).
 *
 * Rings: one BPF ring buffer per cpus_per_ring CPUs, in the array of maps `rings` indexed by CPU
 * (user space creates the rings and stores each at the indexes of its CPUs).  A ring's records
 * are in the order of their `ets` (emit time, taken just before the write), which the consumer
 * merges on.  No shared ring: producers on different CPUs never contend.
 *
 * State: the syscalls the process and fd tables need (descriptor flag LBD_D_STATE, set by user
 * space while settings.state_on) and the process-tree records are written also when the user did
 * not select them, or for a task outside only_pids / only_comms, flagged LBD_F_STATE: user space
 * applies them to its tables and does not output them.  The drop filters (own, falco, pids, comms,
 * uids, drop_mode) drop state records too.
 *
 * Path prefixes (settings.path_on): a syscall whose descriptor names a path_arg is dropped at exit
 * unless that argument starts with one of its prefixes (one LPM-trie lookup of the syscall number
 * and the argument's bytes); a successful state syscall is kept as a state record instead, since
 * the fd it created still matters to the tables.
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
 * User memory that faults at enter (a page the process has not touched since fork: the kernel
 * faults it in when the syscall reads it, a BPF program cannot) is read again at exit
 * (LBD_F_REREAD); execve's arguments, whose old image is gone at exit, are taken from the kernel
 * at sched_process_exec (the filename) and from the new image (argv).
 */
#include "lib/compat.h"
#include "lbd_record.h"
#include "lib/task.h"

#define PAYLOAD_MASK   (LBD_PAYLOAD_MAX - 1)
#define STR_MASK       (LBD_PAYLOAD_MAX / 2 - 1)     /* str_max + 2 <= 2048 (config limit) */
#define SOCKADDR_MAX   128                            /* sizeof(struct sockaddr_storage) */
#define ARGV_LIMIT     64
#define NR_EXECVE      59
#define NR_EXECVEAT    322
#define NR_RT_SIGRETURN 15
#define FAULT_MASK     (0x3fu << LBD_F_FAULT_SHIFT)

/* The argument readers are BPF subprograms under libbpf: global functions, which the verifier checks
 * once on their own instead of once per call site and caller state (six arguments, read at enter
 * and again at exit, would otherwise exceed its budget).  bcc inlines them (its build has neither
 * the socket reader nor that many call sites). */
#if LBD_HAVE_CORE
#define LBD_SUBPROG __attribute__((noinline))
#else
#define LBD_SUBPROG static __always_inline
#endif

#ifndef LBD_MAX_CPUS
#define LBD_MAX_CPUS 1024            /* the loader sets the rings map to the possible CPUs */
#endif
#ifndef LBD_MAX_THREADS
#define LBD_MAX_THREADS 65536
#endif
#define LBD_MAX_FOLLOW 16384         /* only_pids: the user's (<= 64) plus followed descendants */

/* How long a thread's cached identity (comm, uid, gid, cgroup, namespaces, login uid) may be
 * reused before it is read again.  Exec, prctl, set*id, setns and unshare refresh it at once;
 * this bounds what they cannot see (a comm written through /proc/PID/task/TID/comm by another
 * process, a cgroup migration). */
#define LBD_TASK_REFRESH_NS 10000000ull
/* How many times a thread's filter verdict is reused before it is computed again (a comm filter's
 * verdict follows the comm: exec and prctl clear it at once; this bounds the rest). */
#define LBD_VERDICT_REUSE 256

/*
 * A thread's record under construction, kept from enter to exit.  The payload area is twice the
 * largest payload so that every write at (used & PAYLOAD_MASK) of at most LBD_PAYLOAD_MAX / 2 bytes
 * is in bounds for the verifier; what is emitted is clamped to LBD_PAYLOAD_MAX.
 */
struct pending {
    struct lbd_hdr hdr;
    u8 payload[2 * LBD_PAYLOAD_MAX];
    u32 used;           /* payload bytes written */
    u32 armed;          /* 1: enter captured, waiting for the exit of hdr.nr */
    u32 generation;     /* settings.generation when armed */
    u8 selected;        /* descs[hdr.nr].enabled when armed */
    u8 internal;        /* 1: a state record (LBD_F_STATE) */
};

/*
 * A thread's small context, created at its first selected or state syscall (captured or filtered):
 * its identity as last read (one helper call or CO-RE read each, so cached) and the filters'
 * verdict on it (pid, comm and uid lists: hash lookups, so cached).  The large record (struct
 * pending) is only created for threads that are captured.
 */
struct thread {
    u64 task_ts;        /* when the identity was read */
    u64 cgroup_id;
    char comm[LBD_COMM_LEN];
    u32 uid, gid, ppid; /* ppid: bcc only (CO-RE reads the parent at every record) */
    u32 pidns, mntns, loginuid;
    u8 task_valid;      /* 1: the identity may be used (until LBD_TASK_REFRESH_NS after task_ts) */
    u8 verdict;         /* 0: none; 1: keep; else 2 + the LBD_C_F_* counter of the reason to drop */
    u16 verdict_uses;   /* times reused: recomputed after LBD_VERDICT_REUSE */
    u32 verdict_gen;    /* settings.filter_generation it was computed under */
    u64 stat_ts;        /* syscall_stats: enter time of the syscall in flight (0: none) */
    u32 stat_nr;
    u32 pad;
};

struct comm_key {
    char comm[LBD_COMM_LEN];
};

/* Where a path argument is copied to be looked up in the prefixes map: the key, and room for a
 * copy whose length the verifier only knows to be below 256. */
struct prefix_scratch {
    struct lbd_prefix_key key;
    u8 slack[8];
};

/* The path builder's scratch (bpf/lib/task.h path__build): per CPU, twice the path buffer. */
struct path_scratch {
    char buf[2 * 4096];
};

LBD_RINGS(rings, LBD_MAX_CPUS);
LBD_ARRAY(descs, struct lbd_desc, LBD_MAX_SYSCALLS);
LBD_ARRAY(settings, struct lbd_settings, 1);
LBD_PERCPU_ARRAY(counters, u64, LBD_C_COUNT);
LBD_PERCPU_ARRAY(wake_acc, u64, 1);           /* bytes written since this CPU's last wakeup */
LBD_PERCPU_ARRAY(sc_stats, struct lbd_sc_stat, LBD_MAX_SYSCALLS);
LBD_HASH(own_tids, u32, u8, 64);              /* filter_own by thread (the Falco plugin) */
LBD_HASH(filter_pids, u32, u8, 64);
LBD_HASH(only_pids, u32, u8, LBD_MAX_FOLLOW); /* the user's pids, and descendants when following */
LBD_HASH(only_tids, u32, u8, 1024);           /* keep these threads (and follow their children) */
LBD_HASH(filter_comms, struct comm_key, u8, 16);
LBD_HASH(only_comms, struct comm_key, u8, 16);
LBD_HASH(filter_uids, u32, u8, 64);
LBD_HASH(only_uids, u32, u8, 64);
LBD_TASK_STORAGE(threads, struct thread);     /* the thread's context: at its first selected syscall */
LBD_TASK_STORAGE(pending, struct pending);    /* the thread's record: created at its first capture */
LBD_PERCPU_ARRAY(sched_scratch, struct pending, 1);  /* where process-tree records are built */
LBD_PERCPU_ARRAY(path_scratch, struct path_scratch, 1);
LBD_LPM_TRIE(prefixes, struct lbd_prefix_key, u8, LBD_MAX_PREFIXES);  /* path_on: (nr, prefix) */
LBD_PERCPU_ARRAY(prefix_scratch, struct prefix_scratch, 1);         /* the key being looked up */
#if !LBD_HAVE_CORE
LBD_HASH(ppids, u32, u32, LBD_MAX_THREADS);   /* bcc: pid -> parent tgid, from fork records */

/* The bcc build's map accessors (see bpf/lib/compat.h): bcc rewrites `map.lookup()` only in the
 * main source file and outside macro expansions, so each map and operation the probe uses has its
 * function here; the map__*() macros pick them by name. */
static __always_inline void *rings__lookup(u32 *k) { return rings.lookup(k); }
static __always_inline struct lbd_desc *descs__lookup(u32 *k) { return descs.lookup(k); }
static __always_inline struct lbd_settings *settings__lookup(u32 *k) { return settings.lookup(k); }
static __always_inline u64 *counters__lookup(u32 *k) { return counters.lookup(k); }
static __always_inline u64 *wake_acc__lookup(u32 *k) { return wake_acc.lookup(k); }
static __always_inline struct lbd_sc_stat *sc_stats__lookup(u32 *k) { return sc_stats.lookup(k); }
static __always_inline u8 *own_tids__lookup(u32 *k) { return own_tids.lookup(k); }
static __always_inline u8 *filter_pids__lookup(u32 *k) { return filter_pids.lookup(k); }
static __always_inline u8 *only_pids__lookup(u32 *k) { return only_pids.lookup(k); }
static __always_inline int only_pids__update(u32 *k, u8 *v) { return only_pids.update(k, v); }
static __always_inline int only_pids__delete(u32 *k) { return only_pids.delete(k); }
static __always_inline u8 *only_tids__lookup(u32 *k) { return only_tids.lookup(k); }
static __always_inline int only_tids__update(u32 *k, u8 *v) { return only_tids.update(k, v); }
static __always_inline int only_tids__delete(u32 *k) { return only_tids.delete(k); }
static __always_inline u8 *filter_comms__lookup(struct comm_key *k) { return filter_comms.lookup(k); }
static __always_inline u8 *only_comms__lookup(struct comm_key *k) { return only_comms.lookup(k); }
static __always_inline u8 *filter_uids__lookup(u32 *k) { return filter_uids.lookup(k); }
static __always_inline u8 *only_uids__lookup(u32 *k) { return only_uids.lookup(k); }
static __always_inline struct pending *sched_scratch__lookup(u32 *k) { return sched_scratch.lookup(k); }
static __always_inline struct prefix_scratch *prefix_scratch__lookup(u32 *k) { return prefix_scratch.lookup(k); }
static __always_inline u8 *prefixes__lookup(struct lbd_prefix_key *k) { return prefixes.lookup(k); }
static __always_inline u32 *ppids__lookup(u32 *k) { return ppids.lookup(k); }
static __always_inline int ppids__update(u32 *k, u32 *v) { return ppids.update(k, v); }
static __always_inline int ppids__delete(u32 *k) { return ppids.delete(k); }
static __always_inline struct thread *threads__storage(void *task, u64 flags)
{
    return threads.task_storage_get(task, 0, flags);
}
static __always_inline struct pending *pending__storage(void *task, u64 flags)
{
    return pending.task_storage_get(task, 0, flags);
}
#endif

static __always_inline void counter__add(u32 idx, u64 n)
{
    u64 *c = map__lookup(counters, &idx);
    if (c)
        *c += n;
}

static __always_inline struct lbd_settings *settings__get(void)
{
    u32 zero_key = 0;
    return map__lookup(settings, &zero_key);
}

/* only_pids / only_tids: is this task kept? */
static __always_inline int filter__kept(struct lbd_settings *s, u32 tgid, u32 tid)
{
    if (s->only_pids_on && map__lookup(only_pids, &tgid))
        return 1;
    if (s->only_tids_on && map__lookup(only_tids, &tid))
        return 1;
    return 0;
}

/* Filters that depend on the task only.  Returns the counter of the reason to drop, or -1. */
static __always_inline int filter__task(struct lbd_settings *s, u32 tgid, u32 tid)
{
    if (s->filter_own_tgid && tgid == s->filter_own_tgid)
        return LBD_C_F_OWN;
    if (s->own_tids_on && map__lookup(own_tids, &tid))
        return LBD_C_F_OWN;
    if (s->filter_falco_tgid && tgid == s->filter_falco_tgid)
        return LBD_C_F_FALCO;
    if (s->filter_pids_on && map__lookup(filter_pids, &tgid))
        return LBD_C_F_PID;
    if (s->filter_uids_on || s->only_uids_on) {
        u32 uid = (u32)bpf_get_current_uid_gid();
        if (s->filter_uids_on && map__lookup(filter_uids, &uid))
            return LBD_C_F_UID;
        if (s->only_uids_on && !map__lookup(only_uids, &uid))
            return LBD_C_F_UID;
    }
    if (s->filter_comms_on || s->only_comms_on) {
        struct comm_key comm = {};
        bpf_get_current_comm(comm.comm, sizeof(comm.comm));
        if (s->filter_comms_on && map__lookup(filter_comms, &comm))
            return LBD_C_F_COMM;
        if (s->only_comms_on && !map__lookup(only_comms, &comm))
            return LBD_C_F_ONLY;
    }
    if ((s->only_pids_on || s->only_tids_on) && !filter__kept(s, tgid, tid))
        return LBD_C_F_ONLY;
    return -1;
}

static __always_inline struct thread *thread__get(int create)
{
    return map__task_storage(threads, bpf_get_current_task_btf(),
                             create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
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
    return map__task_storage(pending, bpf_get_current_task_btf(),
                             create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* The parent process of the current task: the real parent read from the task (CO-RE), else the
 * parent at fork time from the fork records (bcc). */
static __always_inline u32 task__parent(u32 tgid)
{
#if LBD_HAVE_CORE
    return task__ppid(task__current());
#else
    u32 *pp = map__lookup(ppids, &tgid);
    return pp ? *pp : 0;
#endif
}

/* Read the current task's identity into the thread's cache. */
static __always_inline void thread__read(struct thread *t, u64 now)
{
    u64 ugid = bpf_get_current_uid_gid();
    t->uid = (u32)ugid;
    t->gid = ugid >> 32;
    t->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(t->comm, sizeof(t->comm));
#if LBD_HAVE_CORE
    struct task_struct *task = task__current();
    t->pidns = task__pidns(task);
    t->mntns = task__mntns(task);
    t->loginuid = task__loginuid(task);
#else
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    t->ppid = task__parent(tgid);
#endif
    t->task_ts = now;
    t->task_valid = 1;
}

/* Fill the task part of a syscall record from the thread's cached identity, reading it anew when
 * it is missing, older than LBD_TASK_REFRESH_NS or invalidated. */
static __always_inline void hdr__thread(struct lbd_hdr *h, struct thread *t, u64 pid_tgid, u64 now)
{
    u32 tgid = pid_tgid >> 32;
    if (!t->task_valid || now - t->task_ts > LBD_TASK_REFRESH_NS)
        thread__read(t, now);
    h->version = LBD_RECORD_VERSION;
    h->pid = tgid;
    h->tid = (u32)pid_tgid;
    h->uid = t->uid;
    h->gid = t->gid;
#if LBD_HAVE_CORE
    h->ppid = task__ppid(task__current());
#else
    h->ppid = t->ppid;
#endif
    h->cgroup_id = t->cgroup_id;
    h->pidns = t->pidns;
    h->mntns = t->mntns;
    h->loginuid = t->loginuid;
    __builtin_memcpy(h->comm, t->comm, LBD_COMM_LEN);
}

/* Fill the task part of the header directly (process-tree records: rare). */
static __always_inline void hdr__task(struct lbd_hdr *h, u64 pid_tgid)
{
    struct thread t = {};
    thread__read(&t, 0);
    hdr__thread(h, &t, pid_tgid, 0);
}

/* ---- argument readers: each stores one argument's payload at p->used ------------------------ */

static __always_inline void arg__done(struct pending *p, u32 i, u32 len, int trunc, int fault)
{
    BOUND(i, 7);
    if (i >= LBD_MAX_ARGS)
        return;
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
static __always_inline void arg__str(struct pending *p, u32 i, const void *src, u32 str_max)
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
static __always_inline void arg__bytes(struct pending *p, u32 i, const void *src, u64 want, u32 limit)
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
static __always_inline void arg__strarr(struct pending *p, u32 i, const void *src, struct lbd_settings *s)
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
    p->used = start;                              /* arg__done() accounts for it (what was read
                                                     before a fault stays, flagged faulted) */
    arg__done(p, i, len, trunc, fault);
}

static __always_inline u64 len_arg(struct lbd_hdr *h, u8 idx)
{
    return idx < LBD_MAX_ARGS ? h->args[idx & 7] : 0;
}

#define MSG_NAME_MAX  128
#define MSG_IOV_MAX   8
#define MSG_CTL_MAX   64

/* struct msghdr (and the first of an mmsghdr array): the header, the name, the iovecs, the
 * control data, each capped (struct lbd_msg says how much of each follows). */
static __always_inline void arg__msghdr(struct pending *p, u32 i, const void *src)
{
    u32 start = p->used;
    if (start > LBD_PAYLOAD_MAX - sizeof(struct lbd_msg) - MSG_NAME_MAX - MSG_IOV_MAX * 16 - MSG_CTL_MAX) {
        arg__done(p, i, 0, 1, 0);
        return;
    }
    u32 off = start & PAYLOAD_MASK;
    struct lbd_msg *m = (struct lbd_msg *)&p->payload[off];
    __builtin_memset(m, 0, 8);
    if (bpf_probe_read_user(m->msghdr, sizeof(m->msghdr), src) < 0) {
        arg__done(p, i, 0, 0, 1);
        return;
    }
    const void *name = *(const void **)&m->msghdr[0];
    u32 namelen = *(u32 *)&m->msghdr[8];
    const void *iov = *(const void **)&m->msghdr[16];
    u64 iovlen = *(u64 *)&m->msghdr[24];
    const void *ctl = *(const void **)&m->msghdr[32];
    u64 ctllen = *(u64 *)&m->msghdr[40];
    u32 at = (off + sizeof(struct lbd_msg)) & PAYLOAD_MASK;
    int trunc = 0, fault = 0;
    u32 n = namelen < MSG_NAME_MAX ? namelen : MSG_NAME_MAX;
    BOUND(n, 0xff);
    if (n > MSG_NAME_MAX)
        n = MSG_NAME_MAX;
    if (name && n) {
        if (bpf_probe_read_user(&p->payload[at], n, name) < 0) {
            n = 0;
            fault = 1;
        }
    } else {
        n = 0;
    }
    trunc |= namelen > MSG_NAME_MAX;
    m->name_len = n;
    at = (at + n) & PAYLOAD_MASK;
    u32 k = iovlen < MSG_IOV_MAX ? iovlen : MSG_IOV_MAX;
    u32 ib = k * 16;
    BOUND(ib, 0xff);
    if (ib > MSG_IOV_MAX * 16)
        ib = MSG_IOV_MAX * 16;
    if (iov && ib) {
        if (bpf_probe_read_user(&p->payload[at], ib, iov) < 0) {
            ib = 0;
            fault = 1;
        }
    } else {
        ib = 0;
    }
    trunc |= iovlen > MSG_IOV_MAX;
    m->iov_n = ib / 16;
    at = (at + ib) & PAYLOAD_MASK;
    u32 c = ctllen < MSG_CTL_MAX ? ctllen : MSG_CTL_MAX;
    BOUND(c, 0x7f);
    if (c > MSG_CTL_MAX)
        c = MSG_CTL_MAX;
    if (ctl && c) {
        if (bpf_probe_read_user(&p->payload[at], c, ctl) < 0) {
            c = 0;
            fault = 1;
        }
    } else {
        c = 0;
    }
    trunc |= ctllen > MSG_CTL_MAX;
    m->control_len = c;
    arg__done(p, i, sizeof(struct lbd_msg) + m->name_len + ib + c, trunc, fault);
}

/* A fixed-size struct (STRUCT, OUT_STRUCT) or an array (ARRAY32, IOVEC): at most size * 8 bytes,
 * fewer when the length or count argument says so. */
static __always_inline void arg__sized(struct pending *p, struct lbd_desc *d, u32 i, const void *ptr, u8 kind)
{
    u32 max = (u32)d->size[i] * 8;
    u64 want = max;
    u8 aux = d->aux[i];
    if (aux < LBD_MAX_ARGS) {
        u64 n = len_arg(&p->hdr, aux);
        if (kind == LBD_K_ARRAY32)
            n *= 4;
        else if (kind == LBD_K_IOVEC)
            n *= 16;
        want = n;
    }
    arg__bytes(p, i, ptr, want, max);
}

/* Capture input argument i (at enter, or again at exit after a fault) according to its kind. */
LBD_SUBPROG int arg__input(struct pending *p, struct lbd_desc *d, u32 i, struct lbd_settings *s)
{
    if (!p || !d || !s || i >= LBD_MAX_ARGS)
        return 0;
    BOUND(i, 7);
    u8 kind = d->kind[i];
    u64 v = p->hdr.args[i];
    if (!v)
        return 0;
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
    case LBD_K_STRUCT:
    case LBD_K_ARRAY32:
    case LBD_K_IOVEC:
        arg__sized(p, d, i, ptr, kind);
        break;
    case LBD_K_MSGHDR:
        arg__msghdr(p, i, ptr);
        break;
    case LBD_K_STRARR:
        if (d->aux[i] == LBD_AUX_ENV && !s->capture_env) {
            p->hdr.slot[i].off = sizeof(struct lbd_hdr) + (p->used & PAYLOAD_MASK);
            p->hdr.flags |= 1u << (LBD_F_TRUNC_SHIFT + i);   /* not read: cut to nothing */
            break;
        }
        arg__strarr(p, i, ptr, s);
        break;
    }
    return 0;
}

/* Read output argument i when the syscall returns. */
LBD_SUBPROG int arg__exit(struct pending *p, struct lbd_desc *d, u32 i, struct lbd_settings *s)
{
    if (!p || !d || !s || i >= LBD_MAX_ARGS)
        return 0;
    BOUND(i, 7);
    u8 kind = d->kind[i];
    u64 v = p->hdr.args[i];
    if (!lbd_kind_at_exit(kind) || !v || p->hdr.res < 0)
        return 0;
    const void *ptr = (const void *)v;
    switch (kind) {
    case LBD_K_OUT_STRUCT:
        arg__sized(p, d, i, ptr, kind);
        break;
    case LBD_K_OUT_MSGHDR:
        arg__msghdr(p, i, ptr);
        break;
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
    return 0;
}

/* Input argument i faulted at enter: the syscall has touched its memory since (the kernel faults
 * the page in), so read it again.  The first try's empty payload slot is replaced. */
static __always_inline void arg__reread(struct pending *p, struct lbd_desc *d, u32 i, struct lbd_settings *s)
{
    u32 bit = 1u << (LBD_F_FAULT_SHIFT + i);
    if (!(p->hdr.flags & bit))
        return;
    u8 kind = d->kind[i];
    if (kind != LBD_K_STR && kind != LBD_K_PATH && kind != LBD_K_SOCKADDR && kind != LBD_K_BUF
        && kind != LBD_K_STRUCT)
        return;                                   /* argv / envp, arrays: see the header comment */
    p->hdr.flags &= ~bit;
    arg__input(p, d, i, s);
    if (!(p->hdr.flags & bit)) {
        p->hdr.flags |= LBD_F_REREAD;
        counter__add(LBD_C_REREAD, 1);
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
    p->hdr.xslot.off = 0;
    p->hdr.xslot.len = 0;
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
 * Write p's record into this CPU's ring.  ets is read here, just before the write, so that every
 * ring is in ets order (the consumer's merge key); an exit record's latency is ets - ts.
 *
 * Wakeups.  Records are written without waking the consumer, which drains on its own short timer;
 * but a fast producer can fill a ring between two timer ticks, so each CPU forces a wakeup once it
 * has written wake_bytes since its last one (user space sets wake_bytes per CPU).  A per-CPU count
 * keeps this free of shared cache lines (bpf_ringbuf_query() would read the ring's).
 */
static __always_inline void ring__emit(struct pending *p, struct lbd_settings *s, u32 counter, int exit_latency)
{
    u32 used = p->used;
    if (used > LBD_PAYLOAD_MAX)                   /* arg__done() keeps it so; the verifier needs */
        used = LBD_PAYLOAD_MAX;                   /* the bound it can see, hence the mask below */
    u32 size = sizeof(struct lbd_hdr) + used;
    BOUND(size, 0x1fff);                          /* <= sizeof(struct pending): in bounds */
    p->hdr.size = size;
    u32 cpu = bpf_get_smp_processor_id();
    void *rb = map__lookup(rings, &cpu);
    if (!rb) {
        counter__add(LBD_C_DROP_RINGFULL, 1);
        return;
    }
    u32 zero_key = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u64 *acc = map__lookup(wake_acc, &zero_key);
    if (acc) {
        *acc += size;
        if (*acc >= s->wake_bytes) {
            *acc = 0;
            flags = BPF_RB_FORCE_WAKEUP;
        }
    }
    u64 now = bpf_ktime_get_ns();
    p->hdr.ets = now;
    if (exit_latency)
        p->hdr.latency = now - p->hdr.ts;
    if (bpf_ringbuf_output(rb, &p->hdr, size, flags) == 0) {
        counter__add(counter, 1);
        if (p->hdr.flags & LBD_F_STATE)
            counter__add(LBD_C_STATE, 1);
    } else {
        counter__add(LBD_C_DROP_RINGFULL, 1);
    }
}

/* ---- per-syscall statistics (settings.syscall_stats, descriptor flag LBD_D_STATS) ------------ */

static __always_inline void stats__enter(u32 nr)
{
    struct thread *t = thread__get(1);
    if (t) {
        t->stat_ts = bpf_ktime_get_ns();
        t->stat_nr = nr;
    }
}

static __always_inline void stats__exit(u32 nr, long ret)
{
    struct thread *t = thread__get(0);
    if (!t || !t->stat_ts || t->stat_nr != nr)
        return;
    u64 lat = bpf_ktime_get_ns() - t->stat_ts;
    t->stat_ts = 0;
    struct lbd_sc_stat *st = map__lookup(sc_stats, &nr);
    if (!st)
        return;
    st->count++;
    if (ret < 0 && ret >= -4095)
        st->errors++;
    st->lat_sum += lat;
    u32 b = 0;
#pragma unroll
    for (int k = 16; k > 0; k >>= 1) {            /* b = floor(log2(lat)), at most 31 */
        if (lat >= (1ull << k)) {
            lat >>= k;
            b += k;
        }
    }
    if (b > LBD_LAT_BUCKETS - 1)
        b = LBD_LAT_BUCKETS - 1;
    st->hist[b & (LBD_LAT_BUCKETS - 1)]++;
}

/* ---- syscall enter / exit ---------------------------------------------------------------------- */

#if LBD_HAVE_CORE
typedef struct pt_regs lbd_regs;
#else
typedef void lbd_regs;
#endif

static __always_inline int sys_enter__run(lbd_regs *regs, long id)
{
    counter__add(LBD_C_SEEN, 1);
    u32 nr = id;
    if (nr >= LBD_MAX_SYSCALLS)
        return 0;
    struct lbd_desc *d = map__lookup(descs, &nr);
    if (!d)
        return 0;
    if (d->flags & LBD_D_STATS)
        stats__enter(nr);
    if (!d->enabled && !(d->flags & LBD_D_STATE)) {  /* not wanted: nothing more than this lookup */
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
#if LBD_HAVE_CORE
    if (task__in_compat(task__current())) {       /* an ia32 number: not this table's syscall */
        counter__add(LBD_C_COMPAT, 1);
        return 0;
    }
#endif
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct thread *t = thread__get(1);
    int why = filter__thread(s, t, pid_tgid >> 32, (u32)pid_tgid);
    u8 internal = !d->enabled;
    if (why == LBD_C_F_ONLY && (d->flags & LBD_D_STATE))
        internal = 1;                             /* outside only_*: for the tables only */
    else if (why >= 0) {
        counter__add(why, 1);
        return 0;
    }
    struct pending *p = pending__get(1);
    if (!p || !t)
        return 0;
    u64 now = bpf_ktime_get_ns();
    hdr__thread(&p->hdr, t, pid_tgid, now);
    record__begin(p, nr, d->nargs, internal ? LBD_F_STATE : 0, now, 0, d->nargs == 0);
    if (d->nargs) {                               /* getpid and friends: no register read */
        regs__args(regs, p->hdr.args);
#pragma unroll
        for (int i = 0; i < LBD_MAX_ARGS; i++) {
            u8 kind = d->kind[i];
            if (lbd_kind_at_enter(kind))
                arg__input(p, d, i, s);
        }
    }
    if (d->flags & LBD_D_NORETURN) {              /* exit, exit_group: no sys_exit will come */
        p->hdr.flags |= LBD_F_NORETURN;
        p->hdr.dir = s->emit_enter ? LBD_DIR_ENTER : LBD_DIR_EXIT;
        p->armed = 0;
        ring__emit(p, s, LBD_C_EMITTED, 0);
        return 0;
    }
    if (s->emit_enter && !internal) {
        p->hdr.dir = LBD_DIR_ENTER;
        ring__emit(p, s, LBD_C_EMITTED, 0);
        p->hdr.dir = LBD_DIR_EXIT;
    }
    p->generation = s->generation;
    p->selected = d->enabled;
    p->internal = internal;
    p->armed = 1;
    return 0;
}

/* The socket of the fd the syscall acted on or returned, into the record's extra slot (CO-RE). */
LBD_SUBPROG int exit__socket(struct pending *p, struct lbd_desc *d)
{
    if (!p || !d)
        return 0;
#if LBD_HAVE_CORE
    long fd = (d->flags & LBD_D_SOCK_RES) ? p->hdr.res : (long)(int)p->hdr.args[0];
    struct file *f = task__fd_file(task__current(), fd);
    if (!f || p->used > LBD_PAYLOAD_MAX - sizeof(struct lbd_sock) - 108)
        return 0;
    u32 off = p->used & PAYLOAD_MASK;
    struct lbd_sock *so = (struct lbd_sock *)&p->payload[off];
    __builtin_memset(so, 0, sizeof(*so));
    u32 n = sock__read(f, so, (char *)&p->payload[(off + sizeof(*so)) & PAYLOAD_MASK]);
    if (!n)
        return 0;
    p->hdr.xslot.off = sizeof(struct lbd_hdr) + p->used;
    p->hdr.xslot.len = n;
    p->used += n;
#endif
    return 0;
}

/* settings.path_on: does argument i (a path or string, read at enter) of syscall nr start with
 * one of the syscall's prefixes?  A NULL pointer starts with none (the filter's text tests fail
 * on an absent value too); a read that faulted at enter (read again later) is kept. */
static __always_inline int path__kept(struct pending *p, u32 i, u32 nr)
{
    BOUND(i, 7);
    if (i >= LBD_MAX_ARGS)
        return 1;
    if (p->hdr.flags & (1u << (LBD_F_FAULT_SHIFT + i)))
        return 1;                                 /* not read yet (read again at exit): keep */
    u16 at = p->hdr.slot[i].off;
    if (!at)
        return 0;
    u32 key0 = 0;
    struct prefix_scratch *ps = map__lookup(prefix_scratch, &key0);
    if (!ps)
        return 1;
    u32 off = (at - sizeof(struct lbd_hdr)) & PAYLOAD_MASK;
    u32 len = p->hdr.slot[i].len;
    if (len > LBD_PREFIX_MAX)
        len = LBD_PREFIX_MAX;
    BOUND(len, 255);
    ps->key.data[0] = nr >> 8;
    ps->key.data[1] = nr & 0xff;
    if (len && bpf_probe_read_kernel(&ps->key.data[2], len, &p->payload[off]) < 0)
        return 1;
    ps->key.prefixlen = 16 + 8 * len;
    return map__lookup(prefixes, &ps->key) != 0;
}

/* Finish an armed record at its exit: failure filters, return value, outputs, arguments whose
 * read faulted at enter, the socket; emit it.  The path prefixes are checked first. */
static __always_inline int exit__complete(struct pending *p, struct lbd_desc *d, struct lbd_settings *s,
                                          long ret, int is_status)
{
    p->armed = 0;
    if (is_status) {
        int failed = ret < 0;
        int unwanted = (failed && s->drop_failed) || (!failed && s->failed_only);
        if (p->internal && failed && !(d->flags & LBD_D_STATE_FAILED))
            return 0;                             /* a failed call changes no table */
        if (unwanted && !p->internal) {
            if (!(d->flags & LBD_D_STATE) || (failed && !(d->flags & LBD_D_STATE_FAILED))) {
                counter__add(LBD_C_F_FAILED, 1);
                return 0;
            }
            counter__add(LBD_C_F_FAILED, 1);      /* not for output; the tables still need it */
            p->internal = 1;
            p->hdr.flags |= LBD_F_STATE;
        }
    }
    p->hdr.res = ret;
    u32 nr = p->hdr.nr;
    int new_image = (nr == NR_EXECVE || nr == NR_EXECVEAT) && ret == 0;
    if (new_image) {
        p->hdr.flags |= LBD_F_NEWIMAGE;           /* the new program: show its name */
        bpf_get_current_comm(p->hdr.comm, sizeof(p->hdr.comm));
    } else if (d->flags & LBD_D_REFRESH) {
        /* prctl(PR_SET_NAME), set*id, setns, ...: the record shows the identity after the call,
         * so that the process table sees a rename or a new uid where it happens */
        u64 ugid = bpf_get_current_uid_gid();
        p->hdr.uid = (u32)ugid;
        p->hdr.gid = ugid >> 32;
        bpf_get_current_comm(p->hdr.comm, sizeof(p->hdr.comm));
    }
    if (s->path_on && d->path_arg && !p->internal && !path__kept(p, d->path_arg - 1, nr)) {
        counter__add(LBD_C_F_PATH, 1);
        if (!(d->flags & LBD_D_STATE) || (ret < 0 && !(d->flags & LBD_D_STATE_FAILED)))
            return 0;
        p->internal = 1;                          /* not for output; the tables still need it */
        p->hdr.flags |= LBD_F_STATE;
    }
    if (!new_image && (p->hdr.flags & FAULT_MASK)) {   /* (the old image's memory is gone after exec) */
#pragma unroll
        for (int i = 0; i < LBD_MAX_ARGS; i++)
            arg__reread(p, d, i, s);
    }
    if (d->flags & LBD_D_EXIT_KINDS) {
#pragma unroll
        for (int i = 0; i < LBD_MAX_ARGS; i++)
            arg__exit(p, d, i, s);
    }
    if ((d->flags & (LBD_D_SOCK_ARG0 | LBD_D_SOCK_RES)) && ret >= 0)
        exit__socket(p, d);
    ring__emit(p, s, LBD_C_EMITTED, 1);
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
static __always_inline int sys_exit__run(lbd_regs *regs, long ret)
{
    long id = regs__orig_ax(regs);
    int renumbered = id < 0 || id >= LBD_MAX_SYSCALLS;
    int new_image = id == NR_EXECVE && ret == 0;  /* maybe an execveat: see exit__renumbered() */
    u32 nr = (u32)id;
    struct lbd_desc *d = 0;
    if (!renumbered) {
        d = map__lookup(descs, &nr);
        if (!d)
            return 0;
        if (d->flags & LBD_D_STATS)
            stats__exit(nr, ret);
        if (d->flags & LBD_D_REFRESH)             /* comm or credentials may have changed */
            thread__invalidate();
        if (!d->enabled && !(d->flags & LBD_D_STATE) && !new_image)
            return 0;                             /* not wanted: the lookup, as at enter */
    }
    struct lbd_settings *s = settings__get();
    if (!s || s->drop_mode)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    struct pending *p = pending__get(0);
    if (p && p->armed && p->generation == s->generation) {
        struct lbd_desc *armed_d = 0;
        int is_status = 1;
        if (d && p->hdr.nr == nr && p->selected == d->enabled) {
            armed_d = d;
        } else if (renumbered || (new_image && p->hdr.nr == NR_EXECVEAT)) {
            u32 anr = p->hdr.nr;                  /* see above: the armed syscall is returning */
            armed_d = map__lookup(descs, &anr);
            is_status = anr != NR_RT_SIGRETURN;
            if (!armed_d) {
                p->armed = 0;
                return 0;
            }
        }
        if (armed_d)
            return exit__complete(p, armed_d, s, ret, is_status);
    }
    if (!d || (!d->enabled && !(d->flags & LBD_D_STATE)))
        return 0;

    /*
     * No enter for this exit.  Mostly the enter was filtered: the same filters drop the exit, and
     * are not counted again (the enter was).  Otherwise capture started mid-call (or resumed: the
     * record armed before is stale, another generation), or a new thread or process returns from
     * clone/fork/vfork (Falco users need these: the child's first event): emit what is known,
     * flagged LBD_F_NOENTER, with ts the exit time.
     */
    struct thread *t = thread__get(1);
    int why = filter__thread(s, t, pid_tgid >> 32, tid);
    u8 internal = !d->enabled;
    if (why == LBD_C_F_ONLY && (d->flags & LBD_D_STATE))
        internal = 1;
    else if (why >= 0)
        return 0;
    if (ret < 0 && (internal || s->drop_failed)) {
        if (!internal)
            counter__add(LBD_C_F_FAILED, 1);
        return 0;
    }
    if (ret >= 0 && s->failed_only && !internal) {
        counter__add(LBD_C_F_FAILED, 1);
        if (!(d->flags & LBD_D_STATE))
            return 0;
        internal = 1;
    }
    if (!p)
        p = pending__get(1);
    if (!p || !t)
        return 0;
    u64 now = bpf_ktime_get_ns();
    hdr__thread(&p->hdr, t, pid_tgid, now);
    record__begin(p, nr, 0, LBD_F_NOENTER | (internal ? LBD_F_STATE : 0), now, ret, 1);
    p->armed = 0;
    counter__add(LBD_C_NOENTER, 1);
    ring__emit(p, s, LBD_C_EMITTED, 0);
    return 0;
}

LBD_SYS_ENTER()
LBD_SYS_EXIT()

/* ---- process tree ------------------------------------------------------------------------- */

/*
 * Process-tree records are state records: the drop filters (own, falco, pids, comms, uids) of the
 * task they run in apply, only_* make them LBD_F_STATE (kept for the tables while state_on); they
 * are not counted as filtered syscalls.  The map upkeep (following, the bcc ppids map, the
 * thread's cached identity) is done for every task.  They are built in a per-CPU scratch record,
 * so they never disturb a thread's record.
 */
static __always_inline struct pending *sched__begin(struct lbd_settings *s, u32 nr)
{
    /* generation 0: user space has not written the settings yet (bcc attaches the programs while
     * it loads them); no syscall descriptor gates these programs, so they wait for it here */
    if (!s || s->drop_mode || !s->generation)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    int why = filter__task(s, pid_tgid >> 32, (u32)pid_tgid);
    u32 flags = 0;
    if (why == LBD_C_F_ONLY) {
        if (!s->state_on)
            return 0;
        flags = LBD_F_STATE;
    } else if (why >= 0) {
        return 0;
    }
    u32 key = 0;
    struct pending *p = map__lookup(sched_scratch, &key);
    if (!p)
        return 0;
    hdr__task(&p->hdr, pid_tgid);
    record__begin(p, nr, 3, flags, bpf_ktime_get_ns(), 0, 1);
    p->armed = 0;
    return p;
}

/* Store a kernel string as argument i of a scratch record (its payload starts empty). */
static __always_inline void arg__kstr(struct pending *p, int i, const void *src, u32 str_max)
{
    u32 off = p->used & PAYLOAD_MASK;
    u32 n = (str_max + 2) & STR_MASK;
    long r = bpf_probe_read_kernel_str(&p->payload[off], n, src);
    if (r > 0) {
        u32 len = r - 1;
        int trunc = len > str_max;
        arg__done(p, i, trunc ? str_max : len, trunc, 0);
    } else {
        arg__done(p, i, 0, 0, 1);
    }
}

/* Following (settings.follow): a process forked by a kept task is kept too; so is a thread that a
 * kept thread (only_tids) creates (CO-RE tells threads from processes; bcc adds both maps). */
static __always_inline void sched__follow(struct lbd_settings *s, u32 parent_tgid, u32 parent_tid,
                                          u32 child, int is_thread)
{
    if (!s || !s->follow || !filter__kept(s, parent_tgid, parent_tid))
        return;
    u8 one = 1;
    if (!is_thread)
        map__update(only_pids, &child, &one);
    if (s->only_tids_on && (is_thread || !LBD_HAVE_CORE) && map__lookup(only_tids, &parent_tid))
        map__update(only_tids, &child, &one);
}

static __always_inline int sched_fork__run(u32 parent, u32 parent_tid, u32 child, u32 child_tgid,
                                           u64 child_start)
{
#if !LBD_HAVE_CORE
    /* For a new thread child is a tid: the entry is never looked up and goes at its exit. */
    map__update(ppids, &child, &parent);
#endif
    struct lbd_settings *s = settings__get();
    sched__follow(s, bpf_get_current_pid_tgid() >> 32, parent_tid, child,
                  LBD_HAVE_CORE && child != child_tgid);   /* bcc cannot tell: a process */
    struct pending *p = sched__begin(s, LBD_NR_SCHED_FORK);
    if (!p || !s)
        return 0;
    p->hdr.nargs = 5;
    p->hdr.args[0] = parent;
    p->hdr.args[1] = child;
    p->hdr.args[2] = parent_tid;
    p->hdr.args[3] = child_tgid;
    p->hdr.args[4] = child_start;
    ring__emit(p, s, LBD_C_SCHED, 0);
    return 0;
}

static __always_inline void sched_exit__run(u32 tid, u32 group_dead, u32 code)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct lbd_settings *s = settings__get();
    struct pending *p = sched__begin(s, LBD_NR_SCHED_EXIT);
    if (p && s) {
        p->hdr.args[0] = tid;
        p->hdr.args[1] = group_dead;
        p->hdr.args[2] = code;
        ring__emit(p, s, LBD_C_SCHED, 0);
    }
    if (s && s->follow) {                         /* a followed id may be reused by another */
        if (group_dead)
            map__delete(only_pids, &tgid);
        if (s->only_tids_on)
            map__delete(only_tids, &tid);
    }
#if !LBD_HAVE_CORE
    /* After the record took its ppid.  The process's entry goes with its last thread, not with
     * its leader: a leader exits first when another thread execs (de_thread), or by pthread_exit. */
    if (tid != tgid)
        map__delete(ppids, &tid);
    if (group_dead)
        map__delete(ppids, &tgid);
#endif
}

#if LBD_HAVE_CORE

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
    u32 child_tid = BPF_CORE_READ(child, pid);
    u32 child_tgid = BPF_CORE_READ(child, tgid);
    u32 real_parent = BPF_CORE_READ(child, real_parent, tgid);
    u64 start = BPF_CORE_READ(child, group_leader, start_time);
    return sched_fork__run(real_parent, BPF_CORE_READ(parent, pid), child_tid, child_tgid, start);
}

/* execve's own record, armed in this thread since its enter: arguments whose read faulted at
 * enter come from the kernel now (the filename execve resolved; argv from the new image). */
static __always_inline void exec__fixup(struct pending *p, const char *filename, struct lbd_settings *s,
                                        unsigned long arg_start, unsigned long arg_end)
{
    if (!p->armed || (p->hdr.nr != NR_EXECVE && p->hdr.nr != NR_EXECVEAT) || !(p->hdr.flags & FAULT_MASK))
        return;
    int fi = p->hdr.nr == NR_EXECVE ? 0 : 1;      /* execve(filename, argv, envp), execveat(fd, ...) */
    u32 fbit = 1u << (LBD_F_FAULT_SHIFT + fi);
    u32 abit = 1u << (LBD_F_FAULT_SHIFT + fi + 1);
    if (p->hdr.flags & fbit) {
        p->hdr.flags &= ~fbit;
        if (fi == 0)
            arg__kstr(p, 0, filename, s->str_max);
        else
            arg__kstr(p, 1, filename, s->str_max);
        if (!(p->hdr.flags & fbit)) {
            p->hdr.flags |= LBD_F_REREAD;
            counter__add(LBD_C_REREAD, 1);
        }
    }
    if ((p->hdr.flags & abit) && arg_end > arg_start && p->used < LBD_PAYLOAD_MAX) {
        u32 want = arg_end - arg_start;
        u32 room = LBD_PAYLOAD_MAX - p->used;
        u32 cap = s->argv_max * (s->str_max + 1);
        u32 n = want < room ? want : room;
        int trunc = n < want;
        if (n > cap) {
            n = cap;
            trunc = 1;
        }
        BOUND(n, 0x7ff);
        u32 off = p->used & PAYLOAD_MASK;
        if (n && bpf_probe_read_user(&p->payload[off], n, (const void *)arg_start) == 0) {
            p->hdr.flags &= ~abit;
            int i = fi + 1;
            if (i == 1)
                arg__done(p, 1, n, trunc, 0);
            else
                arg__done(p, 2, n, trunc, 0);
            p->hdr.flags |= LBD_F_REREAD;
            counter__add(LBD_C_REREAD, 1);
        }
    }
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
    u32 pid = BPF_CORE_READ(task, tgid);
    /* A non-leader thread that execs takes the leader's pid; its record, in task-local storage,
     * stays with it. */
    thread__invalidate();             /* new comm, maybe new credentials (setuid binary) */
    struct lbd_settings *s = settings__get();
    if (!s)
        return 0;
    const char *filename = BPF_CORE_READ(bprm, filename);
    struct mm_struct *mm = BPF_CORE_READ(task, mm);
    unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
    unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
    struct pending *own = pending__get(0);
    if (own && own->generation == s->generation)
        exec__fixup(own, filename, s, arg_start, arg_end);
    struct pending *p = sched__begin(s, LBD_NR_SCHED_EXEC);
    if (!p)
        return 0;
    p->hdr.nargs = 5;
    p->hdr.args[0] = pid;
    p->hdr.args[1] = old_pid;
    arg__kstr(p, 2, filename, s->str_max);
    /* argv: the new image's argument block, NUL-separated strings (user memory just written) */
    p->hdr.args[3] = arg_start;
    if (arg_end > arg_start && p->used < LBD_PAYLOAD_MAX) {
        u32 want = arg_end - arg_start;
        u32 cap = s->argv_max * (s->str_max + 1);
        u32 room = LBD_PAYLOAD_MAX / 2 - p->used % (LBD_PAYLOAD_MAX / 2);
        u32 n = want < cap ? want : cap;
        if (n > room)
            n = room;
        BOUND(n, 0x7ff);
        u32 off = p->used & PAYLOAD_MASK;
        if (n && bpf_probe_read_user(&p->payload[off], n, (const void *)arg_start) == 0)
            arg__done(p, 3, n, n < want, 0);
        else
            arg__done(p, 3, 0, 0, 1);
    }
    /* the executable: the path of the file the kernel opened (not the name given) */
    u32 key = 0;
    struct path_scratch *ps = map__lookup(path_scratch, &key);
    struct file *exe = BPF_CORE_READ(bprm, file);
    if (ps && exe) {
        u32 start = path__build(&exe->f_path, ps->buf);
        u32 len = LBD_PATH_BUF - 1 - start;
        u32 keep = len;
        if (keep > s->str_max)
            keep = s->str_max;
        if (p->used + keep <= LBD_PAYLOAD_MAX) {
            BOUND(keep, 0x7ff);
            u32 off = p->used & PAYLOAD_MASK;
            /* a cut path keeps its end (the file name), as the seed's fullpath would */
            u32 from = (start + len - keep) & (LBD_PATH_BUF - 1);
            p->hdr.args[4] = 0;
            if (keep && bpf_probe_read_kernel(&p->payload[off], keep, &ps->buf[from]) == 0)
                arg__done(p, 4, keep, keep < len, 0);
        }
    }
    ring__emit(p, s, LBD_C_SCHED, 0);
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
    u32 tid = BPF_CORE_READ(task, pid);
    sched_exit__run(tid, task__group_dead(task), BPF_CORE_READ(task, exit_code));
    return 0;
}

#else /* bcc: classic tracepoints, their arguments from tracefs */

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    return sched_fork__run(parent, args->parent_pid, args->child_pid, 0, 0);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 pid = args->pid;
    u32 old_pid = args->old_pid;
    /* A non-leader thread that execs takes the leader's pid; its record, in task-local storage,
     * stays with it, and its own ppid entry (from its clone) goes: it sees no sched_process_exit. */
    if (old_pid != pid)
        map__delete(ppids, &old_pid);
    thread__invalidate();             /* new comm, maybe new credentials (setuid binary) */
    struct lbd_settings *s = settings__get();
    struct pending *p = sched__begin(s, LBD_NR_SCHED_EXEC);
    if (!p || !s)
        return 0;
    p->hdr.args[0] = pid;
    p->hdr.args[1] = old_pid;
    /* filename is a __data_loc string inside the tracepoint record (kernel memory). */
    u16 loc = args->data_loc_filename & 0xffff;
    arg__kstr(p, 2, (char *)args + loc, s->str_max);
    ring__emit(p, s, LBD_C_SCHED, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = args->pid;
#ifdef LBD_HAVE_GROUP_DEAD
    u32 group_dead = args->group_dead;
#else
    u32 group_dead = tid == (u32)(bpf_get_current_pid_tgid() >> 32);   /* leader exit: best guess */
#endif
    sched_exit__run(tid, group_dead, 0);
    return 0;
}

#endif
