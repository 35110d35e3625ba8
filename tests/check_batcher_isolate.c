/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_isolate.c — poison-item isolation, wp_batcher_options.isolate
 * (check_batcher.c says how the suite's tests work; docs/ARCHITECTURE.md,
 * "Poison-item isolation"): a batch that crashes or times out is split in
 * halves down to single items, so that only the items that crash or hang
 * fail.  One poison item in 64, two with different deaths, a hanging item,
 * a batch where every item hangs (split all the way down, and it ends),
 * isolate off, retries before a split, a half that fails whole, halves
 * before new batches, cancelling items while they wait in a half, and the
 * batcher's and the pool's shutdown in the middle of it (and past the
 * grace, where nothing is split).
 *
 * How many batches isolation sends is exact, not a bound: model() says it
 * for the items that make a batch fail, and the tests hold the stats to it.
 *
 * Isolation sends halves from the batcher's thread, which allocates, while
 * the dispatcher forks replacements for the workers the poison killed:
 * WP_START_FORK is documented unsafe with threads that allocate, and
 * ASan's allocator is such a case (TU_ASAN in testutil.h; a worker forked
 * then never runs).  So under ASan these tests run with the fork server
 * only (fork_unsafe), as chaos_race.c's batcher test does.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>

#include "check_batcher.h"

enum {
    BATCH = 64,         /* the batch of the issue: one poison item in 64 */
    OP_ABORT = 100,     /* iso_apply: the whole batch dies of SIGABRT */
    HANG_TIMEOUT_MS = 400 /* a task timeout far above what a batch of
                             OP_VALUE items takes, even under a sanitizer */
};

/* Runs in a worker: bt_apply, but a batch holding an OP_ABORT item dies of
   SIGABRT before anything else (a second kind of death, told apart by its
   code). */
static int iso_apply(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        bitem it;
        if (items[i].len != sizeof it)
            continue;
        memcpy(&it, items[i].data, sizeof it);
        if (it.op == OP_ABORT) {
            signal(SIGABRT, SIG_DFL); /* a plain death, also under sanitizers */
            abort();
        }
    }
    return bt_apply(items, n, results);
}

/* What isolation sends for a batch of items [lo, hi) in which the items
   marked in bad[] make every batch that holds one fail (crash or time
   out): that batch, and if it fails with more than one item, both of its
   halves in turn.  failing: the batches that fail; lone: the one-item
   halves among them, the items counted in wp_batcher_stats.isolated. */
typedef struct sent {
    uint64_t batches, items, failing, lone;
} sent;

static void model(const bool *bad, size_t lo, size_t hi, bool half, sent *s)
{
    bool fails = false;
    for (size_t i = lo; i < hi; i++)
        fails |= bad[i];
    s->batches++;
    s->items += hi - lo;
    s->failing += fails;
    if (fails && hi - lo == 1)
        s->lone += half;
    if (fails && hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        model(bad, lo, mid, true, s);
        model(bad, mid, hi, true, s);
    }
}

/* The batcher's stats agree with the model: batches, items sent in them,
   the mean size those make, and the items isolated. */
static void expect_sent(wp_batcher *b, const sent *want)
{
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, want->batches);
    ck_assert_uint_eq(s.items_batched, want->items);
    ck_assert(s.mean_batch_size == (double)want->items / (double)want->batches);
    ck_assert_uint_eq(s.isolated, want->lone);
}

/* How many times batch functions saw an item of this value. */
static int times_seen(int32_t value)
{
    int n = atomic_load(&pr->nseen), times = 0;
    for (int i = 0; i < n && i < PROBE_SEEN; i++)
        times += pr->seen[i] == value;
    return times;
}

/* Wait for f and check it failed alone with this death. */
static void expect_death(wp_future *f, int error, int code, const char *text)
{
    expect_outcome(f, WP_FAILED, error);
    ck_assert_int_eq(wp_future_code(f), code);
    if (text != NULL)
        ck_assert_msg(strstr(wp_future_message(f), text) != NULL, "message \"%s\" lacks \"%s\"",
                      wp_future_message(f), text);
}

