/* SPDX-License-Identifier: MIT */
/*
 * benchutil.c — the helpers the small benchmarks share (see benchutil.h),
 * so that each benchmark file holds only what it measures.
 */
#define _GNU_SOURCE
#include "benchutil.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WARM_TASKS_PER_WORKER 4
#define WORKERS_UP_TIMEOUT_NS (20ull * 1000000000u) /* replacements of crashed workers too */
#define WORKERS_UP_POLL_NS    1000000 /* 1 ms between looks at the stats */
#define MAX_OPTIONS           8       /* per program, --fork and --help aside */
#define MAX_KEY               128     /* a RESULT key's bytes, its NUL included */

const char *bench_name = "bench";

_Noreturn void bench_die(const char *what, int code)
{
    fprintf(stderr, "%s: %s: %s\n", bench_name, what,
            code < 0 ? wp_strerror(code) : strerror(code));
    exit(2);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_spin_us(uint64_t us)
{
    uint64_t end = bench_now_ns() + us * 1000u;
    while (bench_now_ns() < end)
        ;
}

static double timeval_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

double bench_cpu_seconds(void)
{
    struct rusage self, children;
    if (getrusage(RUSAGE_SELF, &self) != 0 || getrusage(RUSAGE_CHILDREN, &children) != 0)
        bench_die("getrusage", errno);
    return timeval_seconds(self.ru_utime) + timeval_seconds(self.ru_stime) +
           timeval_seconds(children.ru_utime) + timeval_seconds(children.ru_stime);
}

size_t bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, resident;
    if (f == NULL)
        bench_die("/proc/self/statm", errno);
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (got != 2)
        bench_die("/proc/self/statm: unreadable", EINVAL);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_sort_ns(uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned permille)
{
    size_t rank = (n * permille + 999) / 1000;
    return sorted[rank > 0 ? rank - 1 : 0];
}

void bench_result(const char *key, double value, const char *unit)
{
    printf("RESULT %s %.3f %s\n", key, value, unit);
}

void bench_resultf(double value, const char *unit, const char *key_fmt, ...)
{
    char key[MAX_KEY];
    va_list ap;
    va_start(ap, key_fmt);
    vsnprintf(key, sizeof key, key_fmt, ap);
    va_end(ap);
    bench_result(key, value, unit);
}

bench_latency bench_report_latency(const char *label, const char *key, uint64_t *ns, size_t n)
{
    bench_sort_ns(ns, n);
    bench_latency l = {
        .p50_us = (double)bench_percentile(ns, n, 500) / 1e3,
        .p99_us = (double)bench_percentile(ns, n, 990) / 1e3,
        .max_us = (double)ns[n - 1] / 1e3,
    };
    printf("%-22s samples=%-6zu p50_us=%-9.1f p99_us=%-9.1f max_us=%.1f\n", label, n,
           l.p50_us, l.p99_us, l.max_us);
    bench_resultf(l.p50_us, "us", "%s_p50", key);
    bench_resultf(l.p99_us, "us", "%s_p99", key);
    bench_resultf(l.max_us, "us", "%s_max", key);
    return l;
}

int bench_empty_task(const void *arg, size_t arg_len, wp_buf *result)
{
    (void)arg;
    (void)arg_len;
    (void)result;
    return 0;
}

void bench_expect(const wp_future *f, int want)
{
    int got = wp_future_error(f);
    if (got != want) {
        fprintf(stderr, "%s: a task ended %s (code %d: %s), wanted %s; the figures are void\n",
                bench_name, wp_strerror(got), wp_future_code(f), wp_future_message(f),
                wp_strerror(want));
        exit(1);
    }
}

wp_pool *bench_ready_pool(const wp_pool_options *opts)
{
    wp_pool *pool;
    int rc = wp_pool_create(&pool, opts);
    if (rc != 0)
        bench_die("wp_pool_create", rc);
    bench_warm_pool(pool, opts->workers);
    return pool;
}

void bench_warm_pool(wp_pool *pool, unsigned workers)
{
    for (size_t i = 0; i < WARM_TASKS_PER_WORKER * (size_t)workers; i++) {
        wp_future *f;
        int rc = wp_submit(pool, bench_empty_task, NULL, 0, NULL, &f);
        if (rc != 0)
            bench_die("wp_submit (warm-up)", rc);
        wp_future_wait(f, -1);
        bench_expect_release(&f, 1, 0);
    }
    /* Tasks may all have gone to one worker: wait for the others too. */
    bench_wait_workers(pool, workers);
}

void bench_wait_workers(wp_pool *pool, unsigned workers)
{
    uint64_t deadline = bench_now_ns() + WORKERS_UP_TIMEOUT_NS;
    wp_pool_stats st;
    const struct timespec pause_ts = { 0, WORKERS_UP_POLL_NS };
    while (wp_pool_get_stats(pool, &st) == 0 && st.workers_alive < workers) {
        if (bench_now_ns() > deadline)
            bench_die("workers did not come up", WP_ESPAWN);
        nanosleep(&pause_ts, NULL);
    }
}

void bench_wait_all(wp_future *const *fs, size_t n)
{
    int rc = wp_wait_all(fs, n, -1);
    if (rc != 0)
        bench_die("wp_wait_all", rc);
}

void bench_expect_release(wp_future **fs, size_t n, int want)
{
    for (size_t i = 0; i < n; i++) {
        bench_expect(fs[i], want);
        wp_future_release(fs[i]);
    }
}

/* A count, or exit 2 naming the option. */
static size_t parse_count(char letter, const char *text, size_t limit)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || v == 0 || v > limit) {
        fprintf(stderr, "%s: -%c wants a count from 1 to %zu, not %s\n", bench_name, letter,
                limit, text);
        exit(2);
    }
    return (size_t)v;
}

