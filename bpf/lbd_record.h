/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_record.h: the one definition of everything the kernel side shares with user space.
 *
 * Read by bpf/lbd.bpf.c (compiled ahead of time into build/lbd.bpf.o for libbpf, or by bcc as the
 * fallback), by lbd/_decode.pyx (through lbd/_record.pxd), by lbd/probe.py (the map value layouts,
 * lbd/record.py) and by the Falco plugin.  The numpy dtype in lbd/record.py is checked against sizeof/offsetof of
 * these structs at import, so a change here that is not mirrored there fails loudly.
 *
 * Bump LBD_RECORD_VERSION on any change to the ring record (lbd_hdr, lbd_slot, the kinds, the
 * LBD_F_* flags).  lbd_desc and lbd_settings are private to the probe and lbd/probe.py, which are
 * always built together.
 */
#ifndef LBD_RECORD_H
#define LBD_RECORD_H

#ifndef LBD_BPF  /* defined by bpf/lbd.bpf.c: its compat header provides __u8 .. __s64 */
#include <linux/types.h>
#endif

#define LBD_RECORD_VERSION 2

#define LBD_MAX_ARGS      6
#define LBD_MAX_SYSCALLS  512      /* syscall numbers are < this (x86_64: 0..470) */
#define LBD_COMM_LEN      16
#define LBD_PAYLOAD_MAX   4096     /* payload bytes a record may carry (after the header) */
#define LBD_RECORD_MAX    (sizeof(struct lbd_hdr) + LBD_PAYLOAD_MAX)
#define LBD_RECORD_ALIGN  8        /* records sit 8-byte aligned in the ring */

/* Pseudo syscall numbers for the process-tree records of the sched tracepoints.  They are state
 * records: written for every task the drop filters keep (also outside only_pids / only_comms,
 * flagged LBD_F_STATE there), whatever the syscall selection.  "CO-RE" marks what only the
 * libbpf loader fills (0 or no payload under bcc). */
#define LBD_NR_SCHED_FORK 1000     /* arg0 parent tgid (the real parent: CLONE_PARENT's grandparent
                                      under CO-RE), arg1 child tid, arg2 forking thread's tid,
                                      arg3 child tgid (CO-RE), arg4 child start time, ns since
                                      boot (CO-RE); the header is the parent's */
#define LBD_NR_SCHED_EXEC 1001     /* arg0 pid, arg1 old pid (a non-leader thread's tid), arg2
                                      filename as given (LBD_K_PATH), arg3 argv of the new image
                                      from mm->arg_start..arg_end (LBD_K_STRARR, CO-RE), arg4 the
                                      executable's absolute path (LBD_K_PATH, CO-RE); the header
                                      (comm, uid, gid, ppid, namespaces) is the new image's */
#define LBD_NR_SCHED_EXIT 1002     /* arg0 pid (thread), arg1 1 when the whole process exited,
                                      arg2 exit code (wait status, CO-RE) */

/* Directions, as the seed prints them. */
#define LBD_DIR_ENTER '>'
#define LBD_DIR_EXIT  '<'

/* Argument kinds.  The syscall table (lbd/syscall_table.json) names them in lower case without
 * the prefix ("fd", "sockaddr", ...); lbd/record.py reads the numbers from this file.
 * Captured at enter unless marked "exit". */
#define LBD_K_NONE          0   /* no argument in this slot */
#define LBD_K_INT           1   /* signed integer (sign-extended from the C type's width) */
#define LBD_K_UINT          2   /* unsigned integer */
#define LBD_K_HEX           3   /* unsigned, shown in hex (masks without a name set, cookies) */
#define LBD_K_FD            4   /* file descriptor (int) */
#define LBD_K_DIRFD         5   /* directory fd or AT_FDCWD (-100) */
#define LBD_K_PID           6   /* process / thread id */
#define LBD_K_UID           7
#define LBD_K_GID           8
#define LBD_K_MODE          9   /* permission bits, shown in octal */
#define LBD_K_FLAGS        10   /* integer with symbolic names (the table names the flag set) */
#define LBD_K_PTR          11   /* plain user pointer: its value only */
#define LBD_K_STR          12   /* NUL-terminated user string: payload = bytes without the NUL */
#define LBD_K_PATH         13   /* like LBD_K_STR, a file-system path */
#define LBD_K_SOCKADDR     14   /* input struct sockaddr *; aux = index of its length argument;
                                   payload = the raw sockaddr bytes (user space decodes) */
