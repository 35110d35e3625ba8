/* SPDX-License-Identifier: MIT */
/*
 * spawn — what starting a worker costs under each start method, in one run:
 *
 *   start     wp_pool_create of a 1-worker pool, then one empty task until
 *             its result: a cold start, the worker's whole start included
 *             (fork server: its fork and the worker's; fork: the
 *             dispatcher's fork; exec: posix_spawn, exec, the load of this
 *             program and the worker's set-up), and the destroy after it;
 *   replace   on a warm 1-worker pool, a task that crashes (SIGSEGV), then
 *             an empty task until its result: crash detected, the worker
 *             reaped and replaced, the next task run.
 * Methods take turns, sample by sample, so load changes touch all alike.
 *
 * Usage: spawn [--quick] [-n SAMPLES]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"

#define DEFAULT_SAMPLES 200
#define QUICK_SAMPLES   30
#define MAX_SAMPLES     100000
#define METHODS         3

static const int method_of[METHODS] = { WP_START_FORKSERVER, WP_START_FORK, WP_START_EXEC };
static const char *const method_name[METHODS] = { "forkserver", "fork", "exec" };

static int crash_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    raise(SIGSEGV);
    return 0;
}

static void run_one(wp_pool *p, wp_task_fn fn, int want)
{
    wp_future *f = NULL;
    int rc = wp_submit(p, fn, NULL, 0, NULL, &f);
    if (rc != 0)
        bench_die("wp_submit", rc);
    if ((rc = wp_future_wait(f, -1)) != 0)
        bench_die("wp_future_wait", rc);
    bench_expect(f, want);
    wp_future_release(f);
}

static uint64_t cold_start(int method)
{
    wp_pool_options o = { .workers = 1, .start_method = method };
    uint64_t t0 = bench_now_ns();
    wp_pool *p = NULL;
    int rc = wp_pool_create(&p, &o);
    if (rc != 0)
        bench_die("wp_pool_create", rc);
    run_one(p, bench_empty_task, 0);
    uint64_t t1 = bench_now_ns();
    wp_pool_destroy(p);
    return t1 - t0;
}

static uint64_t replace(wp_pool *p)
{
    uint64_t t0 = bench_now_ns();
    run_one(p, crash_task, WP_ECRASHED);
    run_one(p, bench_empty_task, 0);
    return bench_now_ns() - t0;
}

int main(int argc, char **argv)
{
    bench_name = "spawn";
    int quick = 0;
    size_t n = 0;
    const bench_option opts[] = {
        { .name = "quick", .flag = &quick },
        { .letter = 'n', .count = &n, .limit = MAX_SAMPLES },
        { 0 },
    };
    bench_parse_args(argc, argv, opts, "usage: spawn [--quick] [-n SAMPLES]\n");
    if (n == 0)
        n = quick ? QUICK_SAMPLES : DEFAULT_SAMPLES;
    uint64_t *start[METHODS], *repl[METHODS];
    wp_pool *warm[METHODS];
    for (int m = 0; m < METHODS; m++) {
        start[m] = malloc(n * sizeof *start[m]);
        repl[m] = malloc(n * sizeof *repl[m]);
        if (start[m] == NULL || repl[m] == NULL)
            bench_die("malloc", WP_ENOMEM);
        warm[m] = bench_ready_pool(&(wp_pool_options){ .workers = 1, .start_method = method_of[m] });
    }
    printf("# spawn: workerpool %s  1-worker pools  methods=forkserver,fork,exec  samples=%zu\n",
           wp_version_string(), n);
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < METHODS; m++) {
            start[m][i] = cold_start(method_of[m]);
            repl[m][i] = replace(warm[m]);
        }
    for (int m = 0; m < METHODS; m++) {
        char label[64], key[64];
        snprintf(label, sizeof label, "start   %-10s", method_name[m]);
        snprintf(key, sizeof key, "start_%s", method_name[m]);
        bench_report_latency(label, key, start[m], n);
        snprintf(label, sizeof label, "replace %-10s", method_name[m]);
        snprintf(key, sizeof key, "replace_%s", method_name[m]);
        bench_report_latency(label, key, repl[m], n);
        wp_pool_destroy(warm[m]);
        free(start[m]);
        free(repl[m]);
    }
    return 0;
}
