/* SPDX-License-Identifier: MIT */
/*
 * isolate — what poison-item isolation costs (wp_batcher_options.isolate;
 * docs/ARCHITECTURE.md, "Poison-item isolation"): one item that kills its
 * batch, in a batch of 64, against the same batch without it.
 *
 * On a warm pool of 2 workers (fork server start unless --fork), a batcher
 * of max_batch_size 64 (max_in_flight: its default, the 2 workers) runs
 * rounds of one batch of 64 items each — submitted, then waited for with
 * wp_wait_all — in four cases:
 *   clean        isolate on, no poison item: the baseline;
 *   crash        isolate on, one item on which the batch function dies of
 *                SIGSEGV, at another place each round: it alone fails, the
 *                63 others get their results;
 *   crash-whole  isolate off, the same poison item: the whole batch fails
 *                (what a crash costs without isolation);
 *   hang         isolate on, one item on which the batch function hangs,
 *                with a task timeout of -t ms: it alone times out.
 * Per case: the wall time of a round (first submit to the last item
 * settled) as p50 / p99 / max / mean, the batches sent per round, and the
 * worker processes started per round (replacements of those the poison
 * killed).  Before each round the pool is waited for until all its workers
 * are up again (untimed), so a round pays for the replacements of its own
 * crashes, as far as it has to wait for them.
 *
 * Every outcome is checked; an item with the wrong outcome or result makes
 * the program exit 1 (a figure that timed failures would measure nothing).
 *
 * Usage: isolate [--fork] [-r ROUNDS] [-H HANG_ROUNDS] [-t TIMEOUT_MS]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

#define BATCH               64
#define DEFAULT_ROUNDS      50
#define DEFAULT_HANG_ROUNDS 5
#define DEFAULT_TIMEOUT_MS  100
#define MAX_COUNT           100000
#define LONG_WAIT_MS        60000     /* a batch leaves when full, never on time */
#define POISON_STRIDE       29        /* odd: the poison visits every place of 64 */

enum { CLEAN, CRASH, HANG }; /* what an item does */

typedef struct bench_item {
    uint32_t value;
    uint32_t poison; /* CLEAN, CRASH or HANG */
} bench_item;

static uint64_t result_of(uint32_t v)
{
    return (uint64_t)v * v + 1;
}

/* ----------------------------------------------------------- worker code */

static int poison_batch(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        bench_item it;
        if (items[i].len != sizeof it)
            return 1;
        memcpy(&it, items[i].data, sizeof it);
        if (it.poison == CRASH) {
            signal(SIGSEGV, SIG_DFL); /* a plain death, also under a sanitizer */
            raise(SIGSEGV);
        }
        while (it.poison == HANG)
            pause();
        uint64_t r = result_of(it.value);
        if (wp_buf_append(results[i], &r, sizeof r) != 0)
            return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- a case */

typedef struct bench_case {
    const char *name;     /* for people and for the RESULT keys */
    unsigned    isolate;
    uint32_t    poison;   /* what the poison item does; CLEAN: there is none */
    int64_t     timeout_ms;
    int         error;    /* the poison item's outcome */
    bool        whole;    /* every item fails with it (isolate off) */
} bench_case;

/* What one case measured. */
typedef struct case_figures {
    bench_latency round;
    double        mean_ms, batches, started;
} case_figures;

/* Exits 1 unless item i of a round of case c, poison at `at` (or none),
   settled as it must. */
static void check_item(const bench_case *c, const wp_future *f, uint32_t i, uint32_t at)
{
    bool poisoned = c->poison != CLEAN && (c->whole || i == at);
    bench_expect(f, poisoned ? c->error : 0);
    if (poisoned)
        return;
    size_t len;
    const void *p = wp_future_result(f, &len);
    uint64_t r;
    if (len != sizeof r || (memcpy(&r, p, sizeof r), r != result_of(i))) {
        fprintf(stderr, "isolate: %s: item %u has a wrong result\n", c->name, (unsigned)i);
        exit(1);
    }
}

/* One batch of BATCH items, poison at `at`: its wall time, ns. */
static uint64_t run_round(wp_batcher *b, const bench_case *c, uint32_t at)
{
    wp_future *fs[BATCH];
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < BATCH; i++) {
        bench_item it = { i, i == at ? c->poison : CLEAN };
        int rc = wp_batcher_submit(b, &it, sizeof it, &fs[i]);
        if (rc != 0)
            bench_die("wp_batcher_submit", rc);
    }
    bench_wait_all(fs, BATCH);
    uint64_t ns = bench_now_ns() - t0;
    for (uint32_t i = 0; i < BATCH; i++) {
        check_item(c, fs[i], i, at);
        wp_future_release(fs[i]);
    }
    return ns;
}