#define LBD_K_BUF          15   /* input buffer; aux = index of its length argument;
                                   payload = its first bytes (open_params buffer_max) */
#define LBD_K_STRARR       16   /* NULL-terminated array of strings (argv, envp);
                                   payload = the strings, each followed by a NUL */
#define LBD_K_OUT_BUF      17   /* exit: output buffer; aux = index of its length argument;
                                   payload = first min(res, buffer_max) bytes the syscall wrote */
#define LBD_K_OUT_SOCKADDR 18   /* exit: output struct sockaddr *; aux = index of its
                                   socklen_t * argument; payload = raw sockaddr bytes */
#define LBD_K_OUT_FD2      19   /* exit: int[2] the syscall filled (pipe, pipe2, socketpair);
                                   payload = 8 bytes */
#define LBD_K_OUT_INT      20   /* exit: pointer to an int the syscall wrote (socklen_t *);
                                   payload = 4 bytes, the value after the call */
#define LBD_K_STRUCT       21   /* input struct read at enter: aux = index of a length argument
                                   (0xFF: none), size = most bytes (lbd_desc.size, 8-byte units);
                                   payload = min(length, size) bytes */
#define LBD_K_OUT_STRUCT   22   /* exit: output struct the syscall filled (on success), as STRUCT */
#define LBD_K_ARRAY32      23   /* array of 32-bit values (group lists): aux = index of its count
                                   argument; payload = min(count * 4, size) bytes (truncated flag
                                   when cut) */
#define LBD_K_IOVEC        24   /* struct iovec array: aux = index of its count argument; payload
                                   = the iovecs themselves (base, len: 16 bytes each), at most size */
#define LBD_K_MSGHDR       25   /* struct msghdr * (sendmsg; the first of sendmmsg's): payload =
                                   struct lbd_msg, then the name (min(namelen, 128) bytes), the
                                   iovecs (min(iovlen, 8) x 16 bytes), the control data (min(
                                   controllen, 64) bytes) */
#define LBD_K_OUT_MSGHDR   26   /* exit: as MSGHDR, read after the call (recvmsg: the peer's name
                                   and the control messages received; the first of recvmmsg's) */
#define LBD_K_COUNT        27

/* Kinds read at enter (inputs) and at exit (outputs, on success). */
#define lbd_kind_at_enter(k) (((k) >= LBD_K_STR && (k) <= LBD_K_STRARR) || (k) == LBD_K_STRUCT || \
                              (k) == LBD_K_ARRAY32 || (k) == LBD_K_IOVEC || (k) == LBD_K_MSGHDR)
#define lbd_kind_at_exit(k)  (((k) >= LBD_K_OUT_BUF && (k) <= LBD_K_OUT_INT) || (k) == LBD_K_OUT_STRUCT || \
                              (k) == LBD_K_OUT_MSGHDR)

/* lbd_desc.aux of a LBD_K_STRARR argument: an environment (execve's envp), read only when
 * settings.capture_env is on (secrets live there); else its slot is empty and flagged truncated. */
#define LBD_AUX_ENV      0xFE

/* lbd_hdr.flags */
#define LBD_F_TRUNC_SHIFT   0   /* bit (0 + i): argument i's payload was truncated */
#define LBD_F_FAULT_SHIFT   8   /* bit (8 + i): reading argument i from user memory failed */
#define LBD_F_NOENTER  (1u << 16)  /* exit seen without its enter: args unknown, ts = exit time */
#define LBD_F_NORETURN (1u << 17)  /* emitted at enter: the syscall does not return (exit, exit_group) */
#define LBD_F_NEWIMAGE (1u << 18)  /* execve/execveat exit seen in the new program image */
#define LBD_F_STATE    (1u << 19)  /* a state record: captured for the process and fd tables only
                                      (the syscall is not selected, or the task is outside
                                      only_pids / only_comms); not for output */
#define LBD_F_REREAD   (1u << 20)  /* an argument whose read faulted at enter was read at exit */

/* The start of a LBD_K_MSGHDR / LBD_K_OUT_MSGHDR payload: how many bytes of each part follow
 * (after this struct: the name, the iovecs, the control data, in that order), then the user's
 * struct msghdr as it was read (x86_64 layout: name ptr, namelen u32, iov ptr, iovlen u64,
 * control ptr, controllen u64, flags u32). */
struct lbd_msg {
    __u16 name_len;
    __u16 iov_n;
    __u16 control_len;
    __u16 pad;
    __u8  msghdr[56];
};

