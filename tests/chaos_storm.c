/* SPDX-License-Identifier: MIT */
/*
 * chaos_storm.c — storms of cancels and shutdowns (part of check_chaos):
 * tens of thousands of queued tasks cancelled at once from several threads
 * while workers are busy and tasks wait pipelined behind them; cancels
 * racing completion; shutdown racing busy, pipelined and still-starting
 * workers; several threads shutting down at once.  The races with destroy,
 * the batcher and done-callbacks are in chaos_race.c.
 *
 * Threads that allocate never run while a WP_START_FORK pool may fork (see
 * TU_ASAN): submissions happen while the workers are held or busy, the
 * cancelling threads allocate nothing and stay alive until every task has
 * settled (a thread's exit hands its allocator cache back under a lock).
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"

#define STORM_WORKERS     2
#define STORM_TASKS       20000  /* queued behind two busy workers, then cancelled */
#define STORM_CANCELLERS  4
#define STORM_DEADLINE_MS 50000
#define MASS_WARMUP_MAX   200    /* tasks run before the storm, at most */
#define PAYLOAD           32     /* bytes of a small task's argument and result */
#define PATTERN_SEED      5u
#define RAN_OR_CANCELLED  (CHAOS_ALLOW(CHAOS_SUCCEEDED) | CHAOS_ALLOW(CHAOS_CANCELLED))

static char pattern[PAYLOAD];

static void submit_small(wp_pool *p, chaos_rec *r, unsigned i, uint32_t run_us, unsigned flags)
{
    wp_task_options o = { .flags = flags };
    tu_pattern(pattern, sizeof pattern, PATTERN_SEED);
    ck_assert_int_eq(chaos_submit(p, r, i, pattern, PATTERN_SEED, PAYLOAD, PAYLOAD, run_us, &o), 0);
}

/* A cancel, and what it said, on the record: 0 and WP_EBUSY are noted,
   WP_EINVAL means it had settled; anything else is wrong. */
static int cancel_rec(chaos_rec *r)
{
    int rc = wp_future_cancel(r->f);
    if (rc == 0)
        atomic_store(&r->cancel_ok, 1);
    else if (rc == WP_EBUSY)
        atomic_store(&r->cancel_busy, 1);
    return rc == 0 || rc == WP_EBUSY || rc == WP_EINVAL ? 0 : rc;
}

/* A thread of a storm: started together, lingering until every task has
   settled. */
typedef struct storm_thread {
    chaos_rec  *recs;
    unsigned    n, id;
    uint64_t    rng;
    atomic_int *start, *finish;
    int         error;
    pthread_t   thread;
} storm_thread;

static void start_threads(storm_thread *t, unsigned n, void *(*fn)(void *))
{
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&t[i].thread, NULL, fn, &t[i]), 0);
}

static void join_threads(storm_thread *t, unsigned n, uint64_t seed)
{
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i].thread, NULL);
        ck_assert_msg(t[i].error == 0, "seed %llu: thread %u: a cancel returned %d",
                      (unsigned long long)seed, i, t[i].error);
    }
}

/* ------------------------------------------------------------ mass cancel */

/* Every thread cancels every task, each from its own starting point, so
   the same future is cancelled by several threads at once. */
static void *mass_canceller(void *arg)
{
    storm_thread *t = arg;
    chaos_linger(t->start);
    for (unsigned k = 0; k < t->n && t->error == 0; k++)
        t->error = cancel_rec(&t->recs[(k + t->id * (t->n / STORM_CANCELLERS)) % t->n]);
    chaos_linger(t->finish);
    return NULL;
}

