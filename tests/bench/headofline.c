/* SPDX-License-Identifier: MIT */
/*
 * headofline — do short tasks wait behind a long one?
 *
 * On a warm pool of 2 workers (fork server start unless --fork): one task
 * that busy-waits LONG (2 s) is submitted first, then SHORTS (2000) tasks
 * that busy-wait SHORT_US (100 µs) each, right behind it from the same
 * thread.  Busy-waits, not sleeps, so every task really holds its worker.
 * One worker is free the whole time and could run every short task in
 * about SHORTS × SHORT_US = 0.2 s; a short task written behind the long
 * one into the busy worker's pipe and left there waits up to 2 s.
 *
 * Each task's latency is submit → settled, the settle time taken by a
 * done-callback on the dispatcher thread.  Printed: the short tasks' p50 /
 * p99 / max, how many settled only after the long task did, when the last
 * short task settled, and the total time (first submit to the last
 * settle, the long task included).
 *
 * Usage: headofline [--fork] [-l LONG_MS] [-s SHORTS] [-u SHORT_US]
 * tests/bench/run-peers.sh runs it beside Python's ProcessPoolExecutor
 * doing the same.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

#define DEFAULT_LONG_MS  2000
#define DEFAULT_SHORTS   2000
#define DEFAULT_SHORT_US 100
#define MAX_COUNT        10000000
#define US_PER_MS        1000u

/* A task's argument: how long to hold the worker. */
typedef struct spin_arg {
    uint64_t us;
} spin_arg;

static int spin_task(const void *arg, size_t arg_len, wp_buf *result)
{
    (void)result;
    spin_arg a;
    if (arg_len != sizeof a)
        return 1;
    memcpy(&a, arg, sizeof a);
    bench_spin_us(a.us);
    return 0;
}

/* One task's times; settled is written by its done-callback. */
typedef struct timing {
    uint64_t submitted;
    _Atomic uint64_t settled;
} timing;

static void on_settled(wp_future *f, void *ctx)
{
    (void)f;
    timing *t = ctx;
    atomic_store(&t->settled, bench_now_ns());
}

static wp_future *submit_timed(wp_pool *pool, uint64_t us, timing *t)
{
    spin_arg a = { .us = us };
    wp_future *f;
    t->submitted = bench_now_ns();
    int rc = wp_submit(pool, spin_task, &a, sizeof a, NULL, &f);
    if (rc != 0)
        bench_die("wp_submit", rc);
    if ((rc = wp_future_on_done(f, on_settled, t)) != 0)
        bench_die("wp_future_on_done", rc);
    return f;
}

static const char usage_text[] =
    "usage: headofline [--fork] [-l LONG_MS] [-s SHORTS] [-u SHORT_US]\n"
    "  defaults: -l " BENCH_STR(DEFAULT_LONG_MS) " -s " BENCH_STR(DEFAULT_SHORTS)
    " -u " BENCH_STR(DEFAULT_SHORT_US) "\n";

int main(int argc, char **argv)
{
    size_t long_ms = DEFAULT_LONG_MS, shorts = DEFAULT_SHORTS, short_us = DEFAULT_SHORT_US;
    const bench_option opts[] = {
        { .letter = 'l', .count = &long_ms, .limit = MAX_COUNT },
        { .letter = 's', .count = &shorts, .limit = MAX_COUNT },
        { .letter = 'u', .count = &short_us, .limit = MAX_COUNT },
        { 0 },
    };
    int start_method = bench_begin("headofline", argc, argv, opts, usage_text);
    printf("  long_ms=%zu  shorts=%zu  short_us=%zu (busy-waits)\n", long_ms, shorts, short_us);

    /* Room for every short task, so that submitting never blocks. */
    wp_pool_options o = { .workers = BENCH_WORKERS, .start_method = start_method,
                          .queue_capacity = (unsigned)shorts + 1 };
    wp_pool *pool = bench_ready_pool(&o);
    size_t n = shorts + 1; /* [0] is the long task */
    timing *times = calloc(n, sizeof *times);
    wp_future **fs = calloc(n, sizeof *fs);
    uint64_t *lat = calloc(shorts, sizeof *lat);
    if (times == NULL || fs == NULL || lat == NULL)
        bench_die("calloc", WP_ENOMEM);
    fs[0] = submit_timed(pool, (uint64_t)long_ms * US_PER_MS, &times[0]);
    for (size_t i = 1; i < n; i++)
        fs[i] = submit_timed(pool, short_us, &times[i]);
    bench_wait_all(fs, n);
    bench_expect_release(fs, n, 0);
    /* A waiter may wake before the done-callbacks have run; once the pool
       is destroyed every one of them has. */
    wp_pool_destroy(pool);

    uint64_t long_done = atomic_load(&times[0].settled), last_short = 0, last = long_done;
    size_t behind = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t settled = atomic_load(&times[i].settled);
        lat[i - 1] = settled - times[i].submitted;
        behind += settled > long_done;
        last_short = settled > last_short ? settled : last_short;
        last = settled > last ? settled : last;
    }
    bench_report_latency("short tasks", "headofline_short", lat, shorts);
    double shorts_s = (double)(last_short - times[0].submitted) / 1e9;
    double total_s = (double)(last - times[0].submitted) / 1e9;
    printf("short tasks settled after the long one: %zu of %zu\n", behind, shorts);
    printf("last short task settled at %.3f s, everything at %.3f s (long task %.3f s)\n",
           shorts_s, total_s, (double)(long_done - times[0].submitted) / 1e9);
    bench_result("headofline_shorts_behind_long", (double)behind, "tasks");
    bench_result("headofline_shorts_done", shorts_s, "s");
    bench_result("headofline_total", total_s, "s");
    free(times);
    free(fs);
    free(lat);
    return 0;
}
