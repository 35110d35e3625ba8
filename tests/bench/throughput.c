/* SPDX-License-Identifier: MIT */
/*
 * throughput — what one task costs in workerpool: how many empty tasks a pool
 * moves per second, how long one round trip takes, and how fast it carries
 * real payloads.
 *
 * Why: an empty task measures nothing but the library's own path (copy,
 * ring, dispatcher wake-up, two pipe writes, settle, wake the waiter), which
 * is what decides whether a task is cheap enough to hand to a worker at all.
 * The project's targets on a 2-core machine are >= 75000 empty tasks/s and a
 * p50 round trip <= 50 us; they are printed next to the figures, but this is
 * a measurement, not a test, so they never decide the exit status.  What
 * does: any task that did not succeed, because a benchmark that quietly
 * times failures measures nothing.
 *
 * Cases, all on one pool (2 workers, fork server start unless told):
 *   a. empty-task throughput with 1, 2 and 8 submitting threads: N tasks
 *      split between the threads, each submitting its share back to back and
 *      keeping the futures, then one wp_wait_all; timed from the first
 *      submit to the last settle.
 *   b. round-trip latency: submit one empty task, wait, release, repeat;
 *      N/10 samples (at most 20000) after a twentieth as many warm-up rounds.
 *   c. payload: 64 KiB argument echoed back as a 64 KiB result, one
 *      submitting thread keeping PAYLOAD_WINDOW tasks in flight; N/20 tasks.
 *
 * Usage: throughput [--fork] [-w WORKERS] [-n TASKS] [--quick]
 * tests/bench/run-throughput.sh runs this beside peer_processpool.py, the
 * same cases on Python's ProcessPoolExecutor, and compares them.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workerpool.h"

#define DEFAULT_TASKS      200000
#define QUICK_TASKS        20000
#define MAX_LATENCY_SAMPLES 20000
#define PAYLOAD_BYTES      (64 * 1024)
/* Enough in flight to keep both workers and both pipe directions busy,
   few enough that the arguments and results held stay small (2 x 2 MiB). */
#define PAYLOAD_WINDOW     32
#define TARGET_TASKS_PER_S 75000
#define TARGET_P50_US      50
/* Failed futures are counted, but only the first few are worth reading. */
#define FAILURES_SHOWN     5

struct config {
    unsigned workers;
    int start_method;
    size_t tasks;
};

/* Every task that did not succeed, from any thread. */
static atomic_ulong failures;

/* ------------------------------------------------------------ task code */

static int empty_task(const void *arg, size_t arg_len, wp_buf *result)
{
    (void)arg;
    (void)arg_len;
    (void)result;
    return 0;
}

static int echo_task(const void *arg, size_t arg_len, wp_buf *result)
{
    return wp_buf_append(result, arg, arg_len);
}

/* ------------------------------------------------------ shared helpers */