WP_TEST_BOTH(storm_mass_cancel)
{
    uint64_t seed = chaos_seed("storm_mass_cancel"), rng = seed;
    unsigned n = tu_scaled(STORM_TASKS);
    tu_hold h;
    tu_hold_open(&h);
    chaos_shared_open();
    wp_pool_options o = chaos_pool_options(STORM_WORKERS, false);
    o.queue_capacity = n + STORM_WORKERS;
    wp_pool *p = tu_pool_started(o);

    /* Both workers busy at the gate; the first tasks get pipelined behind
       them, the rest queue. */
    wp_future *blockers[STORM_WORKERS];
    for (unsigned i = 0; i < STORM_WORKERS; i++)
        blockers[i] = tu_submit_held(p, &h, NULL, NULL);
    chaos_rec *recs = calloc(n, sizeof *recs);
    ck_assert_ptr_nonnull(recs);
    for (unsigned i = 0; i < n; i++)
        submit_small(p, &recs[i], i, 0, 0);

    atomic_int start = 0, finish = 0;
    storm_thread th[STORM_CANCELLERS];
    for (unsigned i = 0; i < STORM_CANCELLERS; i++)
        th[i] = (storm_thread){ .recs = recs, .n = n, .id = i, .start = &start, .finish = &finish };
    start_threads(th, STORM_CANCELLERS, mass_canceller);
    /* One blocker goes on and its worker gets through a random number of
       tasks; then the storm, and a cancel of both blockers (one has run,
       one is running: its worker is killed). */
    atomic_store(&chaos_last_settled, 0);
    tu_fifo_release(&h.gate, 1);
    unsigned warmup = (unsigned)tu_rand_below(&rng, MASS_WARMUP_MAX + 1);
    int64_t deadline = tu_now_ms() + STORM_DEADLINE_MS;
    while (atomic_load(&chaos_last_settled) < warmup && tu_now_ms() < deadline)
        tu_poll_pause();
    atomic_store(&start, 1);
    int cancelled[STORM_WORKERS];
    for (unsigned i = 0; i < STORM_WORKERS; i++)
        cancelled[i] = wp_future_cancel(blockers[i]);
    bool all = chaos_wait_all(recs, n, deadline);
    for (unsigned i = 0; i < STORM_WORKERS; i++)
        all = all && wp_future_wait(blockers[i], deadline - tu_now_ms()) == 0;
    atomic_store(&finish, 1);
    join_threads(th, STORM_CANCELLERS, seed);
    ck_assert_msg(all, "seed %llu: not every future settled", (unsigned long long)seed);
    unsigned blockers_ran = 0;
    for (unsigned i = 0; i < STORM_WORKERS; i++) {
        int st = wp_future_state(blockers[i]);
        bool ok = cancelled[i] == 0 ? st == WP_CANCELLED : cancelled[i] == WP_EINVAL && st == WP_SUCCEEDED;
        ck_assert_msg(ok, "seed %llu: blocker %u: cancel said %d, state %d", (unsigned long long)seed,
                      i, cancelled[i], st);
        blockers_ran += st == WP_SUCCEEDED;
        wp_future_release(blockers[i]);
    }
    /* The blockers are no chaos tasks: count them out of the stats. */
    chaos_shutter sh = { .pool = p, .grace = -1 };
    chaos_shutdown_start(&sh);
    chaos_shutdown_join(&sh, seed, "storm_mass_cancel");
    chaos_tally t = chaos_settle_check(recs, n, RAN_OR_CANCELLED, seed, "storm_mass_cancel");
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, n + STORM_WORKERS);
    ck_assert_uint_eq(s.submitted, s.succeeded + s.failed + s.cancelled);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_uint_eq(s.cancelled, t.n[CHAOS_CANCELLED] + STORM_WORKERS - blockers_ran);
    ck_assert_uint_eq(s.succeeded, t.n[CHAOS_SUCCEEDED] + blockers_ran);
    fprintf(stderr, "check_chaos: storm_mass_cancel: %u tasks, %u cancelled, %u ran\n", n,
            t.n[CHAOS_CANCELLED], t.n[CHAOS_SUCCEEDED]);
    wp_pool_destroy(p);
    free(recs);
    tu_hold_close(&h);
    chaos_check_nothing_left(seed, "storm_mass_cancel");
    chaos_shared_close();
}

