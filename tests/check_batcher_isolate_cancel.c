/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_isolate_cancel.c — poison-item isolation meeting cancels and
 * shutdowns (check_batcher.c says how the suite's tests work;
 * docs/ARCHITECTURE.md, "Poison-item isolation"): cancelling an item while it
 * waits in a half, and a whole half; cancels back to back; the batcher's
 * shutdown with no grace, with a grace, and past the grace (where nothing is
 * split); and the pool's shutdown in the middle of it.  The splits
 * themselves are tested in check_batcher_isolate.c, which defines the
 * helpers both files share (check_batcher.h, "isolation"), fork_unsafe
 * among them: why these tests do not run under ASan with WP_START_FORK.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>

#include "check_batcher.h"

/* How many times batch functions saw an item of this value. */
static int times_seen(int32_t value)
{
    int n = atomic_load(&pr->nseen), times = 0;
    for (int i = 0; i < n && i < PROBE_SEEN; i++)
        times += pr->seen[i] == value;
    return times;
}

/* -------------------------------------------------- a batch split, held */

/* A batch of n items split under a test's hands (held_split). */
enum { HELD_MAX = 8 };
typedef struct held {
    wp_pool    *p;
    wp_batcher *b;
    int         n;
    wp_future  *fs[HELD_MAX];
} held;

/* On a new pool, a batch of n items (4 <= n <= HELD_MAX, one batch in
   flight at most) that crashed once and was split: its first half is
   running, held at the gate (item 1; item 0, OP_SEGV1, no longer
   crashes), its second half waits to be sent, its items WP_PENDING again.
   False where the test cannot run (fork_unsafe). */
static bool held_split(held *h, int n)
{
    if (fork_unsafe())
        return false;
    ck_assert(n >= 4 && n <= HELD_MAX);
    h->p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating((size_t)n);
    o.max_in_flight = 1;
    h->b = make_batcher(h->p, bt_apply, o);
    h->n = n;
    h->fs[0] = submit(h->b, OP_SEGV1, 0);
    h->fs[1] = submit(h->b, OP_GATE, 1);
    for (int i = 2; i < n; i++)
        h->fs[i] = submit(h->b, OP_VALUE, i);
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 2);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(wp_future_state(h->fs[i]), i < n / 2 ? WP_RUNNING : WP_PENDING);
    wp_batcher_stats s = bstats(h->b);
    ck_assert_uint_eq(s.pending, n - n / 2); /* the waiting half's items */
    ck_assert_uint_eq(s.in_flight, 1);
    ck_assert_uint_eq(s.batches, 2);
    return true;
}

/* The end of a test on a held split, once its items are settled: the batch
   function ran `ran` batches and the batcher counted `sent` sent (a half
   the pool refused counts: docs/ARCHITECTURE.md, "Poison-item isolation",
   Counting), no item was isolated (no half crashes), and the batcher and
   the pool shut down and go. */
static void held_finish(held *h, int ran, int sent)
{
    ck_assert_int_eq(atomic_load(&pr->entered), ran);
    wp_batcher_stats s = bstats(h->b);
    ck_assert_uint_eq(s.batches, sent);
    ck_assert_uint_eq(s.isolated, 0);
    release_all(h->fs, (size_t)h->n);
    finish(h->b, h->p);
}

/* ------------------------------------------------------------ cancels */

/* An item waiting in a half is cancelled at once, and its half leaves
   without it; an item of the running half cannot be cancelled alone. */
WP_TEST_BOTH(cancel_item_in_half)
{
    enum { N = 6, VICTIM = 4 };
    held h;
    if (!held_split(&h, N))
        return;
    ck_assert_int_eq(wp_future_cancel(h.fs[1]), WP_EBUSY);
    ck_assert_int_eq(wp_future_cancel(h.fs[VICTIM]), 0);
    expect_outcome(h.fs[VICTIM], WP_CANCELLED, WP_ECANCELED); /* the gate is still shut */
    ck_assert_uint_eq(bstats(h.b).pending, N - N / 2 - 1);
    atomic_store(&pr->gate, 1);
    for (int i = 0; i < N; i++)
        if (i != VICTIM)
            ck_assert_int_eq(expect_value(h.fs[i], i).n, N / 2 - (i >= N / 2));
    ck_assert_msg(times_seen(VICTIM) == 1, "the batch function saw the cancelled item %d times",
                  times_seen(VICTIM)); /* in the first batch, never again */
    held_finish(&h, 3, 3);
}

/* A half whose every item was cancelled is never sent. */
WP_TEST_BOTH(cancel_whole_half)
{
    held h;
    if (!held_split(&h, 4))
        return;
    for (int i = 2; i < 4; i++) {
        ck_assert_int_eq(wp_future_cancel(h.fs[i]), 0);
        expect_outcome(h.fs[i], WP_CANCELLED, WP_ECANCELED);
    }
    ck_assert_uint_eq(bstats(h.b).pending, 0);
    atomic_store(&pr->gate, 1);
    expect_value(h.fs[0], 0);
    expect_value(h.fs[1], 1);
    ck_assert_int_eq(wp_batcher_shutdown(h.b, -1), 0);
    held_finish(&h, 2, 2);
}