/* Where argument i's payload is: byte offset from the start of the record and length.
 * len == 0: no payload (the value in args[i] is all there is). */
struct lbd_slot {
    __u16 off;
    __u16 len;
};

/*
 * Fixed record header, 176 bytes.  Every field is naturally aligned, so the struct has no padding
 * (packed in effect, asserted below) and BPF code can use full-width loads and stores.
 *
 *   0        2        4        6    7    8                12
 *   +--------+--------+--------+----+----+-----------------+
 *   | version|  size  |   nr   |dir |narg|      flags      |
 *   +--------+--------+--------+----+----+-----------------+
 *  12: pid (tgid) | 16: tid | 20: ppid (0 unknown) | 24: uid | 28: gid
 *      (the task's when the syscall entered; for the syscalls that may change them (prctl, set*id,
 *      capset, setns, unshare: LBD_D_REFRESH) uid, gid and comm are read again at exit, so the
 *      record shows the identity after the call; ppid is the real parent, read anew per record
 *      under CO-RE, the parent at fork time under bcc)
 *  32: ts      u64  enter time, ns since boot (CLOCK_MONOTONIC, bpf_ktime_get_ns)
 *  40: latency u64  exit - enter, ns (0 for enter records)
 *  48: res     s64  return value (0 for enter records)
 *  56: comm    char[16]  thread name, NUL padded
 *  72: args    u64[6]    raw argument values (pointers as addresses)
 * 120: slot    lbd_slot[6] payload (off, len) per argument
 * 144: ets     u64  emit time, ns since boot: taken just before the record is written to its
 *                   CPU's ring, so each ring is in ets order.  THE MERGE KEY: the consumer merges
 *                   the rings by ets (ts is the enter time and records are written at exit).
 * 152: cgroup_id u64  the task's cgroup v2 id (the inode of its cgroup directory)
 * 160: pidns   u32  inode of the task's pid namespace (/proc/PID/ns/pid; 0 unknown: bcc)
 * 164: mntns   u32  inode of its mount namespace (/proc/PID/ns/mnt; 0 unknown: bcc)
 * 168: loginuid u32 audit login uid (0xffffffff unset; 0 unknown: bcc)
 * 172: xslot   lbd_slot  extra payload the kernel adds by syscall: the socket (struct lbd_sock)
 *                   of connect, bind (fd argument) and accept, accept4 (the new fd), CO-RE only
 * 176: payload ... (size - 176 bytes), then padding to LBD_RECORD_ALIGN in the ring
 */
struct lbd_hdr {
    __u16 version;      /* LBD_RECORD_VERSION */
    __u16 size;         /* header + payload bytes, without ring padding */
    __u16 nr;           /* syscall number or LBD_NR_SCHED_* */
    __u8  dir;          /* LBD_DIR_EXIT or LBD_DIR_ENTER */
    __u8  nargs;        /* argument slots in use */
    __u32 flags;        /* LBD_F_* */
    __u32 pid;
    __u32 tid;
    __u32 ppid;
    __u32 uid;
    __u32 gid;
    __u64 ts;
    __u64 latency;
    __s64 res;
    char  comm[LBD_COMM_LEN];
    __u64 args[LBD_MAX_ARGS];
    struct lbd_slot slot[LBD_MAX_ARGS];
    __u64 ets;
    __u64 cgroup_id;
    __u32 pidns;
    __u32 mntns;
    __u32 loginuid;
    struct lbd_slot xslot;
};

/* The socket behind an fd, read from the kernel's struct sock at exit (xslot of connect, bind,
 * accept, accept4).  inet: addresses in network order (IPv4 in the first 4 bytes), ports in host
 * order; local is the bound address and port after the call (a bind to port 0 shows the port the
 * kernel chose).  AF_UNIX: laddr/raddr unused, the payload continues with the path (sun_path
 * bytes, of the socket's own address or else its peer's: len = 40 + path bytes). */
struct lbd_sock {
    __u16 family;       /* AF_INET, AF_INET6, AF_UNIX */
    __u16 type;         /* SOCK_STREAM, SOCK_DGRAM, ... */
    __u16 lport;
    __u16 rport;
    __u8  laddr[16];
    __u8  raddr[16];
};

/* One entry per syscall number in the probe's descriptor map, filled from the syscall table. */
#define LBD_D_EXIT_KINDS  1        /* some argument is read at exit */
#define LBD_D_NORETURN    2        /* never returns (exit, exit_group): emitted at enter */
#define LBD_D_REFRESH     4        /* may change the thread's comm or credentials (prctl, set*id,
                                      capset, setns, unshare, execve): refresh the cached ones */