/* ------------------------------------------------- cancels vs. completion */

#define RACE_TASKS      6000
#define RACE_RUN_US     100
#define RACE_AHEAD      24     /* cancel up to this many tasks past the last settled */
#define RACE_BEHIND     4      /* ... or just behind it (already settled: WP_EINVAL) */
#define RACE_GAP_US     30
#define RACE_SHIELD_ONE_IN 8

/* Aim at the tasks running, pipelined or just finished right now. */
static void *racing_canceller(void *arg)
{
    storm_thread *t = arg;
    chaos_linger(t->start);
    while (t->error == 0 && !atomic_load(t->finish)) {
        long at = (long)atomic_load(&chaos_last_settled) - RACE_BEHIND +
                  (long)tu_rand_below(&t->rng, RACE_AHEAD + RACE_BEHIND);
        if (at >= 0 && (unsigned long)at < t->n)
            t->error = cancel_rec(&t->recs[at]);
        tu_sleep_us(tu_rand_below(&t->rng, RACE_GAP_US));
    }
    return NULL;
}

WP_TEST_BOTH(storm_cancel_race)
{
    uint64_t seed = chaos_seed("storm_cancel_race"), rng = seed;
    unsigned n = tu_scaled(RACE_TASKS);
    chaos_shared_open();
    wp_pool_options o = chaos_pool_options(STORM_WORKERS, true);
    o.queue_capacity = n;
    wp_pool *p = tu_pool_create(o);
    chaos_wait_forked(STORM_WORKERS);
    chaos_rec *recs = calloc(n, sizeof *recs);
    ck_assert_ptr_nonnull(recs);
    for (unsigned i = 0; i < n; i++)
        submit_small(p, &recs[i], i, (uint32_t)tu_rand_below(&rng, RACE_RUN_US),
                     tu_rand_below(&rng, RACE_SHIELD_ONE_IN) == 0 ? WP_TASK_SHIELD : 0);
    atomic_store(&chaos_last_settled, 0);

    atomic_int start = 0, finish = 0;
    storm_thread th[STORM_CANCELLERS];
    for (unsigned i = 0; i < STORM_CANCELLERS; i++)
        th[i] = (storm_thread){ .recs = recs, .n = n, .id = i, .rng = seed + i,
                                .start = &start, .finish = &finish };
    start_threads(th, STORM_CANCELLERS, racing_canceller);
    atomic_store(&start, 1);
    atomic_store(&chaos_mem->go, 1);
    bool all = chaos_wait_all(recs, n, tu_now_ms() + STORM_DEADLINE_MS);
    atomic_store(&finish, 1);
    join_threads(th, STORM_CANCELLERS, seed);
    ck_assert_msg(all, "seed %llu: not every future settled", (unsigned long long)seed);
    chaos_tally t = chaos_finish(p, recs, n, RAN_OR_CANCELLED, 0, seed, "storm_cancel_race");
    fprintf(stderr, "check_chaos: storm_cancel_race: %u tasks, %u cancelled, %u ran\n", n,
            t.n[CHAOS_CANCELLED], t.n[CHAOS_SUCCEEDED]);
    free(recs);
}

/* ----------------------------------------------- shutdown vs. everything */

#define SD_ROUNDS        40
#define SD_MAX_WORKERS   4
#define SD_MAX_TASKS     200
#define SD_INIT_US_MAX   3000
#define SD_RUN_US_MAX    2000
#define SD_SHUTTERS      3      /* threads that shut down at once, in some rounds */

static const int64_t graces[] = { 0, 0, 1, 3, 10, -1 };
#define NGRACES (sizeof graces / sizeof graces[0])

/* A pool with slow-starting workers, tasks queued, running and pipelined,
   shut down at once — by one thread, or by several with different graces. */
