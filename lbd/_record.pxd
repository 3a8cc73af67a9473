# C declarations of bpf/lbd_record.h, the ring record layout (its one definition).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef extern from "lbd_record.h" nogil:
    enum:
        LBD_RECORD_VERSION
        LBD_MAX_ARGS
        LBD_MAX_SYSCALLS
        LBD_COMM_LEN
        LBD_PAYLOAD_MAX
        LBD_RECORD_ALIGN
        LBD_NR_SCHED_FORK
        LBD_NR_SCHED_EXEC
        LBD_NR_SCHED_EXIT

    struct lbd_slot:
        uint16_t off            # byte offset of the payload from the start of the record
        uint16_t len            # payload bytes; 0 = none

    struct lbd_hdr:
        uint16_t version
        uint16_t size           # header + payload bytes
        uint16_t nr
        uint8_t dir
        uint8_t nargs
        uint32_t flags
        uint32_t pid
        uint32_t tid
        uint32_t ppid
        uint32_t uid
        uint32_t gid
        uint64_t ts             # ns, CLOCK_MONOTONIC
        uint64_t latency
        int64_t res
        char comm[16]
        uint64_t args[6]
        lbd_slot slot[6]
        uint64_t ets            # emit time, ns since boot: the rings' merge key
        uint64_t cgroup_id
        uint32_t pidns
        uint32_t mntns
        uint32_t loginuid
        lbd_slot xslot          # extra payload (struct lbd_sock of connect / bind / accept*)

    struct lbd_desc:
        uint8_t enabled
        uint8_t nargs
        uint8_t kind[6]
        uint8_t aux[6]
        uint8_t flags
        uint8_t path_arg
        uint8_t size[6]
        uint8_t pad2[2]

    struct lbd_settings:
        uint32_t drop_mode
        uint32_t drop_failed
        uint32_t filter_own_tgid
        uint32_t filter_falco_tgid
        uint32_t str_max
        uint32_t buf_max
        uint32_t argv_max
        uint32_t emit_enter
        uint32_t filter_pids_on
        uint32_t filter_comms_on
        uint32_t only_pids_on
        uint32_t only_comms_on
        uint32_t generation
        uint32_t own_tids_on
        uint32_t filter_generation
        uint32_t state_on
        uint64_t wake_bytes
        uint32_t only_tids_on
        uint32_t follow
        uint32_t capture_env
        uint32_t failed_only
        uint32_t filter_uids_on
        uint32_t only_uids_on
        uint32_t syscall_stats
        uint32_t path_on

    struct lbd_sc_stat:
        uint64_t count
        uint64_t errors
        uint64_t lat_sum
        uint32_t hist[32]

    struct lbd_sock:
        uint16_t family
        uint16_t type
        uint16_t lport
        uint16_t rport
        uint8_t laddr[16]
        uint8_t raddr[16]
