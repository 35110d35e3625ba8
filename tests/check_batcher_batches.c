/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_batches.c — making a batcher and the batches it makes
 * (check_batcher.c says how the suite's tests work): its argument checks,
 * the three reasons a batch leaves (its size, the first item's wait, a
 * flush), and what the batch function sees: the items in order, a result
 * for each.
 */
#define _GNU_SOURCE
#include <time.h>

#include "check_batcher.h"

/* How late a batch may leave after its max_wait_ms on a loaded machine
   under a sanitizer; time_trigger_under_trickle needs it below its 3 s. */
#define TIMER_SLACK_MS 2000

/* Block the calling thread until CLOCK_MONOTONIC reaches at_ms, with a
   timed wait on a condition variable nobody signals. */
static void wait_until_ms(int64_t at_ms)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
    struct timespec ts = { .tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1000000L };
    pthread_mutex_lock(&mu);
    while (tu_now_ms() < at_ms)
        pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}

/* --------------------------------------------------------------- arguments */

WP_TEST_BOTH(bad_arguments)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1, .max_message = 4096 });
    wp_batcher *b = (wp_batcher *)&b;
    wp_batcher_options o = { 0 };

    ck_assert_int_eq(wp_batcher_create(NULL, p, bt_apply, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_create(&b, NULL, bt_apply, NULL), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    ck_assert_int_eq(wp_batcher_create(&b, p, NULL, NULL), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .max_wait_ms = -1 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .task.flags = 1u << 7 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .task.timeout_ms = -5 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);

    /* NULL options = all defaults. */
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, NULL), 0);
    ck_assert_ptr_nonnull(b);

    wp_future *f = (wp_future *)&f;
    bitem it = { OP_VALUE, 5 };
    ck_assert_int_eq(wp_batcher_submit(NULL, &it, sizeof it, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, NULL, 5, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(b, &it, sizeof it, 1u << 9, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(NULL, &it, sizeof it, WP_TASK_NOWAIT, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    /* An item larger than the pool's max_message can never be sent. */
    static char big[4097];
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, big, sizeof big, &f), WP_E2BIG);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_submit(b, big, sizeof big, NULL), WP_E2BIG);
    ck_assert_uint_eq(bstats(b).items, 0);

    ck_assert_int_eq(wp_batcher_flush(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_shutdown(NULL, -1), WP_EINVAL);
    wp_batcher_stats s;
    ck_assert_int_eq(wp_batcher_get_stats(NULL, &s), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_get_stats(b, NULL), WP_EINVAL);
    wp_batcher_destroy(NULL);

    /* An empty item (NULL, 0) is fine: the batch function sees len 0, and
       bt_apply fails it alone as "not a bitem". */
    ck_assert_int_eq(wp_batcher_submit(b, NULL, 0, &f), 0);
    wp_future *g = submit(b, OP_VALUE, 5);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_outcome(f, WP_FAILED, WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 99);
    ck_assert_str_eq(wp_future_message(f), "not a bitem");
    expect_value(g, 5);
    wp_future_release(f);
    wp_future_release(g);
    finish(b, p);
}

/* The contract: wp_batcher_create on a pool that is shutting down fails
   with WP_ESHUTDOWN. */
WP_TEST_BOTH(create_on_shut_down_pool)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_batcher *b = (wp_batcher *)&b;
    int rc = wp_batcher_create(&b, p, bt_apply, NULL);
    if (rc == 0) {
        /* Clean up before failing, so the report names the real problem. */
        wp_future *f = submit(b, OP_VALUE, 1);
        wp_batcher_destroy(b);
        tu_wait_settled(f);
        int err = wp_future_error(f);
        wp_future_release(f);
        wp_pool_destroy(p);
        ck_abort_msg("wp_batcher_create on a shut-down pool returned 0, not WP_ESHUTDOWN "
                     "(an item submitted to it then settled with %s)", wp_strerror(err));
    }
    ck_assert_int_eq(rc, WP_ESHUTDOWN);
    ck_assert_ptr_null(b);
    wp_pool_destroy(p);
}

/* ----------------------------------------------------- when batches leave */

WP_TEST_BOTH(size_trigger)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 8, .max_wait_ms = 10000 });
    wp_future *fs[8];
    for (int i = 0; i < 8; i++)
        fs[i] = submit(b, OP_VALUE, i);
    /* A generous deadline: what proves the size sent it is wait_us_max
       below, not how fast it came back. */
    ck_assert_int_eq(wp_wait_all(fs, 8, 30000), 0);
    for (int i = 0; i < 8; i++) {
        bresult r = expect_value(fs[i], i);
        ck_assert_int_eq(r.n, 8);
        ck_assert_int_eq(r.index, i);
    }
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items, 8);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.items_batched, 8);
    ck_assert(s.mean_batch_size == 8.0);
    ck_assert_msg(s.wait_us_max < 10000000, "the batch waited %llu us: it left on time, not size",
                  (unsigned long long)s.wait_us_max);
    release_all(fs, 8);

    /* A ninth item waits for company (10 s): it has not left yet. */
    wp_future *f = submit(b, OP_VALUE, 9);
    s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.pending, 1);
    ck_assert_int_eq(wp_future_state(f), WP_PENDING);
    /* Shutdown sends it. */
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(expect_value(f, 9).n, 1);
    ck_assert_uint_eq(bstats(b).batches, 2);
    wp_future_release(f);
    finish(b, p);
}