/* Cancels back to back: the batcher thread settles a cancelled item with
   its lock released, and a cancel that comes meanwhile must not wait for
   some later wake-up (there is none here: max_wait_ms is a minute).  Found
   by cancel_whole_half; this is the same race with pending items, run
   often enough to lose it. */
WP_TEST_BOTH(cancels_back_to_back)
{
    enum { ROUNDS = 200 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply, isolating(ISOLATE_BATCH));
    for (int r = 0; r < ROUNDS; r++) {
        wp_future *fs[2] = { submit(b, OP_VALUE, 2 * r), submit(b, OP_VALUE, 2 * r + 1) };
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(wp_future_cancel(fs[i]), 0);
            expect_outcome(fs[i], WP_CANCELLED, WP_ECANCELED);
        }
        release_all(fs, 2);
    }
    ck_assert_uint_eq(bstats(b).batches, 0);
    finish(b, p);
}

/* ----------------------------------------------------------- shutdowns */

/* A shutdown with no grace during isolation, of the batcher or (of_pool)
   of the pool: every item settles cancelled, the running half with the
   batch's task and the waiting one unsent; the batcher's has them settled
   before it returns, and the pool refuses the waiting half when the
   batcher sends it. */
static void shutdown_held_split(bool of_pool)
{
    held h;
    if (!held_split(&h, 4))
        return;
    if (of_pool)
        ck_assert_int_eq(wp_pool_shutdown(h.p, 0), 0);
    else
        ck_assert_int_eq(wp_batcher_shutdown(h.b, 0), 0);
    for (int i = 0; i < h.n; i++) {
        if (!of_pool)
            ck_assert_int_eq(wp_future_wait(h.fs[i], 0), 0); /* settled already */
        expect_outcome(h.fs[i], WP_CANCELLED, WP_ECANCELED);
    }
    held_finish(&h, 2, of_pool ? 3 : 2);
}

/* A shutdown with no grace cancels the running half and the waiting one. */
WP_TEST_BOTH(forced_shutdown_during_isolation)
{
    shutdown_held_split(false);
}

/* wp_batcher_shutdown on a thread of its own: with no end to its grace,
   or none at all; then joined, and it must have returned 0 (every item
   settled). */
static void *shutdown_waiting(void *b)
{
    return (void *)(intptr_t)wp_batcher_shutdown(b, -1);
}

static void *shutdown_now(void *b)
{
    return (void *)(intptr_t)wp_batcher_shutdown(b, 0);
}

static void shutdown_join(pthread_t t)
{
    void *rc;
    ck_assert_int_eq(pthread_join(t, &rc), 0);
    ck_assert_int_eq((int)(intptr_t)rc, 0);
}

/* A graceful shutdown lets isolation finish: the waiting half is sent in
   the grace, and every item gets its result. */
WP_TEST_BOTH(graceful_shutdown_during_isolation)
{
    held h;
    if (!held_split(&h, 4))
        return;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, shutdown_waiting, h.b), 0);
    TU_POLL_UNTIL(wp_batcher_flush(h.b) == WP_ESHUTDOWN); /* it is closing */
    atomic_store(&pr->gate, 1);
    shutdown_join(t);
    for (int i = 0; i < h.n; i++) {
        ck_assert_int_eq(wp_future_wait(h.fs[i], 0), 0);
        expect_value(h.fs[i], i);
    }
    held_finish(&h, 3, 3);
}

/* Past the shutdown grace nothing new is sent: a shielded batch that runs
   to its end and crashes there fails whole, as without isolate. */
WP_TEST_BOTH(no_split_past_the_grace)
{
    if (fork_unsafe())
        return;
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_future *fs[3];
    wp_batcher *b = gated_pair(p, WP_TASK_SHIELD, fs);
    fs[2] = submit(b, OP_VALUE, 2); /* pending behind it */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, shutdown_now, b), 0);
    /* The pending item is cancelled once the grace is over: from then on. */
    expect_outcome(fs[2], WP_CANCELLED, WP_ECANCELED);
    atomic_store(&pr->gate, 1);
    shutdown_join(t);
    for (int i = 0; i < 2; i++)
        expect_death(fs[i], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.isolated, 0);
    release_all(fs, 3);
    finish(b, p);
}

/* The pool shutting down under isolation: the running half is cancelled
   with the pool's tasks, the waiting one can no longer be sent; every item
   settles, cancelled, as the pool's own tasks do. */
WP_TEST_BOTH(pool_shutdown_during_isolation)
{
    shutdown_held_split(true);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_isolate_cancel_tests,
        TU_TEST(cancel_item_in_half),
        TU_TEST(cancel_whole_half),
        TU_TEST(cancels_back_to_back),
        TU_TEST(forced_shutdown_during_isolation),
        TU_TEST(graceful_shutdown_during_isolation),
        TU_TEST(no_split_past_the_grace),
        TU_TEST(pool_shutdown_during_isolation))