/* True where a test whose workers die under isolation cannot run (see the
   top of this file). */
static bool fork_unsafe(void)
{
    return TU_ASAN && tu_method == WP_START_FORK;
}

static wp_batcher_options isolating(size_t batch)
{
    return (wp_batcher_options){ .max_batch_size = batch, .max_wait_ms = LONG_WAIT_MS,
                                 .isolate = 1 };
}

/* One poison item in a batch of n (n <= BATCH) on b: the item at poison
   does op, every other one OP_VALUE.  Checks that it alone fails, with
   this death, that every other item gets its result, and that the stats
   say what model() says isolation sends, which it returns. */
typedef struct poison {
    int32_t     op;
    int         error, code;
    const char *text;
} poison;

static sent one_poison_item(wp_batcher *b, int n, int at, poison death)
{
    ck_assert(n <= BATCH && at < n);
    wp_future *fs[BATCH];
    bool bad[BATCH] = { false };
    bad[at] = true;
    for (int i = 0; i < n; i++)
        fs[i] = submit(b, i == at ? death.op : OP_VALUE, i);
    expect_death(fs[at], death.error, death.code, death.text);
    for (int i = 0; i < n; i++)
        if (i != at)
            expect_value(fs[i], i);
    release_all(fs, (size_t)n);
    sent want = { 0 };
    model(bad, 0, (size_t)n, false, &want);
    expect_sent(b, &want);
    ck_assert_uint_eq(want.lone, 1);
    return want;
}

static const poison segv = { OP_SEGV, WP_ECRASHED, SIGSEGV, "SIGSEGV" };

/* ------------------------------------------------------------ poison items */

WP_TEST_BOTH(one_poison_item_in_64)
{
    if (fork_unsafe())
        return;
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply, isolating(BATCH));
    sent want = one_poison_item(b, BATCH, 37, segv);
    ck_assert_uint_eq(want.batches, 13); /* 1 + 2·log2(64) */
    ck_assert_uint_eq(bstats(b).isolated, 1);
    /* Every batch that held the poison item crashed once: 64, 32, ..., 1. */
    ck_assert_uint_eq(want.failing, 7);
    ck_assert_uint_eq(tu_pool_stats(p).crashed, want.failing);
    finish(b, p);
}

/* Two poison items that die differently each fail with their own death;
   an item failed by the batch function (wp_buf_fail) stays failed alone,
   with its own code, in whatever half it lands. */
