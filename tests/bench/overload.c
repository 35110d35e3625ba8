/* SPDX-License-Identifier: MIT */
/*
 * overload — a pool offered twice the work it can do, with and without
 * queue deadlines (issue #11).
 *
 * Tasks spin -t µs each on BENCH_WORKERS workers, so the pool can finish
 * workers × 10^6 / t tasks a second; one thread submits at -x times that
 * rate (open loop: at fixed times, whatever the pool does) for -d ms.  The
 * queue is large enough never to refuse a task, so without queue deadlines
 * every task waits behind all earlier ones and latency grows for as long
 * as the overload lasts.  With queue_timeout_ms = -q, a task not started
 * within q ms never runs and fails WP_EEXPIRED: the pool sheds the excess
 * and the tasks it does run keep a latency bounded by about q + t.
 *
 * For each mode it prints the tasks run and expired, the latency (submit
 * to settled, µs) of the tasks that ran, and for the expired ones the time
 * from submit to their failure (about q: they are failed when their
 * deadline comes, not when a worker frees up).
 *
 * A program that prints figures, not a test: it exits non-zero only if an
 * outcome is wrong (a task neither succeeded nor expired).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"

#define DEFAULT_TASK_US   1000
#define DEFAULT_DURATION  3000 /* ms of overload */
#define DEFAULT_QUEUE_MS  50
#define DEFAULT_FACTOR    2
#define QUEUE_CAPACITY    (1u << 20)

typedef struct sample {
    uint64_t submitted_ns;
    _Atomic uint64_t settled_ns; /* 0 until its done-callback ran */
} sample;

static int spin_task(const void *arg, size_t len, wp_buf *out)
{
    uint64_t us;
    (void)out;
    if (len != sizeof us)
        return 1;
    memcpy(&us, arg, sizeof us);
    bench_spin_us(us);
    return 0;
}

/* On the dispatcher thread, as the task settles. */
static void settled(wp_future *f, void *ctx)
{
    (void)f;
    atomic_store(&((sample *)ctx)->settled_ns, bench_now_ns());
}

static void sleep_until_ns(uint64_t at)
{
    struct timespec ts = { (time_t)(at / 1000000000u), (long)(at % 1000000000u) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

static void run(const char *mode, int64_t queue_ms, size_t task_us, size_t duration_ms,
                size_t factor, int start_method)
{
    wp_pool_options po = { .workers = BENCH_WORKERS, .start_method = start_method,
                           .queue_capacity = QUEUE_CAPACITY };
    wp_pool *p = bench_ready_pool(&po);
    double rate = (double)BENCH_WORKERS * 1e6 / (double)task_us * (double)factor; /* per second */
    size_t n = (size_t)(rate * (double)duration_ms / 1e3);
    uint64_t gap_ns = (uint64_t)(1e9 / rate);
    sample *s = calloc(n, sizeof *s);
    wp_future **f = calloc(n, sizeof *f);
    if (s == NULL || f == NULL)
        bench_die("calloc", WP_ENOMEM);
    uint64_t us = task_us;
    wp_task_options o = { .queue_timeout_ms = queue_ms };
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        sleep_until_ns(t0 + i * gap_ns);
        s[i].submitted_ns = bench_now_ns();
        int rc = wp_submit(p, spin_task, &us, sizeof us, &o, &f[i]);
        if (rc == 0)
            rc = wp_future_on_done(f[i], settled, &s[i]);
        if (rc < 0)
            bench_die("wp_submit", rc);
    }
    uint64_t *ran = malloc(n * sizeof *ran), *gone = malloc(n * sizeof *gone);
    if (ran == NULL || gone == NULL)
        bench_die("malloc", WP_ENOMEM);
    size_t nran = 0, ngone = 0;
    for (size_t i = 0; i < n; i++) {
        wp_future_wait(f[i], -1);
        int e = wp_future_error(f[i]);
        if (e != 0 && e != WP_EEXPIRED)
            bench_expect(f[i], 0);
        uint64_t at;
        while ((at = atomic_load(&s[i].settled_ns)) == 0)
            ; /* waiters wake before done-callbacks run: a moment */
        uint64_t lat = at - s[i].submitted_ns;
        if (e == 0)
            ran[nran++] = lat;
        else
            gone[ngone++] = lat;
        wp_future_release(f[i]);
    }
    uint64_t wall = bench_now_ns() - t0;
    wp_pool_stats st;
    wp_pool_get_stats(p, &st);
    printf("%s: offered=%zu (%.0f/s, %zux capacity) ran=%zu expired=%zu (stats: %llu) wall_ms=%.0f\n",
           mode, n, rate, factor, nran, ngone, (unsigned long long)st.expired, (double)wall / 1e6);
    char label[64], key[64];
    if (nran > 0) {
        snprintf(label, sizeof label, "%s ran: submit-to-result", mode);
        snprintf(key, sizeof key, "%s_ran_latency", mode);
        bench_report_latency(label, key, ran, nran);
    }
    if (ngone > 0) {
        snprintf(label, sizeof label, "%s expired: submit-to-failure", mode);
        snprintf(key, sizeof key, "%s_expired_latency", mode);
        bench_report_latency(label, key, gone, ngone);
    }
    snprintf(key, sizeof key, "%s_ran_per_s", mode);
    bench_result(key, (double)nran / ((double)wall / 1e9), "tasks/s");
    free(ran);
    free(gone);
    free(f);
    free(s);
    wp_pool_destroy(p);
}

int main(int argc, char **argv)
{
    size_t task_us = DEFAULT_TASK_US, duration = DEFAULT_DURATION, queue_ms = DEFAULT_QUEUE_MS;
    size_t factor = DEFAULT_FACTOR;
    const bench_option opts[] = {
        { .letter = 't', .count = &task_us, .limit = 1000000 },
        { .letter = 'd', .count = &duration, .limit = 600000 },
        { .letter = 'q', .count = &queue_ms, .limit = 600000 },
        { .letter = 'x', .count = &factor, .limit = 100 },
        { 0 },
    };
    int method = bench_begin(
        "overload", argc, argv, opts,
        "usage: overload [-t TASK_US] [-d DURATION_MS] [-q QUEUE_TIMEOUT_MS] "
        "[-x LOAD_FACTOR] [--fork]\n"
        "  defaults: -t " BENCH_STR(DEFAULT_TASK_US) " -d " BENCH_STR(DEFAULT_DURATION)
        " -q " BENCH_STR(DEFAULT_QUEUE_MS) " -x " BENCH_STR(DEFAULT_FACTOR) "\n");
    printf("  task_us=%zu duration_ms=%zu queue_timeout_ms=%zu\n", task_us, duration, queue_ms);
    run("no-deadline", 0, task_us, duration, factor, method);
    run("queue-deadline", (int64_t)queue_ms, task_us, duration, factor, method);
    return 0;
}