static void shutdown_round(uint64_t seed, uint64_t *rng, bool several)
{
    chaos_shared_open();
    atomic_store(&chaos_mem->init_us_max, (unsigned)tu_rand_below(rng, SD_INIT_US_MAX + 1));
    unsigned workers = 1 + (unsigned)tu_rand_below(rng, SD_MAX_WORKERS);
    unsigned n = (unsigned)tu_rand_below(rng, SD_MAX_TASKS + 1);
    wp_pool_options o = chaos_pool_options(workers, false);
    o.queue_capacity = SD_MAX_TASKS;
    wp_pool *p = tu_pool_create(o);
    if (TU_ASAN && tu_method == WP_START_FORK)
        chaos_wait_forked(workers); /* they still start slowly */
    chaos_rec recs[SD_MAX_TASKS];
    memset(recs, 0, sizeof recs);
    for (unsigned i = 0; i < n; i++)
        submit_small(p, &recs[i], i, (uint32_t)tu_rand_below(rng, SD_RUN_US_MAX + 1), 0);

    bool unlimited = true;
    if (several) {
        atomic_int start = 0;
        chaos_shutter sh[SD_SHUTTERS];
        for (unsigned i = 0; i < SD_SHUTTERS; i++) {
            int64_t grace = graces[tu_rand_below(rng, NGRACES)];
            sh[i] = (chaos_shutter){ .pool = p, .grace = grace, .start = &start };
            unlimited = unlimited && grace < 0;
            chaos_shutdown_start(&sh[i]);
        }
        atomic_store(&start, 1);
        for (unsigned i = 0; i < SD_SHUTTERS; i++)
            chaos_shutdown_join(&sh[i], seed, "storm_shutdown_several");
    } else {
        int64_t grace = graces[tu_rand_below(rng, NGRACES)];
        unlimited = grace < 0;
        ck_assert_int_eq(wp_pool_shutdown(p, grace), 0);
    }
    /* Shutdown returned: every future has settled, every worker is reaped. */
    for (unsigned i = 0; i < n; i++)
        ck_assert_msg(wp_future_state(recs[i].f) >= WP_SUCCEEDED,
                      "seed %llu: task %u of %u unsettled after shutdown returned",
                      (unsigned long long)seed, i, n);
    unsigned started = atomic_load(&chaos_mem->nworkers);
    for (unsigned i = 0; i < started; i++) {
        int pid = atomic_load(&chaos_mem->w[i].pid);
        ck_assert_msg(pid <= 0 || !tu_pid_alive(pid), "seed %llu: worker %d outlived shutdown",
                      (unsigned long long)seed, pid);
    }
    wp_future *late = NULL;
    ck_assert_int_eq(wp_submit(p, tu_empty, NULL, 0, NULL, &late), WP_ESHUTDOWN);
    ck_assert_ptr_null(late);
    unsigned allowed = CHAOS_ALLOW(CHAOS_SUCCEEDED) | (unlimited ? 0 : CHAOS_ALLOW(CHAOS_CANCELLED));
    chaos_finish(p, recs, n, allowed, 0, seed,
                 several ? "storm_shutdown_several" : "storm_shutdown");
}

static void shutdown_rounds(bool several)
{
    uint64_t seed = chaos_seed(several ? "storm_shutdown_several" : "storm_shutdown");
    uint64_t rng = seed;
    unsigned rounds = tu_scaled(SD_ROUNDS);
    for (unsigned r = 0; r < rounds; r++)
        shutdown_round(seed, &rng, several);
}

WP_TEST_BOTH(storm_shutdown) { shutdown_rounds(false); }
WP_TEST_BOTH(storm_shutdown_several) { shutdown_rounds(true); }

void chaos_add_storm_tests(Suite *s, const tu_suite *def)
{
    const tu_test tests[] = {
        TU_TEST(storm_mass_cancel),
        TU_TEST(storm_cancel_race),
        TU_TEST(storm_shutdown),
        TU_TEST(storm_shutdown_several),
    };
    tu_add_tests(s, def, tests, TU_COUNT(tests));
}