#define LBD_D_STATE       8        /* a state syscall (process and fd tables): captured whatever the
                                      selection when settings.state_on (flagged LBD_F_STATE when
                                      not selected) */
#define LBD_D_STATE_FAILED 16      /* its failures matter to the tables too (connect: EINPROGRESS) */
#define LBD_D_SOCK_ARG0   32       /* xslot: the socket of the fd in argument 0 (connect, bind) */
#define LBD_D_SOCK_RES    64       /* xslot: the socket of the returned fd (accept, accept4) */
#define LBD_D_STATS      128       /* count it in sc_stats (set on every syscall while
                                      settings.syscall_stats) */
struct lbd_desc {
    __u8 enabled;                  /* 0: not captured; else the selection generation (1..255), which
                                      user space changes each time the syscall is selected anew */
    __u8 nargs;
    __u8 kind[LBD_MAX_ARGS];       /* LBD_K_* */
    __u8 aux[LBD_MAX_ARGS];        /* length-argument index for SOCKADDR/BUF/OUT_*, STRUCT, ARRAY32,
                                      IOVEC kinds (0xFF: none) */
    __u8 flags;                    /* LBD_D_* */
    __u8 path_arg;                 /* settings.path_on: 1 + the argument (a path or string) that
                                      must start with one of this syscall's prefixes; 0: none */
    __u8 size[LBD_MAX_ARGS];       /* STRUCT, OUT_STRUCT, ARRAY32, IOVEC: most payload bytes / 8 */
    __u8 pad2[2];
};

/* Counters: one per-CPU array slot each; lbd/probe.py sums the CPUs (and the CPUs of each ring for
 * the per-ring figures). */
