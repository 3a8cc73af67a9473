/* SPDX-License-Identifier: Apache-2.0
 *
 * loadgen: makes syscalls in a tight loop, on one or more threads pinned one per CPU, and reports
 * its own rate.
 *
 *   loadgen [-c CPUS] [-t THREADS] [-C NAME] [-m getppid|orc] [-f PATH] [-s USEC]
 *           (-n COUNT | -d SECONDS)
 *
 *   -c CPUS     pin thread i to the i-th CPU of the list (e.g. "1" or "1,2,3" or "1-15"); the
 *               list wraps when there are more threads than CPUs.  Default: not pinned.
 *   -t THREADS  producer threads (default: one per CPU listed with -c, else 1)
 *   -C NAME     the name the process gives itself (prctl, before the threads start, so every
 *               thread has it); default "lbd-loadgen"
 *   -m MODE     getppid (default): one getppid per iteration;
 *               orc: openat(PATH) + read(64 bytes) + close per iteration (three syscalls)
 *   -f PATH     the file orc opens (default /etc/hostname)
 *   -s USEC     sleep USEC microseconds after each iteration (a slow marker, not a load)
 *   -n COUNT    iterations per thread
 *   -d SECONDS  run each thread for SECONDS instead
 *
 * It names itself NAME so a probe can select it with only_comms (the benchmarks pass a name
 * unique to their session, so that concurrent sessions on a shared machine do not capture each
 * other's load), starts the threads, which pin themselves and wait at a barrier, then runs the
 * loop on all of them at once and prints one line:
 *
 *   calls=N ns=T cpu_ns=C ns_per_call=X calls_per_s=R utime_ns=U stime_ns=S threads=K
 *   max_ns_per_call=M
 *
 * N counts syscalls (orc: three per iteration) over all threads; T is CLOCK_MONOTONIC from the
 * barrier to the last thread's end; C the sum of the threads' CPU time around their loops
 * (CLOCK_THREAD_CPUTIME_ID: exec and set-up are outside it); X = C / N, the figure to compare on
 * a shared machine (other processes holding a CPU do not inflate it: with a probe attached, X minus
 * the value without it is the probe's cost per syscall, since its programs run in the syscall, on
 * the thread's time); R = N / T, the whole process's rate; M the slowest thread's C / N; U and S
 * the process's rusage.  Syscalls are made with syscall(2), never a libc cache.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOADGEN_COMM "lbd-loadgen"
#define CLOCK_EVERY  1024        /* iterations between clock reads in -d mode (vDSO, no syscall) */
#define MAX_THREADS  1024

enum mode { MODE_GETPPID, MODE_ORC };

struct worker {
    pthread_t thread;
    int cpu;                    /* -1: not pinned */
    uint64_t calls;             /* syscalls made */
    uint64_t cpu_ns;
    uint64_t end_ns;
    int err;                    /* errno of a failed set-up or syscall, 0 when fine */
    const char *what;
};

static enum mode mode = MODE_GETPPID;
static const char *path = "/etc/hostname";
static uint64_t count;          /* iterations per thread (0: -d) */
static uint64_t duration_ns;
static long sleep_us;
static pthread_barrier_t barrier;
static uint64_t start_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-c CPUS] [-t THREADS] [-C NAME] [-m getppid|orc] [-f PATH] [-s USEC] "
                    "(-n COUNT | -d SECONDS)\n", argv0);
    exit(2);
}

/* One iteration; returns the syscalls made, or 0 with errno set when one failed. */
static inline unsigned iterate(void)
{
    if (mode == MODE_GETPPID) {
        syscall(SYS_getppid);
        return 1;
    }
    char buf[64];
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    syscall(SYS_read, fd, buf, sizeof(buf));
    syscall(SYS_close, fd);
    return 3;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) {
            w->err = errno;
            w->what = "sched_setaffinity";
        }
    }
    pthread_barrier_wait(&barrier);
    if (w->err)
        return NULL;
    uint64_t calls = 0, c0 = thread_cpu_ns(), t = 0;
    if (count) {
        for (uint64_t i = 0; i < count; i++) {
            unsigned k = iterate();
            if (!k) {
                w->err = errno;
                w->what = path;
                break;
            }
            calls += k;
            if (sleep_us)
                pause_us(sleep_us);
        }
        t = now_ns();
    } else {
        uint64_t stop = start_ns + duration_ns;
        for (;;) {
            for (int i = 0; i < CLOCK_EVERY; i++) {
                unsigned k = iterate();
                if (!k) {
                    w->err = errno;
                    w->what = path;
                    break;
                }
                calls += k;
                if (sleep_us) {
                    pause_us(sleep_us);
                    break;              /* a slow marker reads the clock every iteration */
                }
            }
            t = now_ns();
            if (w->err || t >= stop)
                break;
        }
    }
    w->cpu_ns = thread_cpu_ns() - c0;
    w->calls = calls;
    w->end_ns = t;
    return NULL;
}

