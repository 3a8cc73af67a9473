/* SPDX-License-Identifier: Apache-2.0
 *
 * libbpf_consumer: libbpf's own ring buffer consumer (ring_buffer__new / __poll / __consume) with a
 * C callback, as a shared library the benchmarks drive through ctypes.  It is the reference a
 * hand-written C consumer would be: what lbd's Cython drain is compared against.
 *
 * The callback does the least a real consumer does: it reads the record's header (so the record's
 * first cache line is loaded, as any consumer must), counts records and bytes, and keeps a checksum
 * of the syscall numbers so nothing can be optimised away.  libbpf releases each record's ring
 * space right after the callback returns.
 *
 * One consumer reads every ring of the probe (one per cpus_per_ring CPUs): lbdc_open_many() adds
 * each ring fd to one libbpf ring_buffer manager (ring_buffer__new for the first,
 * ring_buffer__add for the others), whose epoll covers them all; ring_buffer__consume drains the
 * rings one after the other, each in its own order (libbpf does not merge them by time).
 *
 * Lifetime: a consumer is valid from lbdc_open_many() to lbdc_close(); the map fds must stay open
 * that long (they belong to the caller: lbd.probe.Probe.ring_fds).  Calls are not
 * thread-safe; ctypes releases the GIL around each of them, so lbdc_run() may block a thread.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <bpf/libbpf.h>

#include "lbd_record.h"

struct lbdc {
    struct ring_buffer *rb;
    uint64_t records;           /* records seen by the callback since lbdc_open() */
    uint64_t bytes;             /* their sizes (without the ring's 8-byte headers and padding) */
    uint64_t nr_sum;            /* sum of lbd_hdr.nr: a checksum that uses every record */
    uint64_t cpu_ns;            /* thread CPU time spent inside lbdc_run() and lbdc_drain() */
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int lbdc__sample(void *ctx, void *data, size_t size)
{
    struct lbdc *c = ctx;
    const struct lbd_hdr *h = data;
    c->records++;
    c->bytes += size;
    if (size >= sizeof(*h))
        c->nr_sum += h->nr;
    return 0;
}

/* A consumer of the n BPF ring buffers behind map_fds, or NULL (errno set). */
struct lbdc *lbdc_open_many(const int *map_fds, int n)
{
    if (n < 1) {
        errno = EINVAL;
        return NULL;
    }
    struct lbdc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->rb = ring_buffer__new(map_fds[0], lbdc__sample, c, NULL);
    if (!c->rb) {
        free(c);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        int err = ring_buffer__add(c->rb, map_fds[i], lbdc__sample, c);
        if (err) {
            ring_buffer__free(c->rb);
            free(c);
            errno = -err;
            return NULL;
        }
    }
    return c;
}

/* A consumer of one ring. */
struct lbdc *lbdc_open(int map_fd)
{
    return lbdc_open_many(&map_fd, 1);
}

/* Consume what is ready, repeatedly, until the ring is empty.  Returns the records consumed
 * (negative: libbpf's error). */
int64_t lbdc_drain(struct lbdc *c)
{
    uint64_t t0 = thread_cpu_ns(), before = c->records;
    int n;
    do {
        n = ring_buffer__consume(c->rb);
    } while (n > 0);
    c->cpu_ns += thread_cpu_ns() - t0;
    return n < 0 ? n : (int64_t)(c->records - before);
}

/* The usual libbpf loop: ring_buffer__poll(timeout_ms) until *stop is non-zero, then drain what is
 * left.  Returns the records consumed (negative: libbpf's error). */
int64_t lbdc_run(struct lbdc *c, int timeout_ms, const volatile int *stop)
{
    uint64_t t0 = thread_cpu_ns(), before = c->records;
    int err = 0;
    while (!*stop) {
        err = ring_buffer__poll(c->rb, timeout_ms);
        if (err < 0 && err != -4 /* -EINTR */)
            break;
        err = 0;
    }
    c->cpu_ns += thread_cpu_ns() - t0;
    if (err < 0)
        return err;
    int64_t rest = lbdc_drain(c);
    if (rest < 0)
        return rest;
    return (int64_t)(c->records - before);
}

uint64_t lbdc_records(const struct lbdc *c) { return c->records; }
uint64_t lbdc_bytes(const struct lbdc *c) { return c->bytes; }
uint64_t lbdc_nr_sum(const struct lbdc *c) { return c->nr_sum; }
uint64_t lbdc_cpu_ns(const struct lbdc *c) { return c->cpu_ns; }

void lbdc_close(struct lbdc *c)
{
    if (!c)
        return;
    ring_buffer__free(c->rb);
    free(c);
}
