/* SPDX-License-Identifier: MIT */
/*
 * tiny — tiny-task throughput and CPU cost per task, the way a program that
 * streams many small tasks uses the pool: never more than a window of
 * tasks outstanding, each released as soon as it has finished.
 *
 * Cases, each on a fresh pool of 2 workers (fork server start unless
 * --fork), N empty tasks in all (the 8-byte task number as argument):
 *   submit T=1,4,8  T threads share the N tasks; each keeps up to WINDOW
 *                   (256) outstanding with wp_submit, watches them with
 *                   its own completion queue and takes the next finished
 *                   one (wp_cq_next) whenever the window is full.
 *   many            one thread, wp_submit_many with BATCH (1024) items per
 *                   call and no chunk size, at most two calls' worth
 *                   outstanding, collected through a completion queue.
 * tasks/s: from the first submit to the last task collected (workers are
 * up and warm before the clock starts).
 * CPU µs per task: user + system CPU of the whole pool's life, from before
 * wp_pool_create to after wp_pool_destroy, of this process (submitting
 * threads and dispatcher) and its reaped children, divided by N.  Under
 * the fork server the workers are grandchildren: the fork server reaps
 * them before it exits, and destroy reaps the fork server, so their CPU
 * reaches RUSAGE_CHILDREN all the same (check: --fork gives the figure
 * with the workers as direct children).  Start-up and the warm-up tasks
 * are included; they are a few ms in a run of seconds.
 *
 * Usage: tiny [--fork] [--quick] [-n TASKS] [-W WINDOW] [-b BATCH]
 * tests/bench/run-peers.sh runs it beside Python's ProcessPoolExecutor,
 * multiprocessing.Pool and the reference sketch pool, and prints ratios.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

#define DEFAULT_TASKS 200000
#define QUICK_TASKS   20000
#define MAX_TASKS     100000000
#define DEFAULT_WINDOW 256
#define DEFAULT_BATCH  1024
#define MAX_WINDOW     (1u << 20)
#define MANY_CALLS_OUTSTANDING 2
#define MAX_THREADS 8

static const unsigned thread_counts[] = { 1, 4, 8 };

typedef struct config {
    int start_method;
    size_t tasks, window, batch;
} config;

/* One submitting thread's share: task numbers [first, first + count). */
typedef struct share {
    wp_pool *pool;
    const config *cfg;
    pthread_barrier_t *start;
    uint64_t first, count;
    uint64_t t_start, t_end;
} share;

/* Takes the next finished task off cq and checks it. */
static void collect_one(wp_cq *cq)
{
    wp_future *f;
    int rc = wp_cq_next(cq, -1, &f);
    if (rc != 0)
        bench_die("wp_cq_next", rc);
    bench_expect(f, 0);
    wp_future_release(f);
}

/* Hands f to cq (which keeps its own reference) and lets ours go. */
static void watch(wp_cq *cq, wp_future *f)
{
    int rc = wp_cq_add(cq, f);
    if (rc != 0)
        bench_die("wp_cq_add", rc);
    wp_future_release(f);
}

static void *submit_share(void *arg)
{
    share *s = arg;
    wp_cq *cq;
    int rc = wp_cq_create(&cq);
    if (rc != 0)
        bench_die("wp_cq_create", rc);
    size_t outstanding = 0;
    pthread_barrier_wait(s->start);
    s->t_start = bench_now_ns();
    for (uint64_t i = s->first; i < s->first + s->count; i++) {
        if (outstanding == s->cfg->window) {
            collect_one(cq);
            outstanding--;
        }
        wp_future *f;
        if ((rc = wp_submit(s->pool, bench_empty_task, &i, sizeof i, NULL, &f)) != 0)
            bench_die("wp_submit", rc);
        watch(cq, f);
        outstanding++;
    }
    for (; outstanding > 0; outstanding--)
        collect_one(cq);
    s->t_end = bench_now_ns();
    wp_cq_destroy(cq);
    return NULL;
}

