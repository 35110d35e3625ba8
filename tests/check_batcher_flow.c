/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_flow.c — how many items and batches are under way
 * (check_batcher.c says how the suite's tests work): max_in_flight,
 * cancelling an item still pending or already sent, and backpressure:
 * a submit that waits for room, or answers WP_EAGAIN.
 */
#define _GNU_SOURCE
#include "check_batcher.h"

/* ------------------------------------------------------------ in flight */

WP_TEST_BOTH(max_in_flight_one)
{
    enum { N = 10 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = 1, .max_in_flight = 1 });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_SLEEP, 50); /* 100 ms per batch of 2 */
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        expect_value(fs[i], 50);
    ck_assert_int_eq(atomic_load(&pr->max_running), 1);
    ck_assert_int_ge(atomic_load(&pr->entered), N / 2);
    release_all(fs, N);
    finish(b, p);
}

/* ----------------------------------------------------------- cancelling */

WP_TEST_BOTH(cancel_pending_item)
{
    enum { N = 5, VICTIM = 2 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, 1000 + i);
    ck_assert_int_eq(wp_future_cancel(fs[VICTIM]), 0);
    /* It settles at once, without waiting for a batch. */
    expect_outcome(fs[VICTIM], WP_CANCELLED, WP_ECANCELED);
    ck_assert_int_eq(wp_future_cancel(fs[VICTIM]), WP_EINVAL);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.pending, N - 1);
    ck_assert_uint_eq(s.batches, 0);

    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        if (i != VICTIM) {
            bresult r = expect_value(fs[i], 1000 + i);
            ck_assert_int_eq(r.n, N - 1);
            ck_assert_int_eq(r.index, i < VICTIM ? i : i - 1);
        }
    ck_assert_int_eq(atomic_load(&pr->nseen), N - 1);
    ck_assert_msg(!probe_saw(1000 + VICTIM), "the batch function saw the cancelled item");
    for (int i = 0; i < N; i++)
        ck_assert(i == VICTIM || probe_saw(1000 + i));
    s = bstats(b);
    ck_assert_uint_eq(s.items, N);
    ck_assert_uint_eq(s.items_batched, N - 1);
    ck_assert_uint_eq(s.batches, 1);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(cancel_sent_item_is_busy)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = LONG_WAIT_MS });
    wp_future *f = submit(b, OP_GATE, 1);
    wp_future *g = submit(b, OP_VALUE, 2);
    /* Both are in a batch, held by the gate in the batch function. */
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_cancel(g), WP_EBUSY);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    atomic_store(&pr->gate, 1);
    expect_value(f, 1);
    expect_value(g, 2);
    ck_assert_int_eq(wp_future_cancel(f), WP_EINVAL); /* settled */
    wp_future_release(f);
    wp_future_release(g);
    finish(b, p);
}

/* --------------------------------------------------------- backpressure */

typedef struct blocked_submit {
    wp_batcher     *b;
    wp_future      *f;
    int             rc;
    bool            returned;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
} blocked_submit;

static void *blocked_submit_main(void *arg)
{
    blocked_submit *bs = arg;
    bitem it = { OP_VALUE, 77 };
    int rc = wp_batcher_submit(bs->b, &it, sizeof it, &bs->f);
    pthread_mutex_lock(&bs->mu);
    bs->rc = rc;
    bs->returned = true;
    pthread_cond_broadcast(&bs->cv);
    pthread_mutex_unlock(&bs->mu);
    return NULL;
}

WP_TEST_BOTH(backpressure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_future *held, *fs[MAX_PENDING];
    wp_batcher *b = full_batcher(p, &held, fs);
    ck_assert_uint_eq(bstats(b).pending, MAX_PENDING);
    bitem extra = { OP_VALUE, 99 };
    wp_future *f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(b, &extra, sizeof extra, WP_TASK_NOWAIT, &f), WP_EAGAIN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_submit_opts(b, &extra, sizeof extra, WP_TASK_NOWAIT, NULL),
                     WP_EAGAIN);
    ck_assert_uint_eq(bstats(b).items, 1 + MAX_PENDING);

    /* A submit without NOWAIT blocks until there is room. */
    blocked_submit bs = { .b = b, .mu = PTHREAD_MUTEX_INITIALIZER };
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bs.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, blocked_submit_main, &bs), 0);
    /* It must still be blocked 200 ms later (a deadline on its condition,
       which must not come true while the gate is shut). */
    int64_t until = tu_now_ms() + 200;
    struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L };
    pthread_mutex_lock(&bs.mu);
    while (!bs.returned && tu_now_ms() < until)
        pthread_cond_timedwait(&bs.cv, &bs.mu, &ts);
    bool returned_early = bs.returned;
    pthread_mutex_unlock(&bs.mu);
    ck_assert_msg(!returned_early, "a submit past max_pending did not block");

    atomic_store(&pr->gate, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(bs.rc, 0);
    ck_assert_ptr_nonnull(bs.f);
    expect_value(held, 0);
    for (int i = 0; i < MAX_PENDING; i++)
        expect_value(fs[i], i + 1);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(bs.f, 77);
    ck_assert_int_eq(atomic_load(&pr->max_running), 1);
    ck_assert_uint_eq(bstats(b).items, 2 + MAX_PENDING);
    wp_future_release(held);
    wp_future_release(bs.f);
    release_all(fs, MAX_PENDING);
    pthread_cond_destroy(&bs.cv);
    finish(b, p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_flow_tests,
        TU_TEST(max_in_flight_one),
        TU_TEST(cancel_pending_item),
        TU_TEST(cancel_sent_item_is_busy),
        TU_TEST(backpressure))
