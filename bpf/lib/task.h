/* SPDX-License-Identifier: GPL-2.0
 *
 * task.h: process context read from the kernel with CO-RE (libbpf loader only; under bcc these
 * return "unknown" and the record fields stay 0).
 *
 * Layered as read -> extract -> store: task__*() read one value of a task, path__build() and
 * sock__read() extract a composite value into a buffer, and the callers in lbd.bpf.c store it in
 * the record.  Every pointer chase goes through BPF_CORE_READ (bpf_probe_read_kernel), so a
 * pointer that is NULL or gone reads as 0 instead of failing the program.
 */
#ifndef LBD_TASK_H
#define LBD_TASK_H

#if LBD_HAVE_CORE

static __always_inline struct task_struct *task__current(void)
{
    return (struct task_struct *)bpf_get_current_task_btf();
}

/* The real parent's tgid: reparenting (to init or a subreaper) shows at once.  t is the trusted
 * pointer bpf_get_current_task_btf() gives: two direct (relocated) loads, no helper call (this
 * runs for every captured record). */
static __always_inline u32 task__ppid(struct task_struct *t)
{
    return t->real_parent->tgid;
}

/* Inode of the task's pid namespace as /proc/PID/ns/pid shows it (its active one, not
 * pid_for_children): the namespace of its struct pid at the pid's own level. */
static __always_inline u32 task__pidns(struct task_struct *t)
{
    struct pid *pid = BPF_CORE_READ(t, thread_pid);
    if (!pid)
        return 0;
    unsigned int level = BPF_CORE_READ(pid, level);
    struct upid up = {};
    bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]);
    return BPF_CORE_READ(up.ns, ns.inum);
}

static __always_inline u32 task__mntns(struct task_struct *t)
{
    return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
}

static __always_inline u32 task__loginuid(struct task_struct *t)
{
    if (!bpf_core_field_exists(t->loginuid))
        return 0xffffffff;                  /* kernel without CONFIG_AUDIT: never set */
    return BPF_CORE_READ(t, loginuid.val);
}

/* The task is in a 32-bit (ia32) syscall: its number and registers are not the x86_64 table's. */
static __always_inline int task__in_compat(struct task_struct *t)
{
    if (!bpf_core_field_exists(t->thread_info.status))
        return 0;
    return t->thread_info.status & LBD_TS_COMPAT;    /* a direct load, as task__ppid() */
}

/* The whole process exits with this task (its thread group's live count reached 0 in do_exit()
 * before the tracepoint). */
static __always_inline u32 task__group_dead(struct task_struct *t)
{
    return BPF_CORE_READ(t, signal, live.counter) == 0;
}

/*
 * path__build(): the absolute path of `path`, walking its dentries up to the root and crossing
 * mount points (fs/d_path.c's prepend_path() without the locks): at most LBD_PATH_DEPTH
 * components, each cut at 255 bytes.  Written backwards ending at buf[LBD_PATH_BUF - 1] (a NUL);
 * returns the offset where it starts, so the path is buf[off .. LBD_PATH_BUF - 1).  An unlinked
 * file or a lazily unmounted tree gives the path as it was.  buf is 2 * LBD_PATH_BUF bytes so that
 * every masked write stays in bounds for the verifier.
 */
#define LBD_PATH_BUF   4096
#define LBD_PATH_DEPTH 40

static __always_inline u32 path__build(const struct path *path, char *buf)
{
    struct dentry *dentry = BPF_CORE_READ(path, dentry);
    struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
    struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
    u32 off = LBD_PATH_BUF - 1;
    buf[off] = 0;
    for (int i = 0; i < LBD_PATH_DEPTH; i++) {
        struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
        struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
        if (dentry == root || dentry == parent) {
            if (dentry != root)
                break;                                  /* a root that is no mount's: done */
            struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
            if (up == mnt || !up)
                break;                                  /* the namespace's root */
            dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
            mnt = up;
            vfsmnt = &up->mnt;
            continue;
        }
        u32 len = BPF_CORE_READ(dentry, d_name.len);
        const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
        if (len > 255)
            len = 255;
        if (off < len + 2)
            break;                                      /* full: keep the tail we have */
        off -= len + 1;
        off &= LBD_PATH_BUF - 1;
        buf[off] = '/';
        bpf_probe_read_kernel(&buf[(off + 1) & (LBD_PATH_BUF - 1)], len & 255, name);
        dentry = parent;
    }
    if (off == LBD_PATH_BUF - 1) {                      /* nothing above: the root itself */
        off--;
        buf[off & (LBD_PATH_BUF - 1)] = '/';
    }
    return off & (LBD_PATH_BUF - 1);
}

/* The file behind fd in the current task's fd table, or NULL. */
static __always_inline struct file *task__fd_file(struct task_struct *t, long fd)
{
    if (fd < 0)
        return 0;
    struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
    if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
        return 0;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    bpf_core_read(&f, sizeof(f), &fds[fd & 0xfffff]);
    return f;
}

/* The socket of file f into *out (and an AF_UNIX path into path[108]); returns the bytes of the
 * payload (40, or 40 + path bytes for AF_UNIX), 0 when f is not a socket. */
static __always_inline u32 sock__read(struct file *f, struct lbd_sock *out, char *path)
{
    struct socket *sock = BPF_CORE_READ(f, private_data);
    if (!sock || BPF_CORE_READ(sock, file) != f)    /* not a socket's file */
        return 0;
    struct sock *sk = BPF_CORE_READ(sock, sk);
    if (!sk)
        return 0;
    u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    out->family = family;
    out->type = BPF_CORE_READ(sk, sk_type);
    if (family == 2 /* AF_INET */) {
        u32 la = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        u32 ra = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(out->laddr, &la, 4);
        __builtin_memcpy(out->raddr, &ra, 4);
    } else if (family == 10 /* AF_INET6 */) {
        if (bpf_core_field_exists(sk->__sk_common.skc_v6_rcv_saddr)) {
            BPF_CORE_READ_INTO(&out->laddr, sk, __sk_common.skc_v6_rcv_saddr);
            BPF_CORE_READ_INTO(&out->raddr, sk, __sk_common.skc_v6_daddr);
        }
    } else if (family == 1 /* AF_UNIX */) {
        struct unix_sock *us = (struct unix_sock *)sk;
        struct unix_address *addr = BPF_CORE_READ(us, addr);
        if (!addr) {
            struct unix_sock *peer = (struct unix_sock *)BPF_CORE_READ(us, peer);
            if (peer)
                addr = BPF_CORE_READ(peer, addr);
        }
        if (!addr)
            return sizeof(*out);
        int alen = BPF_CORE_READ(addr, len);
        u32 plen = alen > 2 ? alen - 2 : 0;             /* sun_path bytes (abstract: leading 0) */
        if (plen > 108)
            plen = 108;
        BOUND(plen, 127);
        if (plen)
            bpf_probe_read_kernel(path, plen, &addr->name[0].sun_path);
        return sizeof(*out) + plen;
    } else {
        return sizeof(*out);
    }
    out->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
    out->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
    return sizeof(*out);
}

#endif /* LBD_HAVE_CORE */
#endif /* LBD_TASK_H */