WP_TEST_BOTH(two_poison_items)
{
    if (fork_unsafe())
        return;
    enum { SEGV_AT = 5, FAIL_AT = 20, ABORT_AT = 40 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, iso_apply, isolating(BATCH));
    wp_future *fs[BATCH];
    bool bad[BATCH] = { [SEGV_AT] = true, [ABORT_AT] = true };
    const int32_t ops[BATCH] = { [SEGV_AT] = OP_SEGV, [FAIL_AT] = OP_FAIL, [ABORT_AT] = OP_ABORT };
    _Static_assert(OP_VALUE == 0, "the other items are OP_VALUE");
    for (int i = 0; i < BATCH; i++)
        fs[i] = submit(b, ops[i], i);
    expect_death(fs[SEGV_AT], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    expect_death(fs[ABORT_AT], WP_ECRASHED, SIGABRT, "SIGABRT");
    expect_death(fs[FAIL_AT], WP_ETASK, FAIL_AT, "item 20 failed");
    for (int i = 0; i < BATCH; i++)
        if (i != SEGV_AT && i != ABORT_AT && i != FAIL_AT)
            expect_value(fs[i], i);
    sent want = { 0 };
    model(bad, 0, BATCH, false, &want);
    ck_assert_uint_eq(want.batches, 23); /* 1, then 2·log2(32) for each half */
    expect_sent(b, &want);
    ck_assert_uint_eq(bstats(b).isolated, 2);
    release_all(fs, BATCH);
    finish(b, p);
}

/* A hanging item: every batch holding it outlives the task timeout (the
   halves keep the batch's task options), until it times out alone. */
WP_TEST_BOTH(hanging_item)
{
    if (fork_unsafe())
        return;
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(16);
    o.task.timeout_ms = HANG_TIMEOUT_MS;
    o.isolate = 2; /* any value but 0 is on */
    wp_batcher *b = make_batcher(p, bt_apply, o);
    sent want = one_poison_item(b, 16, 9, (poison){ OP_HANG, WP_ETIMEDOUT, 0, NULL });
    ck_assert_uint_eq(bstats(b).isolated, 1);
    ck_assert_uint_eq(tu_pool_stats(p).timed_out, want.failing);
    finish(b, p);
}

/* A batch that times out because every item in it is slow is split all
   the way down (the cost the man page admits): 2n - 1 batches, every item
   times out alone, and it ends. */
WP_TEST_BOTH(every_item_hangs)
{
    if (fork_unsafe())
        return;
    enum { N = 8 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(N);
    o.task.timeout_ms = HANG_TIMEOUT_MS / 2;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_HANG, i);
    for (int i = 0; i < N; i++)
        expect_death(fs[i], WP_ETIMEDOUT, 0, NULL);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 2 * N - 1);
    ck_assert_uint_eq(s.isolated, N);
    ck_assert_uint_eq(tu_pool_stats(p).timed_out, 2 * N - 1);
    release_all(fs, N);
    finish(b, p);
}

