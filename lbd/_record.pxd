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