/* Whether getopt_long's answer c is option i: a flag answers i + 1 (below
   any letter), a count its letter. */
static bool option_is(const bench_option *o, size_t i, int c)
{
    return o->name != NULL ? c == (int)i + 1 : c == o->letter;
}

/* Parses argv by opts (n of them, then a terminator); see bench_begin. */
void bench_parse_args(int argc, char **argv, const bench_option *opts, const char *usage_text)
{
    struct option longopts[MAX_OPTIONS + 3] = { { "help", no_argument, NULL, 'h' } };
    char shortopts[2 * MAX_OPTIONS + 2] = "h";
    size_t nlong = 1, nshort = 1, n = 0;
    for (; opts[n].name != NULL || opts[n].letter != 0; n++) {
        assert(n < MAX_OPTIONS + 1);
        if (opts[n].name != NULL)
            longopts[nlong++] = (struct option){ opts[n].name, no_argument, NULL, (int)n + 1 };
        else {
            shortopts[nshort++] = opts[n].letter;
            shortopts[nshort++] = ':';
        }
    }
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        }
        size_t i = 0;
        while (i < n && !option_is(&opts[i], i, c))
            i++;
        if (i == n) {
            fputs(usage_text, stderr);
            exit(2);
        }
        if (opts[i].name != NULL)
            *opts[i].flag = 1;
        else
            *opts[i].count = parse_count(opts[i].letter, optarg, opts[i].limit);
    }
    if (optind != argc) {
        fputs(usage_text, stderr);
        exit(2);
    }
}

int bench_begin(const char *name, int argc, char **argv, const bench_option *opts,
                const char *usage_text)
{
    bench_name = name;
    int fork = 0, exec = 0;
    bench_option all[MAX_OPTIONS + 3] = { { .name = "fork", .flag = &fork },
                                          { .name = "exec", .flag = &exec } };
    for (size_t i = 0; opts[i].name != NULL || opts[i].letter != 0; i++) {
        assert(i < MAX_OPTIONS);
        all[i + 2] = opts[i];
    }
    bench_parse_args(argc, argv, all, usage_text);
    int start_method = exec ? WP_START_EXEC : fork ? WP_START_FORK : WP_START_FORKSERVER;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# %s: workerpool %d.%d.%d  workers=%d  start=%s  cpus=%ld", name, WP_VERSION_MAJOR,
           WP_VERSION_MINOR, WP_VERSION_PATCH, BENCH_WORKERS,
           start_method == WP_START_FORK   ? "fork"
           : start_method == WP_START_EXEC ? "exec"
                                           : "forkserver",
           sysconf(_SC_NPROCESSORS_ONLN));
    return start_method;
}
