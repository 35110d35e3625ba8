/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_failures.c — how failures reach the items (check_batcher.c
 * says how the suite's tests work): one item's failure, the whole batch's
 * (with any code), a crashing batch, a batch past its timeout, retries, an
 * item result too big, and batches split to fit a message.
 */
#define _GNU_SOURCE
#include "check_batcher.h"

/* Submit n items into fs: the one at index odd does op with value, every
   other one is OP_VALUE with its index. */
static void submit_with_odd_one(wp_batcher *b, wp_future **fs, int n, int odd, int32_t op,
                                int32_t value)
{
    for (int i = 0; i < n; i++)
        fs[i] = i == odd ? submit(b, op, value) : submit(b, OP_VALUE, i);
}

WP_TEST_BOTH(per_item_failure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 5, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[5];
    submit_with_odd_one(b, fs, 5, 2, OP_FAIL, 42);
    expect_outcome(fs[2], WP_FAILED, WP_ETASK);
    ck_assert_int_eq(wp_future_code(fs[2]), 42);
    ck_assert_str_eq(wp_future_message(fs[2]), "item 42 failed");
    for (int i = 0; i < 5; i++)
        if (i != 2)
            ck_assert_int_eq(expect_value(fs[i], i).n, 5);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 5);
    finish(b, p);
}

WP_TEST_BOTH(whole_batch_failure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 4, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[4];
    submit_with_odd_one(b, fs, 4, 1, OP_RETURN, 7);
    for (int i = 0; i < 4; i++) {
        expect_outcome(fs[i], WP_FAILED, WP_ETASK);
        ck_assert_int_eq(wp_future_code(fs[i]), 7);
    }
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 4);
    finish(b, p);
}

/* Submit a batch of n items, one of which does `op`; every item must fail
   with `error`; then the batcher must go on serving. */
static void whole_batch_dies(wp_pool *p, wp_batcher *b, int32_t op, int error, int code,
                             const char *text)
{
    uint64_t started = tu_pool_stats(p).workers_started;
    enum { N = 3 };
    wp_future *fs[N];
    submit_with_odd_one(b, fs, N, 1, op, 0);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        expect_outcome(fs[i], WP_FAILED, error);
        ck_assert_int_eq(wp_future_code(fs[i]), code);
        if (text != NULL)
            ck_assert_msg(strstr(wp_future_message(fs[i]), text) != NULL,
                          "message \"%s\" lacks \"%s\"", wp_future_message(fs[i]), text);
    }
    release_all(fs, N);
    /* The pool replaces the worker; the batcher keeps working. */
    tu_wait_workers(p, 2, started + 1);
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, 100 + i);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        expect_value(fs[i], 100 + i);
    release_all(fs, N);
}

WP_TEST_BOTH(crashing_batch)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    whole_batch_dies(p, b, OP_SEGV, WP_ECRASHED, 11, "SIGSEGV");
    whole_batch_dies(p, b, OP_SEGV, WP_ECRASHED, 11, "SIGSEGV");
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* its counters are final */
    wp_pool_stats ps = tu_pool_stats(p);
    ck_assert_uint_eq(ps.crashed, 2);
    finish(b, p);
}

WP_TEST_BOTH(batch_timeout)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS,
                              .task.timeout_ms = 1000 });
    whole_batch_dies(p, b, OP_HANG, WP_ETIMEDOUT, 0, NULL);
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* its counters are final */
    wp_pool_stats ps = tu_pool_stats(p);
    ck_assert_uint_eq(ps.timed_out, 1);
    finish(b, p);
}

/* The contract: a non-zero return fails every item with WP_ETASK and that
   code, whatever the code.  WP_E2BIG's value is what a batch function
   returns when it passes on a failed wp_buf_append. */
WP_TEST_BOTH(whole_batch_failure_any_code)
{
    static const int32_t codes[] = { -1, WP_E2BIG, 1 << 20 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = LONG_WAIT_MS });
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        wp_future *fs[2] = { submit(b, OP_VALUE, 1), submit(b, OP_RETURN, codes[k]) };
        for (int i = 0; i < 2; i++) {
            tu_wait_settled(fs[i]);
            ck_assert_msg(wp_future_error(fs[i]) == WP_ETASK && wp_future_code(fs[i]) == codes[k],
                          "batch function returned %d: item %d settled with %s, code %d (%s)",
                          (int)codes[k], i, wp_strerror(wp_future_error(fs[i])),
                          wp_future_code(fs[i]), wp_future_message(fs[i]));
        }
        release_all(fs, 2);
    }
    finish(b, p);
}

/* task.retries applies to batches: a batch that crashes once runs again
   and its items succeed. */
WP_TEST_BOTH(batch_retries)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 3, .max_wait_ms = LONG_WAIT_MS, .task.retries = 1 });
    wp_future *fs[3] = { submit(b, OP_VALUE, 1), submit(b, OP_SEGV1, 2), submit(b, OP_VALUE, 3) };
    for (int i = 0; i < 3; i++)
        expect_value(fs[i], i + 1);
    ck_assert_int_eq(atomic_load(&pr->entered), 2);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 3);
    finish(b, p);
}

/* An item result over max_message fails that item alone with WP_E2BIG. */
WP_TEST_BOTH(item_result_too_big)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2, .max_message = 4096 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 3, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[3] = { submit(b, OP_VALUE, 1), submit(b, OP_BIG, 5000), submit(b, OP_VALUE, 3) };
    expect_outcome(fs[1], WP_FAILED, WP_E2BIG);
    expect_value(fs[0], 1);
    expect_value(fs[2], 3);
    release_all(fs, 3);
    finish(b, p);
}

/* Items that do not fit one message together leave in several batches. */
WP_TEST_BOTH(batches_split_by_message_size)
{
    enum { N = 3, LEN = 1500 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2, .max_message = 4096 });
    wp_batcher *b = make_batcher(
        p, bt_describe, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    char items[N][LEN];
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        tu_pattern(items[i], LEN, (unsigned)i);
        ck_assert_int_eq(wp_batcher_submit(b, items[i], LEN, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        tu_wait_settled(fs[i]);
        ck_assert_msg(wp_future_error(fs[i]) == 0, "item %d: %s (%s)", i,
                      wp_strerror(wp_future_error(fs[i])), wp_future_message(fs[i]));
        size_t len;
        const char *r = wp_future_result(fs[i], &len);
        ck_assert_uint_eq(len, 8 + LEN);
        ck_assert(tu_pattern_ok(r + 8, LEN, (unsigned)i));
    }
    ck_assert_uint_ge(bstats(b).batches, 2);
    release_all(fs, N);
    finish(b, p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_failures_tests,
        TU_TEST(per_item_failure),
        TU_TEST(whole_batch_failure),
        TU_TEST(whole_batch_failure_any_code),
        TU_TEST(crashing_batch),
        TU_TEST(batch_timeout),
        TU_TEST(batch_retries),
        TU_TEST(item_result_too_big),
        TU_TEST(batches_split_by_message_size))