static void *submit_many_share(void *arg)
{
    share *s = arg;
    size_t batch = s->cfg->batch, limit = batch * MANY_CALLS_OUTSTANDING;
    uint64_t *values = malloc(batch * sizeof *values);
    wp_item *items = malloc(batch * sizeof *items);
    wp_future **fs = malloc(batch * sizeof *fs);
    wp_cq *cq;
    int rc = wp_cq_create(&cq);
    if (values == NULL || items == NULL || fs == NULL)
        bench_die("malloc", WP_ENOMEM);
    if (rc != 0)
        bench_die("wp_cq_create", rc);
    for (size_t j = 0; j < batch; j++)
        items[j] = (wp_item){ .data = &values[j], .len = sizeof values[j] };
    size_t outstanding = 0;
    pthread_barrier_wait(s->start);
    s->t_start = bench_now_ns();
    for (uint64_t i = s->first; i < s->first + s->count; i += batch) {
        size_t n = s->first + s->count - i < batch ? (size_t)(s->first + s->count - i) : batch;
        for (; outstanding + n > limit; outstanding--)
            collect_one(cq);
        for (size_t j = 0; j < n; j++)
            values[j] = i + j;
        if ((rc = wp_submit_many(s->pool, bench_empty_task, items, n, NULL, fs, NULL)) != 0)
            bench_die("wp_submit_many", rc);
        for (size_t j = 0; j < n; j++)
            watch(cq, fs[j]);
        outstanding += n;
    }
    for (; outstanding > 0; outstanding--)
        collect_one(cq);
    s->t_end = bench_now_ns();
    wp_cq_destroy(cq);
    free(values);
    free(items);
    free(fs);
    return NULL;
}

/* Runs one case on a fresh pool and prints its line and RESULT lines. */
static void run_case(const config *cfg, const char *mode, void *(*body)(void *), unsigned threads)
{
    double cpu0 = bench_cpu_seconds();
    wp_pool_options o = { .workers = BENCH_WORKERS, .start_method = cfg->start_method };
    wp_pool *pool = bench_ready_pool(&o);
    pthread_barrier_t start;
    share s[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    pthread_barrier_init(&start, NULL, threads);
    for (unsigned t = 0; t < threads; t++) {
        uint64_t first = cfg->tasks * t / threads, next = cfg->tasks * (t + 1) / threads;
        s[t] = (share){ .pool = pool, .cfg = cfg, .start = &start, .first = first,
                        .count = next - first };
        int rc = pthread_create(&th[t], NULL, body, &s[t]);
        if (rc != 0)
            bench_die("pthread_create", rc);
    }
    uint64_t t0 = UINT64_MAX, t1 = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        t0 = s[t].t_start < t0 ? s[t].t_start : t0;
        t1 = s[t].t_end > t1 ? s[t].t_end : t1;
    }
    pthread_barrier_destroy(&start);
    wp_pool_destroy(pool);
    double cpu = bench_cpu_seconds() - cpu0;

    double seconds = (double)(t1 - t0) / 1e9, rate = (double)cfg->tasks / seconds;
    double cpu_us = cpu * 1e6 / (double)cfg->tasks;
    printf("%-6s threads=%u  tasks=%zu  seconds=%.3f  tasks/s=%-8.0f  cpu_us/task=%.2f\n",
           mode, threads, cfg->tasks, seconds, rate, cpu_us);
    char key[64];
    snprintf(key, sizeof key, "tiny_%s_t%u_tasks_per_s", mode, threads);
    bench_result(key, rate, "1/s");
    snprintf(key, sizeof key, "tiny_%s_t%u_cpu_us_per_task", mode, threads);
    bench_result(key, cpu_us, "us");
}

static const char usage_text[] =
    "usage: tiny [--fork] [--quick] [-n TASKS] [-W WINDOW] [-b BATCH]\n"
    "  --fork    WP_START_FORK (default: the fork server)\n"
    "  --quick   -n " BENCH_STR(QUICK_TASKS) " unless -n is given (default " BENCH_STR(DEFAULT_TASKS) ")\n"
    "  -W N      tasks outstanding per submitting thread (default " BENCH_STR(DEFAULT_WINDOW) ")\n"
    "  -b N      items per wp_submit_many call (default " BENCH_STR(DEFAULT_BATCH) ")\n";

int main(int argc, char **argv)
{
    config cfg = { .tasks = 0, .window = DEFAULT_WINDOW, .batch = DEFAULT_BATCH };
    int quick = 0;
    const bench_option opts[] = {
        { .name = "quick", .flag = &quick },
        { .letter = 'n', .count = &cfg.tasks, .limit = MAX_TASKS },
        { .letter = 'W', .count = &cfg.window, .limit = MAX_WINDOW },
        { .letter = 'b', .count = &cfg.batch, .limit = MAX_WINDOW },
        { 0 },
    };
    cfg.start_method = bench_begin("tiny", argc, argv, opts, usage_text);
    if (cfg.tasks == 0)
        cfg.tasks = quick ? QUICK_TASKS : DEFAULT_TASKS;
    printf("  tasks=%zu  window=%zu  batch=%zu\n", cfg.tasks, cfg.window, cfg.batch);
    for (size_t i = 0; i < sizeof thread_counts / sizeof thread_counts[0]; i++)
        run_case(&cfg, "submit", submit_share, thread_counts[i]);
    run_case(&cfg, "many", submit_many_share, 1);
    return 0;
}
