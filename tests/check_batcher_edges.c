/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_edges.c — the batcher's hard cases (check_batcher.c says how
 * the suite's tests work): shutdown and submits from its items' own
 * done-callbacks, destroy racing shutdown, a max_wait_ms of INT64_MAX, its
 * pool shut down under it, and many threads submitting at once.
 */
#define _GNU_SOURCE
#include "check_batcher.h"

static atomic_int callback_rc[2];

static void shutdown_from_callback(wp_future *f, void *ctx)
{
    int which = wp_future_state(f) == WP_CANCELLED ? 1 : 0;
    atomic_store(&callback_rc[which], wp_batcher_shutdown(ctx, 0));
}

/* Item done-callbacks run on the dispatcher (batch results) or on the
   batcher thread (cancelled items); a shutdown from either must refuse
   with WP_EBUSY rather than deadlock. */
WP_TEST_BOTH(shutdown_from_done_callback)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    atomic_store(&callback_rc[0], 1);
    atomic_store(&callback_rc[1], 1);
    wp_future *ok = submit(b, OP_VALUE, 1);
    wp_future *gone = submit(b, OP_VALUE, 2);
    ck_assert_int_eq(wp_future_on_done(ok, shutdown_from_callback, b), 0);
    ck_assert_int_eq(wp_future_on_done(gone, shutdown_from_callback, b), 0);
    ck_assert_int_eq(wp_future_cancel(gone), 0);
    TU_POLL_UNTIL(atomic_load(&callback_rc[1]) != 1);
    ck_assert_int_eq(atomic_load(&callback_rc[1]), WP_EBUSY);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    TU_POLL_UNTIL(atomic_load(&callback_rc[0]) != 1);
    ck_assert_int_eq(atomic_load(&callback_rc[0]), WP_EBUSY);
    expect_value(ok, 1);
    /* The refused shutdowns did not close the batcher. */
    wp_future *more = submit(b, OP_VALUE, 3);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(more, 3);
    wp_future_release(ok);
    wp_future_release(gone);
    wp_future_release(more);
    finish(b, p);
}

/* An item's done-callback runs on the dispatcher: a wp_batcher_submit
   there must not wait for room (the room comes only once the callback has
   returned), it answers WP_EAGAIN. */
static wp_batcher *cb_batcher;
static atomic_int cb_submit_rc = 1; /* 1: not run yet */

static void submit_from_callback(wp_future *f, void *ctx)
{
    (void)f; (void)ctx;
    bitem it = { OP_VALUE, 5 };
    atomic_store(&cb_submit_rc, wp_batcher_submit(cb_batcher, &it, sizeof it, NULL));
}

WP_TEST_BOTH(submit_from_item_callback_full)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_future *held, *fs[MAX_PENDING];
    atomic_store(&cb_submit_rc, 1);
    wp_batcher *b = full_batcher(p, &held, fs);
    cb_batcher = b;
    ck_assert_int_eq(wp_future_on_done(held, submit_from_callback, NULL), 0);
    atomic_store(&pr->gate, 1);
    TU_POLL_UNTIL(atomic_load(&cb_submit_rc) != 1);
    ck_assert_int_eq(atomic_load(&cb_submit_rc), WP_EAGAIN);
    expect_value(held, 0);
    for (int i = 0; i < MAX_PENDING; i++)
        expect_value(fs[i], i + 1);
    wp_future_release(held);
    release_all(fs, MAX_PENDING);
    finish(b, p);
}

static int batcher_shutdown_blocking(void *b)
{
    return wp_batcher_shutdown(b, -1);
}

/* wp_batcher_destroy while other threads wait in wp_batcher_shutdown(-1):
   they all return 0, and destroy frees only after they have left. */
