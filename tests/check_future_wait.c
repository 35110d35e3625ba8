/* SPDX-License-Identifier: MIT */
/*
 * check_future_wait.c — waiting for one future (check_future.c says how
 * the suite's tests work): a timeout on an unsettled future, timeouts that
 * are never short, and waiters on other threads released by a settle.
 */
#define _GNU_SOURCE
#include <time.h>
#include <unistd.h>

#include "check_future.h"

/* ------------------------------------------------------------- timing */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ waits */

WP_TEST(wait_timeout_unsettled)
{
    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_wait(f, 0), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_future_wait(f, 1), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_future_wait(f, 50), WP_ETIMEDOUT);
    ck_assert(wp__future_start(f));
    ck_assert_int_eq(wp_future_wait(f, 0), WP_ETIMEDOUT); /* running is not settled */
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    wp_future_release(f);
}

/*
 * A wait with a timeout must not give up before the timeout has passed
 * (lower bound only: no upper bound is asserted).  The clock is read to the
 * nanosecond; the start is placed late in a millisecond, the case in which a
 * deadline computed from a clock truncated to whole milliseconds comes up
 * to 1 ms short.
 */
static int64_t timed_from_late_in_a_ms(int (*fn)(void *), void *arg, int *rc)
{
    int64_t t0;
    while (((t0 = now_ns()) % 1000000) < 900000)
        ; /* reading the clock, not sleeping */
    *rc = fn(arg);
    return now_ns() - t0;
}

static int do_future_wait(void *arg) { return wp_future_wait(arg, 50); }
static int do_wait_any(void *arg)
{
    size_t idx = 99;
    return wp_wait_any(arg, 2, 50, &idx);
}
static int do_wait_all(void *arg) { return wp_wait_all(arg, 2, 50); }

WP_TEST(wait_timeout_lower_bound)
{
    wp_future *fs[2] = { new_future(), new_future() };
    int rc;
    int64_t w = timed_from_late_in_a_ms(do_future_wait, fs[0], &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    int64_t a = timed_from_late_in_a_ms(do_wait_any, fs, &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    ck_assert_int_eq(settle_ok(fs[0], "one of two"), WP_SUCCEEDED);
    int64_t l = timed_from_late_in_a_ms(do_wait_all, fs, &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    ck_assert_msg(w >= 50000000 && a >= 50000000 && l >= 50000000,
                  "a 50 ms timeout gave up early: wp_future_wait after %.3f ms, "
                  "wp_wait_any after %.3f ms, wp_wait_all after %.3f ms",
                  w / 1e6, a / 1e6, l / 1e6);
    wp_future_release(fs[0]);
    wp_future_release(fs[1]);
}

typedef struct waiter {
    pthread_t  thread;
    wp_future *f;
    int64_t    timeout;
    atomic_int tid;
    int        rc;
    int        state_seen; /* the state right after the wait returned */
    atomic_bool *settled_flag;
    bool       settled_before_return;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    atomic_store(&w->tid, (int)gettid());
    w->rc = wp_future_wait(w->f, w->timeout);
    w->settled_before_return = atomic_load(w->settled_flag);
    w->state_seen = wp_future_state(w->f);
    return NULL;
}

static void waiter_start(waiter *w, wp_future *f, int64_t timeout, atomic_bool *flag)
{
    w->f = f;
    w->timeout = timeout;
    atomic_init(&w->tid, 0);
    w->rc = 1;
    w->settled_flag = flag;
    ck_assert_int_eq(pthread_create(&w->thread, NULL, waiter_main, w), 0);
}

WP_TEST(waiter_released_by_settle_from_other_thread)
{
    static const int64_t timeouts[] = { -1, 30000 };
    for (size_t i = 0; i < 2; i++) {
        wp_future *f = new_future();
        atomic_bool flag;
        atomic_init(&flag, false);
        waiter w;
        waiter_start(&w, f, timeouts[i], &flag);
        wait_thread_sleeping(&w.tid);
        ck_assert_int_eq(wp_future_state(f), WP_PENDING);
        atomic_store(&flag, true);
        ck_assert_int_eq(settle_ok(f, "hello"), WP_SUCCEEDED);
        ck_assert_int_eq(pthread_join(w.thread, NULL), 0);
        ck_assert_int_eq(w.rc, 0);
        ck_assert(w.settled_before_return);
        ck_assert_int_eq(w.state_seen, WP_SUCCEEDED);
        wp_future_release(f);
    }
}

WP_TEST(many_waiters_all_wake)
{
    enum { N = 8 };
    wp_future *f = new_future();
    atomic_bool flag;
    atomic_init(&flag, false);
    waiter w[N];
    for (unsigned i = 0; i < N; i++)
        waiter_start(&w[i], f, i % 2 ? -1 : 30000, &flag);
    for (unsigned i = 0; i < N; i++)
        wait_thread_sleeping(&w[i].tid);
    atomic_store(&flag, true);
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 4, "all of you", NULL, 0), WP_FAILED);
    for (unsigned i = 0; i < N; i++) {
        ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
        ck_assert_int_eq(w[i].rc, 0);
        ck_assert(w[i].settled_before_return);
        ck_assert_int_eq(w[i].state_seen, WP_FAILED);
    }
    wp_future_release(f);
}

/* ---------------------------------------------------------- its tests */

TU_PART(future_add_wait_tests,
        TU_CASE("wait", wait_timeout_unsettled),
        TU_CASE("wait", wait_timeout_lower_bound),
        TU_CASE("wait", waiter_released_by_settle_from_other_thread),
        TU_CASE("wait", many_waiters_all_wake))
