/* SPDX-License-Identifier: MIT */
/*
 * queuemem — how many bytes of memory the library spends on each queued
 * task.
 *
 * A pool of 2 workers (fork server start unless --fork), each held busy by
 * a task that never returns, and a queue large enough for everything
 * (queue_capacity = N, rounded up by the pool).  Then N (1,000,000) tasks
 * with 8-byte arguments are submitted, keeping their futures; none can
 * run.  The figure is the growth of this process's resident set
 * (/proc/self/statm) from just before the first submit to just after the
 * last, divided by N, minus the 8 argument bytes: what the library holds
 * per task (task record, future, the argument's allocation overhead, the
 * ring slot as it is first touched).  The caller's array of future
 * pointers is allocated and touched before the first reading, so it is not
 * counted.  Tasks the dispatcher has already written into a busy worker's
 * pipe still count: their records stay in memory until they finish.
 * Afterwards wp_pool_shutdown(pool, 0) cancels everything, and every
 * future must say so.
 *
 * Usage: queuemem [--fork] [--many] [-n TASKS]
 *   --many  submit with wp_submit_many, BATCH items per call
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define DEFAULT_TASKS 1000000
#define MAX_TASKS     (1u << 30) /* the pool's largest queue_capacity */
#define BATCH         1024
#define HOLD_POLL_NS  1000000 /* 1 ms between looks at the holding tasks */
#define FILL_BYTE     0xa5
#define HOLD_TIMEOUT_NS (10ull * 1000000000u)

static _Noreturn int hold_task(const void *arg, size_t arg_len, wp_buf *result)
{
    (void)arg;
    (void)arg_len;
    (void)result;
    for (;;)
        pause();
}

/* Submits tasks [0, n) one call at a time, or BATCH per call. */
static void submit_all(wp_pool *pool, wp_future **fs, size_t n, int many)
{
    uint64_t values[BATCH];
    wp_item items[BATCH];
    for (size_t j = 0; j < BATCH; j++)
        items[j] = (wp_item){ .data = &values[j], .len = sizeof values[j] };
    for (size_t i = 0; i < n;) {
        size_t k = many ? (n - i < BATCH ? n - i : BATCH) : 1;
        for (size_t j = 0; j < k; j++)
            values[j] = i + j;
        int rc = many ? wp_submit_many(pool, bench_empty_task, items, k, NULL, &fs[i], NULL)
                      : wp_submit(pool, bench_empty_task, &values[0], sizeof values[0], NULL,
                                  &fs[i]);
        if (rc != 0)
            bench_die(many ? "wp_submit_many" : "wp_submit", rc);
        i += k;
    }
}

static const char usage_text[] =
    "usage: queuemem [--fork] [--many] [-n TASKS] (default -n " BENCH_STR(DEFAULT_TASKS) ")\n";

int main(int argc, char **argv)
{
    int many = 0;
    size_t tasks = DEFAULT_TASKS;
    const bench_option opts[] = {
        { .name = "many", .flag = &many },
        { .letter = 'n', .count = &tasks, .limit = MAX_TASKS },
        { 0 },
    };
    int start_method = bench_begin("queuemem", argc, argv, opts, usage_text);
    const char *mode = many ? "many" : "submit";
    printf("  tasks=%zu  arg=%zu bytes  mode=%s\n", tasks, sizeof(uint64_t), mode);

    wp_pool_options o = { .workers = BENCH_WORKERS, .start_method = start_method,
                          .queue_capacity = (unsigned)tasks };
    wp_pool *pool = bench_ready_pool(&o);
    wp_future *hold[BENCH_WORKERS];
    for (size_t i = 0; i < BENCH_WORKERS; i++) {
        int rc = wp_submit(pool, hold_task, NULL, 0, NULL, &hold[i]);
        if (rc != 0)
            bench_die("wp_submit (hold)", rc);
    }
    /* Both must start, one per worker; one left queued behind the other
       while a worker idles would be a pool bug, reported, not waited on. */
    const struct timespec poll_ts = { 0, HOLD_POLL_NS };
    uint64_t deadline = bench_now_ns() + HOLD_TIMEOUT_NS;
    for (size_t i = 0; i < BENCH_WORKERS; i++)
        while (wp_future_state(hold[i]) != WP_RUNNING) {
            if (bench_now_ns() > deadline) {
                fprintf(stderr, "queuemem: holding task %zu did not start within %llu s"
                                " although a worker was free\n",
                        i, HOLD_TIMEOUT_NS / 1000000000ull);
                return 1;
            }
            nanosleep(&poll_ts, NULL);
        }

    wp_future **fs = malloc(tasks * sizeof *fs);
    if (fs == NULL)
        bench_die("malloc", WP_ENOMEM);
    /* Touched, so resident before the first reading (not with zeros: the
       compiler may turn malloc + memset 0 into calloc, which touches
       nothing). */
    memset(fs, FILL_BYTE, tasks * sizeof *fs);
    size_t before = bench_rss_bytes();
    uint64_t t0 = bench_now_ns();
    submit_all(pool, fs, tasks, many);
    uint64_t t1 = bench_now_ns();
    size_t after = bench_rss_bytes();
    wp_pool_stats st;
    wp_pool_get_stats(pool, &st);

    double per_task = ((double)after - (double)before) / (double)tasks;
    double library = per_task - (double)sizeof(uint64_t);
    printf("rss before=%zu  after=%zu bytes  growth per task=%.1f  minus the argument=%.1f"
           " bytes  (queued=%u running=%u; submitting took %.3f s)\n",
           before, after, per_task, library, st.queued, st.running, (double)(t1 - t0) / 1e9);
    bench_resultf(library, "bytes", "queuemem_%s_bytes_per_task", mode);

    int rc = wp_pool_shutdown(pool, 0);
    if (rc != 0)
        bench_die("wp_pool_shutdown", rc);
    bench_expect_release(hold, BENCH_WORKERS, WP_ECANCELED);
    bench_expect_release(fs, tasks, WP_ECANCELED);
    wp_pool_destroy(pool);
    free(fs);
    return 0;
}
