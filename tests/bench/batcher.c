/* SPDX-License-Identifier: MIT */
/*
 * batcher — how many items per second a batcher moves, and what batching
 * buys over one pool task per item.
 *
 * Why: the batcher exists so that work too small to be worth a round trip
 * to a worker each (include/workerpool.h, "Batcher") can still run in workers.  With a
 * trivial batch function (it appends nothing and returns 0) what is left is
 * the batcher's own path per item: copy, pending list, the batcher thread,
 * packing into one task argument, unpacking the results and settling one
 * future per item on the dispatcher.  The project's target is >= 500000
 * items/s at batch size 64 on a 2-core machine; it is printed next to that
 * figure, but this is a measurement, not a test, so it never decides the
 * exit status.  What does: any item that did not succeed.
 *
 * Cases, each on a fresh pool of 2 workers (fork server start, workers up
 * before the clock starts) with 4 submitting threads sharing the items:
 *   batcher  batch sizes 1, 16, 64, 256 (max_wait_ms and max_in_flight at
 *            their defaults); N items each, 1000000 for sizes >= 16 and
 *            100000 for size 1.  Timed from the first submit until
 *            wp_batcher_shutdown(b, -1) returns, i.e. every item settled.
 *   submit   the same items as plain wp_submit tasks (one task per item),
 *            N/10 of them (N of the sizes >= 16); timed from the first
 *            submit until every task settled (wp_pool_shutdown(p, -1) when
 *            no futures are kept).
 * and each in two modes:
 *   mode=nofuture  submit with out = NULL (fire and forget); failures show
 *                  in the pool's stats (a failed batch task fails its
 *                  items);
 *   mode=futures   every thread keeps its futures, waits for them with one
 *                  wp_wait_all and checks each outcome.
 *
 * Usage: batcher [--quick] [-n ITEMS] (--quick divides the counts by 10;
 * -n sets the count of every batcher case, and N/10 for plain submits).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workerpool.h"

#define WORKERS            2
#define THREADS            4
#define DEFAULT_ITEMS      1000000 /* batch sizes >= 16 */
#define DEFAULT_ITEMS_B1   100000  /* batch size 1: one task per item anyway */
#define QUICK_DIVISOR      10
#define TARGET_BATCH       64
#define TARGET_ITEMS_PER_S 500000
#define FAILURES_SHOWN     5

static const size_t batch_sizes[] = { 1, 16, 64, 256 };

/* Every item that did not succeed, from any thread. */
static atomic_ulong failures;

/* ---------------------------------------------------------- worker code */

static int trivial_batch(const wp_item *items, size_t n, wp_buf *const *results)
{
    (void)items;
    (void)n;
    (void)results;
    return 0;
}

static int trivial_task(const void *arg, size_t arg_len, wp_buf *result)
{
    (void)arg;
    (void)arg_len;
    (void)result;
    return 0;
}

/* ------------------------------------------------------------- helpers */