#define LBD_C_SEEN            0   /* syscalls entered */
#define LBD_C_EMITTED         1   /* records written to the ring (syscall records, state included) */
#define LBD_C_F_SYSCALL       2   /* filtered: syscall not selected */
#define LBD_C_F_DROP_MODE     3   /* filtered: drop_mode */
#define LBD_C_F_OWN           4   /* filtered: filter_own */
#define LBD_C_F_FALCO         5   /* filtered: filter_falco */
#define LBD_C_F_PID           6   /* filtered: filter_pids */
#define LBD_C_F_COMM          7   /* filtered: filter_comms */
#define LBD_C_F_FAILED        8   /* filtered: drop_failed (or failed_only: a success) */
#define LBD_C_DROP_RINGFULL   9   /* lost: the ring had no room */
#define LBD_C_TRUNCATED      10   /* arguments truncated */
#define LBD_C_READ_FAULT     11   /* reads of user memory that failed (at enter or at exit) */
#define LBD_C_NOENTER        12   /* exits without a recorded enter */
#define LBD_C_SCHED          13   /* process-tree records written */
#define LBD_C_F_ONLY         14   /* filtered: not in only_pids / only_tids / only_comms */
#define LBD_C_REREAD         15   /* arguments whose read faulted at enter and succeeded at exit */
#define LBD_C_STATE          16   /* state records written (LBD_F_STATE; part of emitted/sched) */
#define LBD_C_COMPAT         17   /* 32-bit (ia32) syscalls, not captured (CO-RE only tells) */
#define LBD_C_F_UID          18   /* filtered: filter_uids / only_uids */
#define LBD_C_F_PATH         19   /* filtered: a path argument outside its syscall's path_prefixes
                                     (a state syscall's record is kept for the tables, LBD_F_STATE) */
#define LBD_C_COUNT          24

/* Runtime settings, one-element array map, updated by user space without reloading. */
struct lbd_settings {
    __u32 drop_mode;
    __u32 drop_failed;
    __u32 filter_own_tgid;      /* 0: off; drops the collector's whole process (lbd run, Python) */
    __u32 filter_falco_tgid;    /* 0: off */
    __u32 str_max;              /* bytes per string argument, <= LBD_PAYLOAD_MAX / 2 */
    __u32 buf_max;              /* bytes per buffer argument */
    __u32 argv_max;             /* strings per LBD_K_STRARR argument */
    __u32 emit_enter;           /* 1: also write an enter record (dir '>') */
    __u32 filter_pids_on;       /* 1: drop the pids in the filter_pids map */
    __u32 filter_comms_on;      /* 1: drop the comms in the filter_comms map */
    __u32 only_pids_on;         /* 1: keep only the pids in the only_pids map (or only_tids) */
    __u32 only_comms_on;        /* 1: keep only the comms in the only_comms map */
    __u32 generation;           /* changed when capture resumes (leaving drop_mode): records
                                   armed under another generation are stale; 0 (the map's
                                   initial value): not written yet, nothing is captured */
    __u32 own_tids_on;          /* 1: drop the threads in the own_tids map (the Falco plugin's:
                                   inside Falco, filter_own is the threads running lbd's code,
                                   filter_falco the whole process) */
    __u32 filter_generation;    /* changed whenever the filters change: threads' cached verdicts
                                   from another generation are computed anew */
    __u32 state_on;             /* 1: state syscalls and process-tree records are written also
                                   when not selected or outside only_* (LBD_F_STATE) */
    __u64 wake_bytes;           /* each CPU forces a consumer wakeup after writing this much */
    __u32 only_tids_on;         /* 1: keep (besides only_pids) the threads in the only_tids map */
    __u32 follow;               /* 1: a process forked by a kept task (only_pids, only_tids) is
                                   kept too: its tgid joins only_pids (lbd run -- CMD) */
    __u32 capture_env;          /* 1: read LBD_K_ENVP arguments (execve's envp); else not */
    __u32 failed_only;          /* 1: drop syscalls that succeeded (res >= 0) */
    __u32 filter_uids_on;       /* 1: drop the uids in the filter_uids map */
    __u32 only_uids_on;         /* 1: keep only the uids in the only_uids map */
    __u32 syscall_stats;        /* 1: count every syscall (selected or not) in sc_stats */
    __u32 path_on;              /* 1: drop a syscall whose descriptor names a path_arg when that
                                   argument starts with none of its prefixes (the prefixes map) */
};

/* A key of the prefixes map (an LPM trie): the syscall number (big-endian, 16 bits) then the
 * prefix bytes; prefixlen counts bits (16 + 8 * prefix bytes).  The probe looks an argument up
 * with all of its bytes (at most LBD_PREFIX_MAX): any stored prefix of it matches. */
#define LBD_PREFIX_MAX    254
#define LBD_MAX_PREFIXES  64
struct lbd_prefix_key {
    __u32 prefixlen;
    __u8  data[2 + LBD_PREFIX_MAX];
};

/* Per-syscall statistics (settings.syscall_stats): one per-CPU array slot per syscall number. */
#define LBD_LAT_BUCKETS 32         /* hist[i]: latencies in [2^i, 2^(i+1)) ns (hist[0]: < 2 ns) */
struct lbd_sc_stat {
    __u64 count;
    __u64 errors;
    __u64 lat_sum;              /* ns */
    __u32 hist[LBD_LAT_BUCKETS];
};

#define LBD_ASSERT_OFFSET(s, f, o) _Static_assert(__builtin_offsetof(struct s, f) == (o), #s "." #f)
_Static_assert(sizeof(struct lbd_slot) == 4, "lbd_slot");
_Static_assert(sizeof(struct lbd_hdr) == 176, "lbd_hdr");
LBD_ASSERT_OFFSET(lbd_hdr, flags, 8);
LBD_ASSERT_OFFSET(lbd_hdr, pid, 12);
LBD_ASSERT_OFFSET(lbd_hdr, ts, 32);
LBD_ASSERT_OFFSET(lbd_hdr, res, 48);
LBD_ASSERT_OFFSET(lbd_hdr, comm, 56);
LBD_ASSERT_OFFSET(lbd_hdr, args, 72);
LBD_ASSERT_OFFSET(lbd_hdr, slot, 120);
LBD_ASSERT_OFFSET(lbd_hdr, ets, 144);
LBD_ASSERT_OFFSET(lbd_hdr, cgroup_id, 152);
LBD_ASSERT_OFFSET(lbd_hdr, pidns, 160);
LBD_ASSERT_OFFSET(lbd_hdr, loginuid, 168);
LBD_ASSERT_OFFSET(lbd_hdr, xslot, 172);
_Static_assert(sizeof(struct lbd_sock) == 40, "lbd_sock");
_Static_assert(sizeof(struct lbd_desc) == 24, "lbd_desc");
_Static_assert(sizeof(struct lbd_msg) == 64, "lbd_msg");
_Static_assert(sizeof(struct lbd_settings) == 104, "lbd_settings");
_Static_assert(sizeof(struct lbd_sc_stat) == 152, "lbd_sc_stat");
_Static_assert(sizeof(struct lbd_prefix_key) == 260, "lbd_prefix_key");

#endif /* LBD_RECORD_H */