static void die(const char *what, int code)
{
    fprintf(stderr, "throughput: %s: %s\n", what,
            code < 0 ? wp_strerror(code) : strerror(code));
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double per_second(double amount, uint64_t ns)
{
    return ns > 0 ? amount * 1e9 / (double)ns : 0.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, permille = 500 for p50.  Integer
   arithmetic, and the same formula as peer_processpool.py, so that the two
   columns mean the same thing. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned permille)
{
    size_t rank = (n * permille + 999) / 1000;

    return sorted[rank > 0 ? rank - 1 : 0];
}

/* Sorts ns[] in place and prints one latency line. */
static void report_latency(const char *label, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    printf("%-10s  samples=%zu  p50_us=%.1f  p90_us=%.1f  p99_us=%.1f"
           "  max_us=%.1f  target_p50_us<=%d\n",
           label, n, percentile(ns, n, 500) / 1e3, percentile(ns, n, 900) / 1e3,
           percentile(ns, n, 990) / 1e3, ns[n - 1] / 1e3, TARGET_P50_US);
}

/* 1 if the (settled) future did not succeed; says why for the first few. */
static int future_failed(const wp_future *f)
{
    int err = wp_future_error(f);

    if (err == 0)
        return 0;
    if (atomic_fetch_add(&failures, 1) < FAILURES_SHOWN)
        fprintf(stderr, "throughput: task failed: %s (code %d): %s\n",
                wp_strerror(err), wp_future_code(f), wp_future_message(f));
    return 1;
}

static wp_future *submit_or_die(wp_pool *pool, wp_task_fn fn,
                                const void *arg, size_t len)
{
    wp_future *f = NULL;
    int rc = wp_submit(pool, fn, arg, len, NULL, &f);

    if (rc != 0)
        die("wp_submit", rc);
    return f;
}

static void wait_or_die(wp_future *f)
{
    int rc = wp_future_wait(f, -1);

    if (rc != 0)
        die("wp_future_wait", rc);
}

/* Waits for one future, counts it if it failed and lets it go. */
static void settle(wp_future *f)
{
    wait_or_die(f);
    future_failed(f);
    wp_future_release(f);
}

/* ------------------------------------------- a. empty-task throughput */

struct submitter {
    wp_pool *pool;
    pthread_barrier_t *start;
    size_t count;
    wp_future **futures;
    uint64_t first_submit_ns;
    uint64_t all_settled_ns;
};

/* Submits back to back and waits once at the end, so that the submit side
   measures the library's queue rather than our own round trips. */
static void *submit_share(void *arg)
{
    struct submitter *s = arg;
    size_t i;
    int rc;

    pthread_barrier_wait(s->start);
    s->first_submit_ns = now_ns();
    for (i = 0; i < s->count; i++)
        s->futures[i] = submit_or_die(s->pool, empty_task, NULL, 0);
    if (s->count > 0 && (rc = wp_wait_all(s->futures, s->count, -1)) != 0)
        die("wp_wait_all", rc);
    s->all_settled_ns = now_ns();
    for (i = 0; i < s->count; i++) {
        future_failed(s->futures[i]);
        wp_future_release(s->futures[i]);
    }
    return NULL;
}

static void run_throughput(wp_pool *pool, unsigned threads, size_t tasks)
{
    struct submitter *subs = calloc(threads, sizeof *subs);
    pthread_t *tids = calloc(threads, sizeof *tids);
    pthread_barrier_t start;
    uint64_t first = UINT64_MAX, last = 0;
    unsigned t;
    int rc;

    if (subs == NULL || tids == NULL)
        die("calloc", WP_ENOMEM);
    if ((rc = pthread_barrier_init(&start, NULL, threads)) != 0)
        die("pthread_barrier_init", rc);
    for (t = 0; t < threads; t++) {
        subs[t].pool = pool;
        subs[t].start = &start;
        subs[t].count = tasks / threads + (t < tasks % threads);
        subs[t].futures = calloc(subs[t].count + 1, sizeof *subs[t].futures);
        if (subs[t].futures == NULL)
            die("calloc", WP_ENOMEM);
        if ((rc = pthread_create(&tids[t], NULL, submit_share, &subs[t])) != 0)
            die("pthread_create", rc);
    }
    for (t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        if (subs[t].first_submit_ns < first)
            first = subs[t].first_submit_ns;
        if (subs[t].all_settled_ns > last)
            last = subs[t].all_settled_ns;
        free(subs[t].futures);
    }
    pthread_barrier_destroy(&start);
    printf("throughput  mode=submit  threads=%u  tasks=%zu  seconds=%.3f"
           "  tasks/s=%.0f  target>=%d\n",
           threads, tasks, (last - first) / 1e9,
           per_second((double)tasks, last - first), TARGET_TASKS_PER_S);
    free(subs);
    free(tids);
}

/* ------------------------------------------------ b. round-trip latency */

static void run_latency(wp_pool *pool, size_t warmup, size_t samples)
{
    uint64_t *ns = malloc(samples * sizeof *ns);
    size_t i;

    if (ns == NULL)
        die("malloc", WP_ENOMEM);
    for (i = 0; i < warmup + samples; i++) {
        uint64_t t0 = now_ns(), t1;
        wp_future *f = submit_or_die(pool, empty_task, NULL, 0);

        wait_or_die(f);
        t1 = now_ns();
        future_failed(f);
        wp_future_release(f);
        if (i >= warmup)
            ns[i - warmup] = t1 - t0;
    }
    report_latency("latency", ns, samples);
    free(ns);
}

/* ------------------------------------------------------------ c. payload */

/* Each argument carries its sequence number up front, so an echo that came
   back for the wrong task, or mangled, is caught, not timed. */
static void stamp(unsigned char *buf, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
}

static int echo_matches(const wp_future *f, const unsigned char *pattern,
                        uint64_t seq)
{
    size_t len = 0;
    const unsigned char *got = wp_future_result(f, &len);
    uint64_t got_seq;

    if (got == NULL || len != PAYLOAD_BYTES)
        return 0;
    memcpy(&got_seq, got, sizeof got_seq);
    return got_seq == seq &&
           memcmp(got + sizeof seq, pattern + sizeof seq, PAYLOAD_BYTES - sizeof seq) == 0;
}

static void collect_echo(wp_future *f, const unsigned char *pattern, uint64_t seq)
{
    wait_or_die(f);
    if (!future_failed(f) && !echo_matches(f, pattern, seq)) {
        fprintf(stderr, "throughput: echo of task %" PRIu64 " came back wrong\n", seq);
        atomic_fetch_add(&failures, 1);
    }
    wp_future_release(f);
}

static void run_payload(wp_pool *pool, size_t tasks)
{
    unsigned char *arg = malloc(PAYLOAD_BYTES), *pattern = malloc(PAYLOAD_BYTES);
    wp_future *window[PAYLOAD_WINDOW];
    uint64_t seq, t0, ns;
    size_t i;

    if (arg == NULL || pattern == NULL)
        die("malloc", WP_ENOMEM);
    for (i = 0; i < PAYLOAD_BYTES; i++)
        pattern[i] = (unsigned char)(i * 31 + 7);
    memcpy(arg, pattern, PAYLOAD_BYTES);
    t0 = now_ns();
    for (seq = 0; seq < tasks; seq++) {
        if (seq >= PAYLOAD_WINDOW)
            collect_echo(window[seq % PAYLOAD_WINDOW], pattern, seq - PAYLOAD_WINDOW);
        stamp(arg, seq);
        window[seq % PAYLOAD_WINDOW] = submit_or_die(pool, echo_task, arg, PAYLOAD_BYTES);
    }
    for (seq = tasks > PAYLOAD_WINDOW ? tasks - PAYLOAD_WINDOW : 0; seq < tasks; seq++)
        collect_echo(window[seq % PAYLOAD_WINDOW], pattern, seq);
    ns = now_ns() - t0;
    printf("payload     threads=1  bytes=%d  in_flight=%d  tasks=%zu  seconds=%.3f"
           "  tasks/s=%.0f  MB/s=%.1f\n",
           PAYLOAD_BYTES, PAYLOAD_WINDOW, tasks, ns / 1e9,
           per_second((double)tasks, ns),
           per_second(2.0 * PAYLOAD_BYTES * (double)tasks, ns) / 1e6);
    free(arg);
    free(pattern);
}

/* --------------------------------------------------------------- driver */

/* Shuts the pool down first so that the counters are final, then says
   whether every task the pool saw succeeded. */
static int report_stats(wp_pool *pool)
{
    wp_pool_stats st;
    int rc;

    if ((rc = wp_pool_shutdown(pool, -1)) != 0)
        die("wp_pool_shutdown", rc);
    if ((rc = wp_pool_get_stats(pool, &st)) != 0)
        die("wp_pool_get_stats", rc);
    printf("stats       submitted=%" PRIu64 "  succeeded=%" PRIu64
           "  failed=%" PRIu64 "  cancelled=%" PRIu64 "  timed_out=%" PRIu64
           "  crashed=%" PRIu64 "  retried=%" PRIu64 "  workers_started=%" PRIu64
           "  queued=%u  running=%u  workers_alive=%u\n",
           st.submitted, st.succeeded, st.failed, st.cancelled, st.timed_out,
           st.crashed, st.retried, st.workers_started, st.queued, st.running,
           st.workers_alive);
    return st.failed == 0 && st.cancelled == 0 && st.succeeded == st.submitted;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: throughput [--fork] [-w WORKERS] [-n TASKS] [--quick]\n"
                "  --fork      start workers with WP_START_FORK (default: fork server)\n"
                "  -w N        worker processes (default 2)\n"
                "  -n N        tasks per throughput case (default %d)\n"
                "  --quick     a short run for CI (-n %d unless -n is given)\n",
            DEFAULT_TASKS, QUICK_TASKS);
}

