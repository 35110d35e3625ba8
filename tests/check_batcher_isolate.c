/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_isolate.c — poison-item isolation, wp_batcher_options.isolate
 * (check_batcher.c says how the suite's tests work; docs/ARCHITECTURE.md,
 * "Poison-item isolation"): a batch that crashes or times out is split in
 * halves down to single items, so that only the items that crash or hang
 * fail.  One poison item in 64, two with different deaths, a hanging item,
 * a batch where every item hangs (split all the way down, and it ends),
 * isolate off, retries before a split, a half that fails whole, and halves
 * before new batches.  Cancelling items and shutting down in the middle of
 * it are in check_batcher_isolate_cancel.c, which shares the helpers
 * declared in check_batcher.h ("isolation").
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

/* ------------------------------ shared with check_batcher_isolate_cancel.c */

void expect_death(wp_future *f, int error, int code, const char *text)
{
    expect_outcome(f, WP_FAILED, error);
    ck_assert_int_eq(wp_future_code(f), code);
    if (text != NULL)
        ck_assert_msg(strstr(wp_future_message(f), text) != NULL, "message \"%s\" lacks \"%s\"",
                      wp_future_message(f), text);
}

bool fork_unsafe(void)
{
    return TU_ASAN && tu_method == WP_START_FORK;
}

wp_batcher_options isolating(size_t batch)
{
    return (wp_batcher_options){ .max_batch_size = batch, .max_wait_ms = LONG_WAIT_MS,
                                 .isolate = 1 };
}

wp_batcher *gated_pair(wp_pool *p, unsigned task_flags, wp_future *fs[2])
{
    wp_batcher_options o = isolating(2);
    o.max_in_flight = 1;
    o.task.flags = task_flags;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    fs[0] = submit(b, OP_GATE, 0);
    fs[1] = submit(b, OP_SEGV1, 1);
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    return b;
}

/* One poison item in a batch of n (n <= ISOLATE_BATCH) on b: the item at poison
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
    ck_assert(n <= ISOLATE_BATCH && at < n);
    wp_future *fs[ISOLATE_BATCH];
    bool bad[ISOLATE_BATCH] = { false };
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
    wp_batcher *b = make_batcher(p, bt_apply, isolating(ISOLATE_BATCH));
    sent want = one_poison_item(b, ISOLATE_BATCH, 37, segv);
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
    wp_batcher *b = make_batcher(p, iso_apply, isolating(ISOLATE_BATCH));
    wp_future *fs[ISOLATE_BATCH];
    bool bad[ISOLATE_BATCH] = { [SEGV_AT] = true, [ABORT_AT] = true };
    const int32_t ops[ISOLATE_BATCH] = { [SEGV_AT] = OP_SEGV, [FAIL_AT] = OP_FAIL,
                                         [ABORT_AT] = OP_ABORT };
    _Static_assert(OP_VALUE == 0, "the other items are OP_VALUE");
    for (int i = 0; i < ISOLATE_BATCH; i++)
        fs[i] = submit(b, ops[i], i);
    expect_death(fs[SEGV_AT], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    expect_death(fs[ABORT_AT], WP_ECRASHED, SIGABRT, "SIGABRT");
    expect_death(fs[FAIL_AT], WP_ETASK, FAIL_AT, "item 20 failed");
    for (int i = 0; i < ISOLATE_BATCH; i++)
        if (i != SEGV_AT && i != ABORT_AT && i != FAIL_AT)
            expect_value(fs[i], i);
    sent want = { 0 };
    model(bad, 0, ISOLATE_BATCH, false, &want);
    ck_assert_uint_eq(want.batches, 23); /* 1, then 2·log2(32) for each half */
    expect_sent(b, &want);
    ck_assert_uint_eq(bstats(b).isolated, 2);
    release_all(fs, ISOLATE_BATCH);
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
    wp_batcher_options o = isolating(ISOLATE_BATCH);
    o.isolate = 0;
    wp_batcher *b = make_batcher(p, bt_apply, o);
    wp_future *fs[ISOLATE_BATCH];
    for (int i = 0; i < ISOLATE_BATCH; i++)
        fs[i] = i == POISON ? submit(b, OP_SEGV, i) : submit(b, OP_VALUE, i);
    for (int i = 0; i < ISOLATE_BATCH; i++)
        expect_death(fs[i], WP_ECRASHED, SIGSEGV, "SIGSEGV");
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.isolated, 0);
    ck_assert_int_eq(atomic_load(&pr->entered), 1);
    release_all(fs, ISOLATE_BATCH);
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
    wp_future *fs[4];
    wp_batcher *b = gated_pair(p, 0, fs);
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

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_isolate_tests,
        TU_TEST(one_poison_item_in_64),
        TU_TEST(two_poison_items),
        TU_TEST(hanging_item),
        TU_TEST(every_item_hangs),
        TU_TEST(isolate_off_fails_whole_batch),
        TU_TEST(split_after_retries),
        TU_TEST(half_failing_whole_is_not_split),
        TU_TEST(halves_before_new_batches))