static case_figures run_case(int start_method, const bench_case *c, size_t rounds)
{
    wp_pool_options po = { .workers = BENCH_WORKERS, .start_method = start_method };
    wp_pool *pool = bench_ready_pool(&po);
    wp_batcher_options bo = { .max_batch_size = BATCH, .max_wait_ms = LONG_WAIT_MS,
                              .isolate = c->isolate, .task.timeout_ms = c->timeout_ms };
    wp_batcher *b;
    int rc = wp_batcher_create(&b, pool, poison_batch, &bo);
    if (rc != 0)
        bench_die("wp_batcher_create", rc);
    uint64_t *ns = calloc(rounds, sizeof *ns), sum = 0;
    if (ns == NULL)
        bench_die("calloc", WP_ENOMEM);
    wp_pool_stats p0;
    wp_pool_get_stats(pool, &p0);
    for (size_t r = 0; r < rounds; r++) {
        bench_wait_workers(pool, BENCH_WORKERS);
        ns[r] = run_round(b, c, (uint32_t)(r * POISON_STRIDE % BATCH));
        sum += ns[r];
    }
    wp_batcher_stats bs;
    wp_batcher_get_stats(b, &bs);
    bench_wait_workers(pool, BENCH_WORKERS); /* the last round's replacements count too */
    wp_pool_stats p1;
    wp_pool_get_stats(pool, &p1);
    wp_batcher_destroy(b);
    wp_pool_destroy(pool);

    char label[64], key[64];
    snprintf(label, sizeof label, "%-11s round", c->name);
    snprintf(key, sizeof key, "isolate_%s_round", c->name);
    case_figures fig = { .round = bench_report_latency(label, key, ns, rounds) };
    fig.mean_ms = (double)sum / (double)rounds / 1e6;
    fig.batches = (double)bs.batches / (double)rounds;
    fig.started = (double)(p1.workers_started - p0.workers_started) / (double)rounds;
    printf("%-11s rounds=%zu  mean_ms=%.2f  batches/round=%.2f  mean_batch=%.1f"
           "  isolated=%llu  workers_started/round=%.2f\n",
           c->name, rounds, fig.mean_ms, fig.batches, bs.mean_batch_size,
           (unsigned long long)bs.isolated, fig.started);
    bench_resultf(fig.mean_ms, "ms", "isolate_%s_mean", c->name);
    bench_resultf(fig.batches, "batches", "isolate_%s_batches", c->name);
    free(ns);
    return fig;
}

/* ------------------------------------------------------------------ main */

static const char usage_text[] =
    "usage: isolate [--fork] [-r ROUNDS] [-H HANG_ROUNDS] [-t TIMEOUT_MS]\n"
    "  defaults: -r " BENCH_STR(DEFAULT_ROUNDS) " -H " BENCH_STR(DEFAULT_HANG_ROUNDS)
    " -t " BENCH_STR(DEFAULT_TIMEOUT_MS) "\n";

int main(int argc, char **argv)
{
    size_t rounds = DEFAULT_ROUNDS, hang_rounds = DEFAULT_HANG_ROUNDS,
           timeout_ms = DEFAULT_TIMEOUT_MS;
    const bench_option opts[] = {
        { .letter = 'r', .count = &rounds, .limit = MAX_COUNT },
        { .letter = 'H', .count = &hang_rounds, .limit = MAX_COUNT },
        { .letter = 't', .count = &timeout_ms, .limit = MAX_COUNT },
        { 0 },
    };
    int start_method = bench_begin("isolate", argc, argv, opts, usage_text);
    printf("  batch=%d  rounds=%zu  hang_rounds=%zu  hang_timeout_ms=%zu\n", BATCH, rounds,
           hang_rounds, timeout_ms);

    const bench_case clean = { "clean", 1, CLEAN, 0, 0, false };
    const bench_case crash = { "crash", 1, CRASH, 0, WP_ECRASHED, false };
    const bench_case whole = { "crash-whole", 0, CRASH, 0, WP_ECRASHED, true };
    const bench_case hang = { "hang", 1, HANG, (int64_t)timeout_ms, WP_ETIMEDOUT, false };
    case_figures fc = run_case(start_method, &clean, rounds);
    case_figures fx = run_case(start_method, &crash, rounds);
    case_figures fw = run_case(start_method, &whole, rounds);
    case_figures fh = run_case(start_method, &hang, hang_rounds);

    printf("isolating one crashing item of %d: %+.2f ms per batch (p50 %.0f us vs %.0f us clean),"
           " %.1f batches instead of %.1f; failing the whole batch instead: %.2f ms\n",
           BATCH, fx.mean_ms - fc.mean_ms, fx.round.p50_us, fc.round.p50_us, fx.batches,
           fc.batches, fw.mean_ms);
    printf("isolating one hanging item of %d (timeout %zu ms): %.0f ms per batch, %.1f batches\n",
           BATCH, timeout_ms, fh.mean_ms, fh.batches);
    bench_result("isolate_crash_extra", fx.mean_ms - fc.mean_ms, "ms");
    return 0;
}