/* isolate = 0 keeps the behaviour of 0.2: the whole batch fails. */
WP_TEST_BOTH(isolate_off_fails_whole_batch)
{
    enum { POISON = 37 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(BATCH);
    o.isolate = 0;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    wp_future *fs[BATCH];
    for (int i = 0; i < BATCH; i++)
        fs[i] = i == POISON ? submit(b, OP_SEGV, i) : submit(b, OP_VALUE, i);
    for (int i = 0; i < BATCH; i++)
        expect_death(fs[i], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.isolated, 0);
    ck_assert_int_eq(atomic_load(&pr->entered), 1);
    release_all(fs, BATCH);
    finish(b, p);
}

/* A batch is split only once the retries its task options allow are
   spent: every failing batch runs 1 + retries times. */
WP_TEST_BOTH(split_after_retries)
{
    if (fork_unsafe())
        return;
    enum { RETRIES = 1 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(8);
    o.task.retries = RETRIES;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    sent want = one_poison_item(b, 8, 3, segv);
    ck_assert_uint_eq(atomic_load(&pr->entered),
                      want.failing * (1 + RETRIES) + (want.batches - want.failing));
    finish(b, p);
}

/* A half that fails in another way (here the batch function's own
   failure, WP_ETASK) is not split: all its items fail, as today. */
WP_TEST_BOTH(half_failing_whole_is_not_split)
{
    if (fork_unsafe())
        return;
    enum { N = 4 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply, isolating(N));
    wp_future *fs[N] = { submit(b, OP_SEGV, 0), submit(b, OP_VALUE, 1), submit(b, OP_VALUE, 2),
                         submit(b, OP_RETURN, 7) };
    expect_death(fs[0], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    expect_value(fs[1], 1);
    expect_death(fs[2], WP_ETASK, 7, NULL);
    expect_death(fs[3], WP_ETASK, 7, NULL);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 5); /* 4; 2 + 2; 1 + 1 of the crashing half */
    ck_assert_uint_eq(s.isolated, 1);
    release_all(fs, N);
    finish(b, p);
}

/* Halves go before a batch of newer items, even when that one is full
   and due: with one batch in flight, the order the batch function sees
   items in is the order batches were sent. */
WP_TEST_BOTH(halves_before_new_batches)
{
    if (fork_unsafe())
        return;
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(2);
    o.max_in_flight = 1;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    /* The first batch waits at the gate, then dies (its first call only). */
    wp_future *fs[4] = { submit(b, OP_GATE, 0), submit(b, OP_SEGV1, 1) };
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    fs[2] = submit(b, OP_VALUE, 10);
    fs[3] = submit(b, OP_VALUE, 11); /* a full batch, waiting for the one in flight */
    atomic_store(&pr->gate, 1);
    for (int i = 0; i < 4; i++)
        expect_value(fs[i], i < 2 ? i : 8 + i);
    static const int32_t order[] = { 0, 1, 0, 1, 10, 11 }; /* batch, its halves, the new one */
    ck_assert_int_eq(atomic_load(&pr->nseen), 6);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(pr->seen[i] == order[i], "item %d seen at %d, %d expected", (int)pr->seen[i],
                      i, (int)order[i]);
    ck_assert_uint_eq(bstats(b).batches, 4);
    release_all(fs, 4);
    finish(b, p);
}

/* ------------------------------------------- cancel and shutdown meanwhile */

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

static void held_finish(held *h)
{
    release_all(h->fs, (size_t)h->n);
    finish(h->b, h->p);
}

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
    ck_assert_uint_eq(bstats(h.b).batches, 3);
    ck_assert_uint_eq(bstats(h.b).isolated, 0);
    held_finish(&h);
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
    ck_assert_int_eq(atomic_load(&pr->entered), 2);
    ck_assert_uint_eq(bstats(h.b).batches, 2);
    held_finish(&h);
}

/* A shutdown with no grace cancels the running half and the waiting one. */
WP_TEST_BOTH(forced_shutdown_during_isolation)
{
    held h;
    if (!held_split(&h, 4))
        return;
    ck_assert_int_eq(wp_batcher_shutdown(h.b, 0), 0);
    for (int i = 0; i < h.n; i++) {
        ck_assert_int_eq(wp_future_wait(h.fs[i], 0), 0); /* settled before it returned */
        expect_outcome(h.fs[i], WP_CANCELLED, WP_ECANCELED);
    }
    ck_assert_int_eq(atomic_load(&pr->entered), 2);
    ck_assert_uint_eq(bstats(h.b).batches, 2);
    held_finish(&h);
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
    ck_assert_uint_eq(bstats(h.b).batches, 3);
    held_finish(&h);
}

/* Past the shutdown grace nothing new is sent: a shielded batch that runs
   to its end and crashes there fails whole, as without isolate. */
WP_TEST_BOTH(no_split_past_the_grace)
{
    if (fork_unsafe())
        return;
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options o = isolating(2);
    o.max_in_flight = 1;
    o.task.flags = WP_TASK_SHIELD;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    wp_future *fs[3] = { submit(b, OP_GATE, 0), submit(b, OP_SEGV1, 1) };
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
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
    held h;
    if (!held_split(&h, 4))
        return;
    ck_assert_int_eq(wp_pool_shutdown(h.p, 0), 0);
    for (int i = 0; i < h.n; i++)
        expect_outcome(h.fs[i], WP_CANCELLED, WP_ECANCELED);
    ck_assert_int_eq(atomic_load(&pr->entered), 2);
    held_finish(&h);
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
    wp_batcher *b = make_batcher(p, bt_apply, isolating(BATCH));
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

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_isolate_tests,
        TU_TEST(one_poison_item_in_64),
        TU_TEST(two_poison_items),
        TU_TEST(hanging_item),
        TU_TEST(every_item_hangs),
        TU_TEST(isolate_off_fails_whole_batch),
        TU_TEST(split_after_retries),
        TU_TEST(half_failing_whole_is_not_split),
        TU_TEST(halves_before_new_batches),
        TU_TEST(cancel_item_in_half),
        TU_TEST(cancel_whole_half),
        TU_TEST(cancels_back_to_back),
        TU_TEST(forced_shutdown_during_isolation),
        TU_TEST(graceful_shutdown_during_isolation),
        TU_TEST(no_split_past_the_grace),
        TU_TEST(pool_shutdown_during_isolation))
