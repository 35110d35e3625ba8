/* SPDX-License-Identifier: MIT */
/*
 * check_control_retry.c — retries (check_control.c says how the suite's
 * tests work): a failing, crashing or timed-out task runs again up to its
 * retries, each attempt seeing its number (count_task), with delays that
 * double and block no other task, and a cancel during a delay ends it.
 */
#define _GNU_SOURCE
#include "check_control.h"

/* f, a count_task, succeeded on attempt n (its result is the attempt
   number). */
static void check_succeeded_on_attempt(wp_future *f, int n)
{
    tu_check_echo(f, &n, sizeof n);
}

WP_TEST_BOTH(retry_until_success)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 3, CT_FAIL);
    wp_task_options o = { .retries = 3 };
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    check_succeeded_on_attempt(f, 3);
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .succeeded = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(retries_exhausted)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 100, CT_FAIL);
    wp_task_options o = { .retries = 2 };
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 103); /* the third attempt's own code */
    ck_assert_str_eq(wp_future_message(f), "attempt 3 fails");
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .failed = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(retry_after_crash)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 2, CT_SEGV);
    wp_task_options o = { .retries = 1 };
    wp_future *f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 2);
    check_succeeded_on_attempt(f, 2);
    ck_assert_int_eq(file_size(a.path), 2);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(1), .crashed = TU_EQ(0) /* only outcomes count */,
                       .workers_started = TU_EQ(2));

    /* Crashing on every attempt: the last crash is the outcome. */
    a = count_arg_of("count2", 100, CT_SEGV);
    o.retries = 2;
    wp_future *g = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 2 + 3);
    ck_assert_int_eq(wp_future_error(g), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(g), SIGSEGV);
    ck_assert_int_eq(file_size(a.path), 3);
    s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(3), .crashed = TU_EQ(1));
    wp_future_release(f);
    wp_future_release(g);
    wp_pool_destroy(p);
}

/* The deadline is per attempt: a first attempt that hangs is killed at
   its deadline, and the retry, with a deadline of its own, succeeds. */
WP_TEST_BOTH(retry_after_timeout)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 3, CT_HANG);
    wp_task_options o = { .timeout_ms = 150, .retries = 2 };
    int64_t t0 = tu_now_ms();
    wp_future *f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 1 + 2);
    int64_t took = tu_now_ms() - t0;
    check_succeeded_on_attempt(f, 3);
    ck_assert_int_ge(took, 2 * 150);
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .timed_out = TU_EQ(0) /* only outcomes count */,
                       .succeeded = TU_EQ(1));
    wp_future_release(f);

    /* Every attempt hangs: the last timeout is the outcome. */
    a = count_arg_of("count2", 100, CT_HANG);
    o = (wp_task_options){ .timeout_ms = 100, .retries = 1 };
    f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 3 + 2);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(wp_future_message(f), "100 ms"));
    ck_assert_int_eq(file_size(a.path), 2);
    s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(3), .timed_out = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* retry_delay_ms before the first retry, doubled before each next one. */
WP_TEST_BOTH(retry_delay_doubles)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 3, CT_FAIL);
    wp_task_options o = { .retries = 2, .retry_delay_ms = 100 };
    int64_t t0 = tu_now_ms();
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    int64_t took = tu_now_ms() - t0;
    check_succeeded_on_attempt(f, 3);
    ck_assert_msg(took >= 300, "two retries after 100 + 200 ms took only %lld ms", (long long)took);
    ck_assert_uint_eq(tu_pool_stats(p).retried, 2);
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* A task waiting out its retry delay holds up nothing: quick tasks run on
   the only worker meanwhile.  The delay is far longer than they take, even
   on a loaded machine under a sanitizer (RETRY_HOLD_MS times the build's
   slowdown), so they are all done before it ends. */
#define RETRY_HOLD_MS 1500
WP_TEST_BOTH(retry_delay_does_not_block)
{
    const int64_t delay = RETRY_HOLD_MS * (int64_t)tu_slowdown();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 2, CT_FAIL);
    wp_task_options o = { .retries = 1, .retry_delay_ms = delay };
    int64_t t0 = tu_now_ms();
    wp_future *r = tu_submit(p, count_task, &a, sizeof a, &o);
    TU_POLL_UNTIL(tu_pool_stats(p).retried >= 1); /* the first attempt failed: it waits */
    enum { N = 20 };
    wp_future *f[N];
    int v[N];
    for (int i = 0; i < N; i++) {
        v[i] = i * 31;
        f[i] = tu_submit(p, tu_echo, &v[i], sizeof v[i], NULL);
    }
    ck_assert_int_eq(wp_wait_all(f, N, TU_DEADLINE_MS), 0);
    int64_t others_done = tu_now_ms() - t0;
    ck_assert_msg(wp_future_wait(r, 0) == WP_ETIMEDOUT,
                  "the retry did not wait %lld ms (the others took %lld ms)", (long long)delay,
                  (long long)others_done);
    ck_assert_int_eq(wp_future_state(r), WP_PENDING); /* between attempts */
    ck_assert_int_eq(file_size(a.path), 1);
    for (int i = 0; i < N; i++) {
        tu_check_echo(f[i], &v[i], sizeof v[i]);
        wp_future_release(f[i]);
    }
    tu_wait_settled(r);
    check_succeeded_on_attempt(r, 2);
    ck_assert_int_ge(tu_now_ms() - t0, delay);
    wp_future_release(r);
    wp_pool_destroy(p);
}

/* Cancelled during its retry delay: settles at once, no attempt follows. */
WP_TEST_BOTH(cancel_during_retry_delay)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 100, CT_FAIL);
    wp_task_options o = { .retries = 5, .retry_delay_ms = 300 };
    wp_future *r = tu_submit(p, count_task, &a, sizeof a, &o);
    TU_POLL_UNTIL(tu_pool_stats(p).retried >= 1); /* the first attempt failed */
    cancel_promptly(r);
    check_cancelled(r);
    long attempts = file_size(a.path);
    ck_assert_int_ge(attempts, 1);
    uint64_t retried = tu_pool_stats(p).retried;
    /* While a 900 ms task keeps one worker busy, the other stays free for a
       retry that would be due after 300 ms (and 600 ms more): none comes. */
    int64_t ms = 900;
    wp_future *w = tu_run(p, tu_sleep, &ms, sizeof ms, NULL);
    tu_check_echo(w, &ms, sizeof ms);
    ck_assert_int_eq(file_size(a.path), attempts);
    wp_pool_stats s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(retried), .cancelled = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(w);
    wp_future_release(r);
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_retry_tests,
        TU_TEST(retry_until_success),
        TU_TEST(retries_exhausted),
        TU_TEST(retry_after_crash),
        TU_TEST(retry_after_timeout),
        TU_TEST(retry_delay_doubles),
        TU_TEST(retry_delay_does_not_block),
        TU_TEST(cancel_during_retry_delay))
