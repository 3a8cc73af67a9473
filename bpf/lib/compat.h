/* SPDX-License-Identifier: GPL-2.0
 *
 * compat.h: what differs between lbd's two loaders, so that bpf/lbd.bpf.c is one program.
 *
 *   LBD_CORE (default): compiled ahead of time by clang (-target bpf -g -O2) into build/lbd.bpf.o
 *     and loaded by libbpf (lbd/_libbpf.pyx).  Kernel structures are read through CO-RE
 *     relocations against the running kernel's BTF (bpf/lib/core.h); maps are libbpf's BTF-defined
 *     maps; the programs are BTF tracepoints (tp_btf), whose arguments are typed pointers.
 *   LBD_BCC (-DLBD_BCC, set by lbd/loader/bcc.py): compiled at load time by bcc with whatever
 *     kernel headers the host has (MACHINE.md: maybe another kernel's), so no kernel structure is
 *     read beyond the syscall registers (ptrace ABI) and tracepoint arguments; the CO-RE-only
 *     context (argv and executable at exec, namespaces, login uid, sockets) is left empty and
 *     `lbd doctor` says so.
 *
 * The program bodies are shared; only the map declarations, map access, the program entry points
 * and the register reads go through the macros below.
 */
#ifndef LBD_COMPAT_H
#define LBD_COMPAT_H

/* x &= mask, in a way clang cannot fold away: the verifier must see the bound on the register it
 * checks (clang otherwise turns a min() followed by a mask into code whose bound it loses). */
#define BOUND(x, mask) asm volatile("%0 &= " #mask : "+r"(x))

#ifdef LBD_BCC
/* ---- bcc -------------------------------------------------------------------------------- */
#include <uapi/linux/ptrace.h>
#define LBD_BPF 1
#define LBD_HAVE_CORE 0

#define LBD_ARRAY(name, val, max)           BPF_ARRAY(name, val, max)
#define LBD_PERCPU_ARRAY(name, val, max)    BPF_PERCPU_ARRAY(name, val, max)
#define LBD_HASH(name, key, val, max)       BPF_HASH(name, key, val, max)
#define LBD_LRU_HASH(name, key, val, max)   BPF_TABLE("lru_hash", key, val, name, max)
#define LBD_LPM_TRIE(name, key, val, max)   BPF_F_TABLE("lpm_trie", key, val, name, max, BPF_F_NO_PREALLOC)
#define LBD_TASK_STORAGE(name, val)         BPF_TASK_STORAGE(name, val)
/* The per-CPU rings: an array of ring buffer maps indexed by CPU; user space creates the rings
 * (one per cpus_per_ring CPUs, each of ring_size bytes) and stores them.  bcc needs a named
 * template map for the inner type. */