WP_TEST_BOTH(destroy_races_shutdown)
{
    enum { ROUNDS = 10, WAITERS = 4 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    for (int round = 0; round < ROUNDS; round++) {
        atomic_store(&pr->gate, 0);
        atomic_store(&pr->entered, 0);
        wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ .max_wait_ms = 1 });
        wp_future *held = submit(b, OP_GATE, round);
        TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
        tu_blocker w[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            tu_blocker_start(&w[i], batcher_shutdown_blocking, b);
        atomic_store(&pr->gate, 1);
        wp_batcher_destroy(b); /* the waiters may still be inside */
        for (int i = 0; i < WAITERS; i++)
            ck_assert_int_eq(tu_blocker_join(&w[i]), 0);
        expect_value(held, round);
        wp_future_release(held);
    }
    wp_pool_destroy(p);
}

/* max_wait_ms up to INT64_MAX means "that long": the item waits for its
   batch to fill or a flush, never leaves at once through an overflow. */
WP_TEST_BOTH(huge_max_wait)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 8, .max_wait_ms = INT64_MAX });
    wp_future *f = submit(b, OP_VALUE, 7);
    /* A window in which the batch must not leave (it would at once). */
    int64_t until = tu_now_ms() + 100;
    while (tu_now_ms() < until) {
        ck_assert_uint_eq(bstats(b).batches, 0);
        tu_poll_pause();
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(f, 7);
    wp_future_release(f);
    ck_assert_int_eq(wp_batcher_shutdown(b, INT64_MAX), 0);
    finish(b, p);
}

/* The pool shut down under a batcher: submits answer WP_ESHUTDOWN, and an
   item still pending settles cancelled, as the pool's own queued tasks. */
WP_TEST_BOTH(pool_shut_down_first)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ .max_wait_ms = LONG_WAIT_MS });
    wp_future *pending = submit(b, OP_VALUE, 1);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    bitem it = { OP_VALUE, 2 };
    wp_future *f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, &it, sizeof it, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_outcome(pending, WP_CANCELLED, WP_ECANCELED);
    wp_future_release(pending);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

/* --------------------------------------------------- many submitters */

enum { SUBMITTERS = 8, PER_SUBMITTER = 2000 };

/* Item i of thread t: the value t * PER_SUBMITTER + i. */
static int submit_value(void *b, unsigned t, unsigned i, wp_future **out)
{
    bitem it = { OP_VALUE, (int32_t)(t * PER_SUBMITTER + i) };
    return wp_batcher_submit(b, &it, sizeof it, out);
}

static bool got_value(void *b, unsigned t, unsigned i, wp_future *f)
{
    (void)b;
    size_t len;
    const void *p = wp_future_result(f, &len);
    bresult r;
    if (p == NULL || len != sizeof r)
        return false;
    memcpy(&r, p, sizeof r);
    return r.value == (int32_t)(t * PER_SUBMITTER + i) && r.f == f_of(r.value);
}

WP_TEST_BOTH(many_submitting_threads)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ 0 });
    tu_run_crowd(&(tu_crowd){ .threads = SUBMITTERS, .per_thread = PER_SUBMITTER,
                              .submit = submit_value, .ok = got_value, .ctx = b });
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    wp_batcher_stats st = bstats(b);
    ck_assert_uint_eq(st.items, SUBMITTERS * PER_SUBMITTER);
    ck_assert_uint_eq(st.items_batched, SUBMITTERS * PER_SUBMITTER);
    ck_assert_uint_ge(st.batches, SUBMITTERS * PER_SUBMITTER / 64);
    ck_assert(st.mean_batch_size > 0.0 && st.mean_batch_size <= 64.0);
    ck_assert(st.mean_wait_us >= 0.0 && st.mean_wait_us <= (double)st.wait_us_max);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    /* The pool counts a batch task as settled after its done-callback has
       settled the items: read its stats once it has stopped. */
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    tu_assert_stats(tu_pool_stats(p), .submitted = TU_EQ(st.batches),
                    .succeeded = TU_EQ(st.batches));
    finish(b, p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_edges_tests,
        TU_TEST(shutdown_from_done_callback),
        TU_TEST(submit_from_item_callback_full),
        TU_TEST(destroy_races_shutdown),
        TU_TEST(huge_max_wait),
        TU_TEST(pool_shut_down_first),
        TU_TEST(many_submitting_threads))
