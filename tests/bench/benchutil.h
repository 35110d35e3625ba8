/* SPDX-License-Identifier: MIT */
/*
 * benchutil.h — what the small benchmarks (tiny, roundtrip, headofline,
 * queuemem, overload, isolate, mpi) share: the start of their main (options and
 * header), clocks, percentiles, CPU accounting, busy-waiting, a warm pool,
 * waits and outcome checks, and the output format.
 *
 * Every figure is printed twice: once in a line for people, and once as
 *     RESULT <key> <value> <unit>
 * for scripts (run-peers.sh reads those).  Benchmarks print figures; they
 * never pass or fail on timing.  They exit non-zero only when a task had a
 * wrong outcome, because a figure that timed failures measures nothing.
 */
#ifndef WP_BENCHUTIL_H
#define WP_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

#define BENCH_WORKERS 2 /* the worker count every comparison uses */

/* A macro's value as a string literal, for usage texts. */
#define BENCH_STR_(x) #x
#define BENCH_STR(x)  BENCH_STR_(x)

/* The program's name, for messages: set by bench_begin. */
extern const char *bench_name;

/* Prints "NAME: WHAT: why" (a WP_E* code if negative, an errno value if
   positive) and exits 2. */
_Noreturn void bench_die(const char *what, int code);

uint64_t bench_now_ns(void);

/* Busy-waits (no sleep) until us microseconds of wall time have passed. */
void bench_spin_us(uint64_t us);

/* CPU seconds (user + system) of this process and of every child it has
   reaped, grandchildren included when each parent in between reaped its
   own: RUSAGE_SELF + RUSAGE_CHILDREN. */
double bench_cpu_seconds(void);

/* Resident set size of this process, bytes, from /proc/self/statm. */
size_t bench_rss_bytes(void);

/* Sorts ns[0..n) (n > 0) ascending. */
void bench_sort_ns(uint64_t *ns, size_t n);

/* Nearest-rank percentile of sorted samples, permille = 500 for p50; the
   same formula as peer_processpool.py and throughput.c. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned permille);

/* The latency figures of one set of samples (nanoseconds), in µs. */
typedef struct bench_latency {
    double p50_us, p99_us, max_us;
} bench_latency;

/* Sorts ns[0..n) (n > 0), prints one line "LABEL samples=n p50_us=..
   p99_us=.. max_us=.." and the RESULT lines KEY_p50 / KEY_p99 / KEY_max. */
bench_latency bench_report_latency(const char *label, const char *key, uint64_t *ns, size_t n);

/* One machine-readable figure. */
void bench_result(const char *key, double value, const char *unit);

/* The empty task: no argument used, no result. */
int bench_empty_task(const void *arg, size_t arg_len, wp_buf *result);

/* Exits 1 with the reason if the settled future's outcome is not want. */
void bench_expect(const wp_future *f, int want);

/* A pool of opts (workers, start method...) whose workers have all run a
   task, so that start-up is never timed. */
wp_pool *bench_ready_pool(const wp_pool_options *opts);

/* The same for a pool made otherwise (wp_mpi_pool_create): a few tasks
   per worker, then returns once `workers` workers are alive. */
void bench_warm_pool(wp_pool *pool, unsigned workers);

/* Untimed: returns once `workers` workers of pool are alive; exits 2 if
   they are not within a generous time. */
void bench_wait_workers(wp_pool *pool, unsigned workers);

/* wp_wait_all(fs, n, -1); exits 2 if it fails. */
void bench_wait_all(wp_future *const *fs, size_t n);

/* bench_expect(fs[i], want), then wp_future_release(fs[i]), for each of
   fs[0..n). */
void bench_expect_release(wp_future **fs, size_t n, int want);

/* bench_result under the key key_fmt formats (printf), at most 127 bytes. */
void bench_resultf(double value, const char *unit, const char *key_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One command-line option: a flag (--name, sets *flag to 1) or a count
   (-letter N, 1 <= N <= limit, into *count).  Lists end with { 0 }. */
typedef struct bench_option {
    const char *name;  /* flag: long name */
    int        *flag;
    char        letter; /* count: short letter */
    size_t     *count;
    size_t      limit;
} bench_option;

/* Parses argv by opts alone (a benchmark that compares start methods
   itself): as bench_begin says, without --fork and --exec. */
void bench_parse_args(int argc, char **argv, const bench_option *opts, const char *usage_text);

/* What every benchmark's main does first: sets bench_name to name, parses
   argv by opts and --fork or --exec (which every benchmark takes: workers
   started with WP_START_FORK or WP_START_EXEC instead of the fork server),
   line-buffers stdout, and
   prints the start of the header line
   "# NAME: workerpool x.y.z  workers=2  start=..  cpus=.." (no newline).
   Returns the start method.  --help prints usage_text and exits 0; any
   other option, a bad count or an argument prints it to stderr and exits
   2. */
int bench_begin(const char *name, int argc, char **argv, const bench_option *opts,
                const char *usage_text);

#endif