static size_t parse_count(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v == 0 || v > UINT32_MAX) {
        fprintf(stderr, "throughput: not a positive count: %s\n", s);
        usage(stderr);
        exit(2);
    }
    return (size_t)v;
}

static struct config parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "fork", no_argument, NULL, 'f' },
        { "quick", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    struct config c = { .workers = 2, .start_method = WP_START_FORKSERVER, .tasks = 0 };
    int quick = 0, opt;

    while ((opt = getopt_long(argc, argv, "w:n:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'f': c.start_method = WP_START_FORK; break;
        case 'q': quick = 1; break;
        case 'w': c.workers = (unsigned)parse_count(optarg); break;
        case 'n': c.tasks = parse_count(optarg); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        usage(stderr);
        exit(2);
    }
    if (c.tasks == 0)
        c.tasks = quick ? QUICK_TASKS : DEFAULT_TASKS;
    return c;
}

/* Latency and payload runs scale with N so that --quick shortens them too. */
static size_t latency_samples(size_t tasks)
{
    size_t n = tasks / 10;

    return n < 100 ? 100 : n > MAX_LATENCY_SAMPLES ? MAX_LATENCY_SAMPLES : n;
}

int main(int argc, char **argv)
{
    static const unsigned thread_counts[] = { 1, 2, 8 };
    struct config c = parse_args(argc, argv);
    wp_pool_options opts = { .workers = c.workers, .start_method = c.start_method };
    wp_pool *pool;
    size_t i, samples = latency_samples(c.tasks);
    int rc, clean;

    /* Each figure shows as soon as it is measured, even through a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Before any thread of ours exists: the fork server (or, with --fork,
       the dispatcher) forks from a single-threaded image. */
    if ((rc = wp_pool_create(&pool, &opts)) != 0)
        die("wp_pool_create", rc);
    printf("# workerpool %d.%d.%d  workers=%u  start=%s  cpus=%ld  tasks=%zu\n"
           "# payload MB/s counts argument and result bytes, 1 MB = 10^6 bytes\n",
           WP_VERSION_MAJOR, WP_VERSION_MINOR, WP_VERSION_PATCH, c.workers,
           c.start_method == WP_START_FORK ? "fork" : "forkserver",
           sysconf(_SC_NPROCESSORS_ONLN), c.tasks);

    /* Worker start-up is not what case (a) is about. */
    for (i = 0; i < 4 * (size_t)c.workers; i++)
        settle(submit_or_die(pool, empty_task, NULL, 0));

    for (i = 0; i < sizeof thread_counts / sizeof *thread_counts; i++)
        run_throughput(pool, thread_counts[i], c.tasks);
    run_latency(pool, samples / 20, samples);
    run_payload(pool, c.tasks / 20 > 100 ? c.tasks / 20 : 100);
    fflush(stdout);

    clean = report_stats(pool);
    wp_pool_destroy(pool);
    if (!clean || atomic_load(&failures) > 0) {
        fprintf(stderr, "throughput: tasks failed (%lu seen here, stats above);"
                " the figures are void\n", atomic_load(&failures));
        return 1;
    }
    return 0;
}