#define LBD_RINGS(name, max)                BPF_RINGBUF_OUTPUT(name##_tmpl, 1); \
                                            BPF_ARRAY_OF_MAPS(name, #name "_tmpl", max)

/* bcc rewrites map.lookup(key) in the source text, which it cannot do inside a macro expansion or
 * an included file: the accessors are plain functions per map and operation, at the end of the map
 * declarations in bpf/lbd.bpf.c, and these macros only pick them by name. */
#define map__lookup(map, key)               map##__lookup(key)
#define map__update(map, key, val)          map##__update(key, val)
#define map__delete(map, key)               map##__delete(key)
#define map__task_storage(map, task, flags) map##__storage(task, flags)

/* x86_64 struct pt_regs is the ptrace register ABI (uapi asm/ptrace.h, user_regs_struct):
 * r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ... */
#define LBD_PT_REGS_R10_OFF     56
#define LBD_PT_REGS_ORIG_AX_OFF 120
struct lbd_x64_args { u64 r10, r9, r8, ax, cx, dx, si, di; };

static __always_inline void regs__args(void *regs, u64 *out)
{
    struct lbd_x64_args ra = {};
    bpf_probe_read_kernel(&ra, sizeof(ra), (char *)regs + LBD_PT_REGS_R10_OFF);
    out[0] = ra.di;
    out[1] = ra.si;
    out[2] = ra.dx;
    out[3] = ra.r10;
    out[4] = ra.r8;
    out[5] = ra.r9;
}

static __always_inline long regs__orig_ax(void *regs)
{
    u64 nr = -1;
    bpf_probe_read_kernel(&nr, sizeof(nr), (char *)regs + LBD_PT_REGS_ORIG_AX_OFF);
    return (long)nr;
}

#define LBD_SYS_ENTER()  RAW_TRACEPOINT_PROBE(sys_enter) { return sys_enter__run((void *)ctx->args[0], ctx->args[1]); }
#define LBD_SYS_EXIT()   RAW_TRACEPOINT_PROBE(sys_exit) { return sys_exit__run((void *)ctx->args[0], ctx->args[1]); }

#else
/* ---- libbpf, CO-RE ------------------------------------------------------------------------ */
#define LBD_BPF 1
#define LBD_HAVE_CORE 1
#include "core.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;

#define LBD_MAP_(type_, name_, key_, val_, max_, flags_)                                          \
    struct {                                                                                     \
        __uint(type, type_);                                                                     \
        __uint(max_entries, max_);                                                               \
        __type(key, key_);                                                                       \
        __type(value, val_);                                                                     \
        __uint(map_flags, flags_);                                                               \
    } name_ SEC(".maps")
#define LBD_ARRAY(name, val, max)           LBD_MAP_(BPF_MAP_TYPE_ARRAY, name, u32, val, max, 0)
#define LBD_PERCPU_ARRAY(name, val, max)    LBD_MAP_(BPF_MAP_TYPE_PERCPU_ARRAY, name, u32, val, max, 0)
#define LBD_HASH(name, key, val, max)       LBD_MAP_(BPF_MAP_TYPE_HASH, name, key, val, max, 0)
#define LBD_LRU_HASH(name, key, val, max)   LBD_MAP_(BPF_MAP_TYPE_LRU_HASH, name, key, val, max, 0)
#define LBD_LPM_TRIE(name, key, val, max)   LBD_MAP_(BPF_MAP_TYPE_LPM_TRIE, name, key, val, max, BPF_F_NO_PREALLOC)
#define LBD_TASK_STORAGE(name, val)                                                              \
    struct {                                                                                     \
        __uint(type, BPF_MAP_TYPE_TASK_STORAGE);                                                 \
        __uint(map_flags, BPF_F_NO_PREALLOC);                                                    \
        __type(key, int);                                                                        \
        __type(value, val);                                                                      \
    } name SEC(".maps")
/* The inner map's size is set by the loader (lbd/_libbpf.pyx) before load; the rings themselves
 * are created and stored by user space, one per cpus_per_ring CPUs. */
struct lbd_ring_tmpl {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
};
#define LBD_RINGS(name, max)                                                                     \
    struct {                                                                                     \
        __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                                                \
        __uint(max_entries, max);                                                                \
        __type(key, u32);                                                                        \
        __array(values, struct lbd_ring_tmpl);                                                   \
    } name SEC(".maps")

#define map__lookup(map, key)               bpf_map_lookup_elem(&(map), key)
#define map__update(map, key, val)          bpf_map_update_elem(&(map), key, val, BPF_ANY)
#define map__delete(map, key)               bpf_map_delete_elem(&(map), key)
#define map__task_storage(map, task, flags) bpf_task_storage_get(&(map), task, 0, flags)

/* BTF tracepoints: the syscall registers are a typed struct pt_regs (direct, relocated loads). */
static __always_inline void regs__args(struct pt_regs *regs, u64 *out)
{
    out[0] = regs->di;
    out[1] = regs->si;
    out[2] = regs->dx;
    out[3] = regs->r10;
    out[4] = regs->r8;
    out[5] = regs->r9;
}

static __always_inline long regs__orig_ax(struct pt_regs *regs)
{
    return (long)regs->orig_ax;
}

#define LBD_SYS_ENTER()  SEC("tp_btf/sys_enter") int BPF_PROG(sys_enter, struct pt_regs *regs, long id) \
                         { return sys_enter__run(regs, id); }
#define LBD_SYS_EXIT()   SEC("tp_btf/sys_exit") int BPF_PROG(sys_exit, struct pt_regs *regs, long ret) \
                         { return sys_exit__run(regs, ret); }

char LICENSE[] SEC("license") = "GPL";
#endif

#endif /* LBD_COMPAT_H */