/* "1,3,5-7" -> cpus[]; returns how many, or -1 when malformed. */
static int parse_cpus(const char *s, int *cpus, int max)
{
    int n = 0;
    char *end;
    while (*s) {
        long lo = strtol(s, &end, 10), hi;
        if (end == s || lo < 0)
            return -1;
        hi = lo;
        if (*end == '-') {
            s = end + 1;
            hi = strtol(s, &end, 10);
            if (end == s || hi < lo)
                return -1;
        }
        for (long c = lo; c <= hi; c++) {
            if (n >= max)
                return -1;
            cpus[n++] = (int)c;
        }
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return n;
}

int main(int argc, char **argv)
{
    static int cpus[MAX_THREADS];
    static struct worker workers[MAX_THREADS];
    int ncpus = 0, nthreads = 0;
    const char *name = LOADGEN_COMM;
    double seconds = 0;
    int opt;
    char *end;

    while ((opt = getopt(argc, argv, "c:t:C:m:f:s:n:d:")) != -1) {
        switch (opt) {
        case 'c':
            ncpus = parse_cpus(optarg, cpus, MAX_THREADS);
            if (ncpus <= 0)
                usage(argv[0]);
            break;
        case 't':
            nthreads = (int)strtol(optarg, &end, 10);
            if (*end || nthreads < 1 || nthreads > MAX_THREADS)
                usage(argv[0]);
            break;
        case 'C':
            if (!*optarg || strlen(optarg) > 15)      /* TASK_COMM_LEN - 1 */
                usage(argv[0]);
            name = optarg;
            break;
        case 'm':
            if (!strcmp(optarg, "getppid"))
                mode = MODE_GETPPID;
            else if (!strcmp(optarg, "orc"))
                mode = MODE_ORC;
            else
                usage(argv[0]);
            break;
        case 'f':
            path = optarg;
            break;
        case 's':
            sleep_us = strtol(optarg, &end, 10);
            if (*end || sleep_us < 0)
                usage(argv[0]);
            break;
        case 'n':
            count = strtoull(optarg, &end, 10);
            if (*end || !count)
                usage(argv[0]);
            break;
        case 'd':
            seconds = strtod(optarg, &end);
            if (*end || seconds <= 0)
                usage(argv[0]);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind != argc || !count == !(seconds > 0))
        usage(argv[0]);
    if (!nthreads)
        nthreads = ncpus ? ncpus : 1;
    duration_ns = (uint64_t)(seconds * 1e9);

    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
        perror("loadgen: prctl(PR_SET_NAME)");
        return 1;
    }
    if (mode == MODE_ORC && access(path, R_OK) != 0) {
        fprintf(stderr, "loadgen: -f %s: %s\n", path, strerror(errno));
        return 1;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        workers[i].cpu = ncpus ? cpus[i % ncpus] : -1;
        int err = pthread_create(&workers[i].thread, NULL, run, &workers[i]);
        if (err) {
            fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    start_ns = now_ns();            /* read by the threads after the barrier */
    pthread_barrier_wait(&barrier);

    uint64_t calls = 0, cpu = 0, last = start_ns;
    double worst = 0;
    int failed = 0;
    for (int i = 0; i < nthreads; i++) {
        struct worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        if (w->err) {
            fprintf(stderr, "loadgen: thread %d (cpu %d): %s: %s\n", i, w->cpu, w->what, strerror(w->err));
            failed = 1;
            continue;
        }
        calls += w->calls;
        cpu += w->cpu_ns;
        if (w->end_ns > last)
            last = w->end_ns;
        if (w->calls && (double)w->cpu_ns / (double)w->calls > worst)
            worst = (double)w->cpu_ns / (double)w->calls;
    }
    if (failed)
        return 1;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ns = last - start_ns;
    printf("calls=%llu ns=%llu cpu_ns=%llu ns_per_call=%.2f calls_per_s=%.0f utime_ns=%llu stime_ns=%llu "
           "threads=%d max_ns_per_call=%.2f\n",
           (unsigned long long)calls, (unsigned long long)ns, (unsigned long long)cpu,
           calls ? (double)cpu / (double)calls : 0.0,
           (double)calls * 1e9 / (double)(ns ? ns : 1),
           (unsigned long long)tv_ns(ru.ru_utime), (unsigned long long)tv_ns(ru.ru_stime),
           nthreads, worst);
    return 0;
}
