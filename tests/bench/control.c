/* SPDX-License-Identifier: MIT */
/*
 * control — how fast the pool reacts when it has to step in (issue #3).
 *
 * Three latencies, each as median / p99 / max over many samples, for one
 * start method (default the fork server; --fork for WP_START_FORK):
 *
 *   deadline   a task that hangs, with timeout_ms = T, on an idle 1-worker
 *              pool: (time from submit to settled) - T.  The task starts
 *              within microseconds of the submit, so this is the time from
 *              the deadline to the settled future: kill, notice, settle.
 *   cancel     a hanging task seen WP_RUNNING, then wp_future_cancel(): time
 *              from the cancel call to the settled future.
 *   respawn    a task that dies of SIGSEGV, and an empty task queued behind
 *              it on a 1-worker pool: time from the crash being reported
 *              (its future settled) to the empty task's result, which needs
 *              a new worker forked, ready and running.  Crash to
 *              replacement ready, plus one round trip.
 *
 * A program that prints figures, not a test: nothing here passes or fails
 * on timing.  It exits non-zero only if an outcome is wrong.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workerpool.h"

static _Noreturn int hang(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    for (;;)
        pause();
}

static int segv(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}

static int empty(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    return 0;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *us, int n)
{
    qsort(us, (size_t)n, sizeof *us, by_value);
    printf("%-9s samples=%d  p50_us=%.0f  p99_us=%.0f  max_us=%.0f\n", what, n,
           us[n / 2], us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], us[n - 1]);
}

static void expect(wp_future *f, int error)
{
    if (wp_future_error(f) != error) {
        fprintf(stderr, "unexpected outcome: %s (%s), wanted %s\n",
                wp_strerror(wp_future_error(f)), wp_future_message(f), wp_strerror(error));
        exit(1);
    }
}

static wp_future *submit(wp_pool *p, wp_task_fn fn, int64_t timeout_ms)
{
    wp_task_options o = { .timeout_ms = timeout_ms };
    wp_future *f;
    if (wp_submit(p, fn, NULL, 0, &o, &f) != 0) {
        fprintf(stderr, "submit failed\n");
        exit(1);
    }
    return f;
}

enum { DEADLINE_MS = 20 };

/* The previous sample's worker was killed: wait until its replacement is
   ready, so the task starts at once. */
static void wait_worker_ready(wp_pool *p)
{
    wp_pool_stats st;
    do {
        sched_yield();
        wp_pool_get_stats(p, &st);
    } while (st.workers_alive == 0 || st.running > 0);
}

static double sample_deadline(wp_pool *p)
{
    wait_worker_ready(p);
    double t0 = now_us();
    wp_future *f = submit(p, hang, DEADLINE_MS);
    wp_future_wait(f, -1);
    double us = now_us() - t0 - DEADLINE_MS * 1000.0;
    expect(f, WP_ETIMEDOUT);
    wp_future_release(f);
    return us;
}

static double sample_cancel(wp_pool *p)
{
    wp_future *f = submit(p, hang, 0);
    while (wp_future_state(f) != WP_RUNNING)
        sched_yield(); /* the thing we wait for: it has reached a worker */
    double t0 = now_us();
    wp_future_cancel(f);
    wp_future_wait(f, -1);
    double us = now_us() - t0;
    expect(f, WP_ECANCELED);
    wp_future_release(f);
    return us;
}

static double sample_respawn(wp_pool *p)
{
    wp_future *crash = submit(p, segv, 0);
    wp_future *next = submit(p, empty, 0);
    wp_future_wait(crash, -1);
    double t0 = now_us();
    wp_future_wait(next, -1);
    double us = now_us() - t0;
    expect(crash, WP_ECRASHED);
    expect(next, 0);
    wp_future_release(crash);
    wp_future_release(next);
    return us;
}

/* Run one measurement n times on a fresh 1-worker pool, after the worker
   is up and warm. */
static void measure(const char *what, double (*sample)(wp_pool *), int n, int method)
{
    wp_pool *p;
    wp_pool_options o = { .workers = 1, .start_method = method };
    if (wp_pool_create(&p, &o) != 0) {
        fprintf(stderr, "cannot create pool\n");
        exit(1);
    }
    wp_future *warm = submit(p, empty, 0);
    wp_future_wait(warm, -1);
    wp_future_release(warm);
    double *us = malloc(sizeof *us * (size_t)n);
    if (us == NULL)
        exit(1);
    for (int i = 0; i < n; i++)
        us[i] = sample(p);
    report(what, us, n);
    free(us);
    wp_pool_destroy(p);
}

int main(int argc, char **argv)
{
    int method = WP_START_FORKSERVER, n = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fork") == 0)
            method = WP_START_FORK;
        else if (strcmp(argv[i], "--quick") == 0)
            n = 30;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: control [--fork] [--quick] [-n SAMPLES]\n");
            return 2;
        }
    }
    if (n < 1)
        n = 1;
    printf("# workerpool control latencies  start=%s  workers=1  samples=%d  deadline=%d ms\n",
           method == WP_START_FORK ? "fork" : "forkserver", n, DEADLINE_MS);
    measure("deadline", sample_deadline, n, method);
    measure("cancel", sample_cancel, n, method);
    measure("respawn", sample_respawn, n, method);
    return 0;
}
