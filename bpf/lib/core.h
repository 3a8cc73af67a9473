/* SPDX-License-Identifier: GPL-2.0
 *
 * core.h: the kernel structures lbd reads, as CO-RE definitions (libbpf loader only).
 *
 * Why a short list here rather than a vmlinux.h: every field below is relocated by name against
 * the running kernel's BTF when libbpf loads the object, so a definition needs only the fields lbd
 * reads, in any order; the build needs no BTF of its own (`make build` works on a host without
 * /sys/kernel/btf/vmlinux, and the object is the same on every build host); and a reviewer sees
 * in one page every kernel field the probe touches.  A field that may be missing on some kernel
 * is read behind bpf_core_field_exists().
 *
 * Integer types come from the uapi headers (linux-libc-dev); nothing else of the kernel is
 * included.
 */
#ifndef LBD_CORE_H
#define LBD_CORE_H

#include <linux/types.h>
#include <linux/bpf.h>

#define LBD_CORE_STRUCT __attribute__((preserve_access_index))

struct pt_regs {
    unsigned long r10, r9, r8, dx, si, di, orig_ax;
} LBD_CORE_STRUCT;

typedef struct { int counter; } atomic_t;
typedef struct { __u32 val; } kuid_t;

struct ns_common {
    unsigned int inum;
} LBD_CORE_STRUCT;

struct pid_namespace {
    struct ns_common ns;
} LBD_CORE_STRUCT;

struct mnt_namespace {
    struct ns_common ns;
} LBD_CORE_STRUCT;

struct nsproxy {
    struct mnt_namespace *mnt_ns;
} LBD_CORE_STRUCT;

struct upid {
    int nr;
    struct pid_namespace *ns;
} LBD_CORE_STRUCT;

struct pid {
    unsigned int level;
    struct upid numbers[1];
} LBD_CORE_STRUCT;

struct qstr {
    union {
        struct {
            __u32 hash;
            __u32 len;
        };
        __u64 hash_len;
    };
    const unsigned char *name;
} LBD_CORE_STRUCT;

struct dentry {
    struct dentry *d_parent;
    struct qstr d_name;
} LBD_CORE_STRUCT;

struct vfsmount {
    struct dentry *mnt_root;
} LBD_CORE_STRUCT;

/* fs/mount.h: the vfsmount is embedded in a struct mount (container_of) */
struct mount {
    struct mount *mnt_parent;
    struct dentry *mnt_mountpoint;
    struct vfsmount mnt;
} LBD_CORE_STRUCT;

struct path {
    struct vfsmount *mnt;
    struct dentry *dentry;
} LBD_CORE_STRUCT;

struct file {
    struct path f_path;
    void *private_data;
} LBD_CORE_STRUCT;

struct fdtable {
    unsigned int max_fds;
    struct file **fd;
} LBD_CORE_STRUCT;

struct files_struct {
    struct fdtable *fdt;
} LBD_CORE_STRUCT;

struct mm_struct {
    unsigned long arg_start, arg_end;
    struct file *exe_file;
} LBD_CORE_STRUCT;

struct signal_struct {
    atomic_t live;
} LBD_CORE_STRUCT;

struct thread_info {
    __u32 status;
} LBD_CORE_STRUCT;

struct task_struct {
    struct thread_info thread_info;
    int pid;
    int tgid;
    int exit_code;
    __u64 start_time;
    struct task_struct *real_parent;
    struct task_struct *group_leader;
    struct pid *thread_pid;
    struct nsproxy *nsproxy;
    struct mm_struct *mm;
    struct files_struct *files;
    struct signal_struct *signal;
    kuid_t loginuid;
} LBD_CORE_STRUCT;

struct linux_binprm {
    struct file *file;
    const char *filename;
} LBD_CORE_STRUCT;

/* Sockets (include/net/sock.h, include/linux/net.h, include/net/af_unix.h) */
struct in6_addr {
    __u8 s6_addr[16];
} LBD_CORE_STRUCT;

struct sock_common {
    __u32 skc_daddr;
    __u32 skc_rcv_saddr;
    __u16 skc_dport;
    __u16 skc_num;
    unsigned short skc_family;
    struct in6_addr skc_v6_daddr;
    struct in6_addr skc_v6_rcv_saddr;
} LBD_CORE_STRUCT;

struct sock {
    struct sock_common __sk_common;
    __u16 sk_type;
} LBD_CORE_STRUCT;

struct socket {
    struct file *file;
    struct sock *sk;
} LBD_CORE_STRUCT;

struct sockaddr_un {
    unsigned short sun_family;
    char sun_path[108];
} LBD_CORE_STRUCT;

struct unix_address {
    int len;
    struct sockaddr_un name[0];
} LBD_CORE_STRUCT;

struct unix_sock {
    struct sock sk;
    struct unix_address *addr;
    struct sock *peer;
} LBD_CORE_STRUCT;

#define LBD_TS_COMPAT 0x0002    /* x86 thread_info.status: the task is in a 32-bit syscall */

#endif /* LBD_CORE_H */
