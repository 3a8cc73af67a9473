/* SPDX-License-Identifier: Apache-2.0
 *
 * loadgen: makes one cheap syscall (getppid) in a tight loop on one CPU and reports its own rate.
 *
 *   loadgen [-c CPU] [-C NAME] (-n COUNT | -d SECONDS)
 *
 * It names itself NAME (prctl; default "lbd-loadgen") so a probe can select it with only_comms
 * (the benchmarks pass a name unique to their session, so that concurrent sessions on a shared
 * machine do not capture each other's load), pins itself to CPU (default: none), then makes COUNT
 * calls (or calls for SECONDS) and prints one line:
 *
 *   calls=N ns=T cpu_ns=C ns_per_call=X calls_per_s=R utime_ns=U stime_ns=S
 *
 * T is CLOCK_MONOTONIC and C the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), both around the loop
 * only (exec and set-up are outside it); U and S are its rusage.  C does not grow while other
 * processes hold the CPU, so C / N is the figure to compare on a shared machine: with a probe on
 * raw_syscalls attached, C / N minus the value without it is the probe's cost per syscall (its
 * programs run in the syscall, on this thread's time).  The syscall is made with syscall(2),
 * never a libc cache.
 */
#define _GNU_SOURCE
#include <errno.h>
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
#define CLOCK_EVERY  4096        /* calls between clock reads in -d mode (vDSO, no syscall) */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
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
    fprintf(stderr, "usage: %s [-c CPU] [-C NAME] (-n COUNT | -d SECONDS)\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    long cpu = -1;
    const char *name = LOADGEN_COMM;
    uint64_t count = 0;
    double seconds = 0;
    int opt;
    char *end;

    while ((opt = getopt(argc, argv, "c:C:n:d:")) != -1) {
        switch (opt) {
        case 'c':
            cpu = strtol(optarg, &end, 10);
            if (*end || cpu < 0)
                usage(argv[0]);
            break;
        case 'C':
            if (!*optarg || strlen(optarg) > 15)      /* TASK_COMM_LEN - 1 */
                usage(argv[0]);
            name = optarg;
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
    if (!count == !(seconds > 0))
        usage(argv[0]);

    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
        perror("loadgen: prctl(PR_SET_NAME)");
        return 1;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) {
            fprintf(stderr, "loadgen: sched_setaffinity(cpu %ld): %s\n", cpu, strerror(errno));
            return 1;
        }
    }

    uint64_t calls = 0;
    uint64_t c0 = cpu_ns(), t0 = now_ns(), t1;
    if (count) {
        for (; calls < count; calls++)
            syscall(SYS_getppid);
        t1 = now_ns();
    } else {
        uint64_t stop = t0 + (uint64_t)(seconds * 1e9);
        for (;;) {
            for (int k = 0; k < CLOCK_EVERY; k++)
                syscall(SYS_getppid);
            calls += CLOCK_EVERY;
            t1 = now_ns();
            if (t1 >= stop)
                break;
        }
    }

    uint64_t c1 = cpu_ns();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ns = t1 - t0;
    printf("calls=%llu ns=%llu cpu_ns=%llu ns_per_call=%.2f calls_per_s=%.0f utime_ns=%llu stime_ns=%llu\n",
           (unsigned long long)calls, (unsigned long long)ns, (unsigned long long)(c1 - c0),
           (double)ns / (double)calls,
           (double)calls * 1e9 / (double)(ns ? ns : 1),
           (unsigned long long)tv_ns(ru.ru_utime), (unsigned long long)tv_ns(ru.ru_stime));
    return 0;
}