WP_TEST_BOTH(time_trigger_from_first_item)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = 200 });
    int64_t a0 = tu_now_ms();
    wp_future *fa = submit(b, OP_VALUE, 1);
    int64_t a1 = tu_now_ms();
    wait_until_ms(a0 + 150);
    int64_t b0 = tu_now_ms();
    wp_future *fb = submit(b, OP_VALUE, 2);
    int64_t b1 = tu_now_ms();
    tu_wait_settled(fa);
    int64_t a_done = tu_now_ms();
    tu_wait_settled(fb);
    expect_value(fa, 1);
    expect_value(fb, 2);

    ck_assert_msg(a_done - a0 >= 200, "A settled %lld ms after its submit, before max_wait_ms",
                  (long long)(a_done - a0));
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items_batched, 2);
    /* The longest wait is A's: at least max_wait_ms, and nowhere near what
       timing from B (350 ms) plus any scheduling slack would give. */
    ck_assert_msg(s.wait_us_max >= 200000, "A waited only %llu us",
                  (unsigned long long)s.wait_us_max);
    ck_assert_msg(s.wait_us_max <= (200 + TIMER_SLACK_MS) * 1000, "A waited %llu us",
                  (unsigned long long)s.wait_us_max);
    if (b1 < a0 + 195) {
        /* B arrived while A still waited: they left together, and B waited
           150 ms (as this thread measured it) less than A did. */
        ck_assert_uint_eq(s.batches, 1);
        uint64_t wait_a = s.wait_us_max, wait_b = s.wait_us_total - s.wait_us_max;
        ck_assert_uint_le(wait_b, wait_a);
        ck_assert_msg(wait_a - wait_b >= (uint64_t)(b0 - a1) * 1000 - 1000,
                      "A waited %llu us and B %llu us, but B came %lld ms later",
                      (unsigned long long)wait_a, (unsigned long long)wait_b,
                      (long long)(b0 - a1));
        ck_assert_int_eq(expect_value(fa, 1).n, 2);
    }
    wp_future_release(fa);
    wp_future_release(fb);
    finish(b, p);
}

/* Items that keep trickling in, one every 100 ms for 3 s, never hold back
   the first of them: max_wait_ms counts from each batch's first item.
   Timed from the last arrival, the first item would wait 3.2 s: more than
   max_wait_ms and all the slack a loaded machine may add. */
WP_TEST_BOTH(time_trigger_under_trickle)
{
    enum { EVERY_MS = 100, ITEMS = 31 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 1024, .max_wait_ms = 200 });
    wp_future *fs[ITEMS];
    int64_t t0 = tu_now_ms();
    for (int i = 0; i < ITEMS; i++) {
        wait_until_ms(t0 + (int64_t)i * EVERY_MS);
        fs[i] = submit(b, OP_VALUE, i);
    }
    for (int i = 0; i < ITEMS; i++)
        expect_value(fs[i], i);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items_batched, ITEMS);
    ck_assert_uint_ge(s.batches, 2);
    ck_assert_msg(s.wait_us_max >= 200000 && s.wait_us_max <= (200 + TIMER_SLACK_MS) * 1000,
                  "the longest wait was %llu us with max_wait_ms 200 (timed from the last "
                  "arrival, the first item would wait 3.2 s)", (unsigned long long)s.wait_us_max);
    release_all(fs, ITEMS);
    finish(b, p);
}

WP_TEST_BOTH(flush_sends_partial_batch)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(b, OP_VALUE, 10 + i);
    ck_assert_uint_eq(bstats(b).pending, 3);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    ck_assert_int_eq(wp_wait_all(fs, 3, TU_DEADLINE_MS), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(expect_value(fs[i], 10 + i).n, 3);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.items_batched, 3);
    ck_assert(s.mean_batch_size == 3.0);
    ck_assert_uint_eq(s.pending, 0);
    /* A flush with nothing waiting sends nothing. */
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 3);
    finish(b, p);
}

/* --------------------------------------------------- what the batch sees */

WP_TEST_BOTH(batch_sees_items_in_order)
{
    static const struct { const char *bytes; size_t len; } in[] = {
        { "alpha", 5 },
        { "", 0 },
        { "with\0a zero byte", 16 },
        { "z", 1 },
        { NULL, 300 }, /* a pattern */
    };
    enum { N = sizeof in / sizeof in[0] };
    char pattern[300];
    tu_pattern(pattern, sizeof pattern, 3);
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_describe, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        const void *bytes = in[i].bytes != NULL ? in[i].bytes : pattern;
        ck_assert_int_eq(wp_batcher_submit(b, bytes, in[i].len, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        tu_wait_settled(fs[i]);
        ck_assert_int_eq(wp_future_error(fs[i]), 0);
        size_t len;
        const char *r = wp_future_result(fs[i], &len);
        uint32_t where[2];
        ck_assert_uint_eq(len, sizeof where + in[i].len);
        memcpy(where, r, sizeof where);
        ck_assert_uint_eq(where[0], (unsigned)i);
        ck_assert_uint_eq(where[1], N);
        const void *bytes = in[i].bytes != NULL ? in[i].bytes : pattern;
        ck_assert_int_eq(memcmp(r + sizeof where, bytes, in[i].len), 0);
    }
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(per_item_results)
{
    enum { N = 200 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 16, .max_wait_ms = 5 });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, i * 37 - 1000);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_le(expect_value(fs[i], i * 37 - 1000).n, 16);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items, N);
    ck_assert_uint_eq(s.items_batched, N);
    ck_assert_uint_ge(s.batches, N / 16);
    ck_assert(s.mean_batch_size <= 16.0);
    release_all(fs, N);
    finish(b, p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_batches_tests,
        TU_TEST(bad_arguments),
        TU_TEST(create_on_shut_down_pool),
        TU_TEST(size_trigger),
        TU_TEST(time_trigger_from_first_item),
        TU_TEST(time_trigger_under_trickle),
        TU_TEST(flush_sends_partial_batch),
        TU_TEST(batch_sees_items_in_order),
        TU_TEST(per_item_results))