static void die(const char *what, int code)
{
    fprintf(stderr, "batcher: %s: %s\n", what, code < 0 ? wp_strerror(code) : strerror(code));
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Count n failures (items, or pool tasks that carried items); says why for
   the first few. */
static void count_failures(unsigned long n, const char *why)
{
    if (n > 0 && atomic_fetch_add(&failures, n) < FAILURES_SHOWN)
        fprintf(stderr, "batcher: %lu failure(s): %s\n", n, why);
}

/* Count the settled future if it did not succeed. */
static void check_future(const wp_future *f)
{
    int err = wp_future_error(f);
    if (err != 0) {
        char why[256];
        snprintf(why, sizeof why, "%s (code %d): %s", wp_strerror(err), wp_future_code(f),
                 wp_future_message(f));
        count_failures(1, why);
    }
}

/* A pool whose workers are all up, so that start-up is not timed. */
static wp_pool *ready_pool(void)
{
    wp_pool *p = NULL;
    wp_pool_options o = { .workers = WORKERS };
    int rc = wp_pool_create(&p, &o);
    if (rc != 0)
        die("wp_pool_create", rc);
    wp_future *fs[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++)
        if ((rc = wp_submit(p, trivial_task, NULL, 0, NULL, &fs[i])) != 0)
            die("wp_submit (warm-up)", rc);
    if ((rc = wp_wait_all(fs, WORKERS, -1)) != 0)
        die("wp_wait_all (warm-up)", rc);
    for (unsigned i = 0; i < WORKERS; i++) {
        check_future(fs[i]);
        wp_future_release(fs[i]);
    }
    return p;
}

/* ---------------------------------------------------------- one case */

/* One item's way in: through the batcher, or as its own pool task. */
typedef struct target {
    wp_pool    *pool;
    wp_batcher *batcher; /* NULL: plain wp_submit */
} target;

static int submit_one(const target *t, uint64_t value, wp_future **out)
{
    if (t->batcher != NULL)
        return wp_batcher_submit(t->batcher, &value, sizeof value, out);
    return wp_submit(t->pool, trivial_task, &value, sizeof value, NULL, out);
}

typedef struct submitter {
    const target      *t;
    pthread_barrier_t *start;
    uint64_t           first, count; /* the item values this thread submits */
    bool               keep;         /* mode=futures */
} submitter;

static void *submitter_main(void *arg)
{
    submitter *s = arg;
    wp_future **fs = NULL;
    if (s->keep && (fs = calloc(s->count ? s->count : 1, sizeof *fs)) == NULL)
        die("calloc", WP_ENOMEM);
    pthread_barrier_wait(s->start);
    for (uint64_t i = 0; i < s->count; i++) {
        int rc = submit_one(s->t, s->first + i, s->keep ? &fs[i] : NULL);
        if (rc != 0)
            die("submit", rc);
    }
    if (s->keep && s->count > 0) {
        int rc = wp_wait_all(fs, (size_t)s->count, -1);
        if (rc != 0)
            die("wp_wait_all", rc);
        for (uint64_t i = 0; i < s->count; i++) {
            check_future(fs[i]);
            wp_future_release(fs[i]);
        }
    }
    free(fs);
    return NULL;
}

/* Run `items` items through a fresh pool (and a batcher of batch_size, or
   none when 0) from THREADS threads; print one line. */
static void run_case(size_t batch_size, uint64_t items, bool keep)
{
    target t = { .pool = ready_pool(), .batcher = NULL };
    if (batch_size > 0) {
        wp_batcher_options o = { .max_batch_size = batch_size };
        int rc = wp_batcher_create(&t.batcher, t.pool, trivial_batch, &o);
        if (rc != 0)
            die("wp_batcher_create", rc);
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS + 1);
    submitter s[THREADS];
    pthread_t th[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        uint64_t first = items * i / THREADS, next = items * (i + 1) / THREADS;
        s[i] = (submitter){ .t = &t, .start = &start, .first = first, .count = next - first,
                            .keep = keep };
        int rc = pthread_create(&th[i], NULL, submitter_main, &s[i]);
        if (rc != 0)
            die("pthread_create", rc);
    }
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&start);
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    /* The end: every item settled.  Without futures, only a shutdown
       (batcher, or the pool for plain tasks) says so. */
    if (t.batcher != NULL)
        wp_batcher_shutdown(t.batcher, -1);
    else if (!keep)
        wp_pool_shutdown(t.pool, -1);
    uint64_t t1 = now_ns();
    pthread_barrier_destroy(&start);

    wp_batcher_stats bs = { 0 };
    if (t.batcher != NULL)
        wp_batcher_get_stats(t.batcher, &bs);
    wp_batcher_destroy(t.batcher);
    wp_pool_shutdown(t.pool, -1); /* the pool's counters are final now */
    wp_pool_stats ps;
    wp_pool_get_stats(t.pool, &ps);
    wp_pool_destroy(t.pool);
    if (!keep) {
        char why[128];
        snprintf(why, sizeof why, "%" PRIu64 " pool task(s) failed or were cancelled",
                 ps.failed + ps.cancelled);
        /* A failed batch task fails all of its items. */
        count_failures((unsigned long)(ps.failed + ps.cancelled), why);
    }
    if (t.batcher != NULL && bs.items_batched != items) {
        char why[128];
        snprintf(why, sizeof why, "%" PRIu64 " of %" PRIu64 " items were batched",
                 bs.items_batched, items);
        count_failures((unsigned long)(items - bs.items_batched), why);
    }

    double seconds = (double)(t1 - t0) / 1e9;
    double rate = seconds > 0 ? (double)items / seconds : 0.0;
    char batch[32] = "-"; /* plain submits: one task per item, no batch */
    if (batch_size > 0)
        snprintf(batch, sizeof batch, "%zu", batch_size);
    printf("%-8s %-9s  batch=%-3s  threads=%d  items=%-7" PRIu64 "  seconds=%.3f"
           "  items/s=%.0f  per_item_us=%.3f",
           batch_size > 0 ? "batcher" : "submit", keep ? "futures" : "nofuture", batch,
           THREADS, items, seconds, rate, items > 0 ? seconds * 1e6 / (double)items : 0.0);
    if (t.batcher != NULL)
        printf("  mean_batch=%.1f  mean_wait_us=%.0f", bs.mean_batch_size, bs.mean_wait_us);
    if (batch_size == TARGET_BATCH)
        printf("  target>=%d (at batch %d): %s", TARGET_ITEMS_PER_S, TARGET_BATCH,
               rate >= TARGET_ITEMS_PER_S ? "met" : "NOT met");
    printf("\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *to)
{
    fprintf(to, "usage: batcher [--quick] [-n ITEMS]\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "quick", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t items = DEFAULT_ITEMS, items_b1 = DEFAULT_ITEMS_B1;
    bool quick = false, fixed = false;
    int c;
    while ((c = getopt_long(argc, argv, "n:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n == 0) {
                usage(stderr);
                return 2;
            }
            items = items_b1 = n;
            fixed = true;
            break;
        }
        case 'q':
            quick = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (quick && !fixed) {
        items /= QUICK_DIVISOR;
        items_b1 /= QUICK_DIVISOR;
    }

    for (int keep = 0; keep <= 1; keep++) {
        for (size_t i = 0; i < sizeof batch_sizes / sizeof batch_sizes[0]; i++)
            run_case(batch_sizes[i], batch_sizes[i] == 1 ? items_b1 : items, keep);
        run_case(0, items / 10 > 0 ? items / 10 : 1, keep);
    }
    unsigned long failed = atomic_load(&failures);
    if (failed > 0) {
        fprintf(stderr, "batcher: %lu failure(s): not every item succeeded\n", failed);
        return 1;
    }
    return 0;
}
