/* SPDX-License-Identifier: MIT */
/*
 * check_pool_shutdown.c — the end of a pool (check_pool.c says how the
 * suite's tests work): shutdown from many threads at once, destroy racing
 * it, submits after it, and futures that outlive the pool.
 */
#define _GNU_SOURCE
#include "check_pool.h"

/* -------------------------------------------------------------- shutdown */

static void *shutdown_thread(void *arg)
{
    return (void *)(intptr_t)wp_pool_shutdown(arg, -1);
}

WP_TEST_BOTH(shutdown_idempotent_and_concurrent)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, 0), 0);
    wp_pool_destroy(p);

    /* Two threads at once, with work in flight: both return once it is
       all done, and the work completes (grace -1). */
    p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 8 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        int64_t ms = 20;
        ck_assert_int_eq(wp_submit(p, tu_sleep, &ms, sizeof ms, NULL, &fs[i]), 0);
    }
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, shutdown_thread, p), 0);
    ck_assert_int_eq(pthread_create(&b, NULL, shutdown_thread, p), 0);
    void *ra, *rb;
    ck_assert_int_eq(pthread_join(a, &ra), 0);
    ck_assert_int_eq(pthread_join(b, &rb), 0);
    ck_assert_int_eq((int)(intptr_t)ra, 0);
    ck_assert_int_eq((int)(intptr_t)rb, 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0); /* settled already */
        int64_t ms = 20;
        tu_check_echo(fs[i], &ms, sizeof ms);
        wp_future_release(fs[i]);
    }
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .workers_alive = TU_EQ(0));
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_destroy(p);
    ck_assert_int_eq(wp_pool_shutdown(NULL, -1), WP_EINVAL);
    wp_pool_destroy(NULL);
}

/* wp_pool_destroy while other threads wait in wp_pool_shutdown(-1): they
   all return 0 and destroy frees the pool only after they have left it. */
static int shutdown_blocking(void *pool)
{
    return wp_pool_shutdown(pool, -1);
}

WP_TEST_BOTH(destroy_races_shutdown)
{
    enum { ROUNDS = 10, WAITERS = 4 };
    tu_hold h;
    tu_hold_open(&h);
    for (int round = 0; round < ROUNDS; round++) {
        wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
        tu_report_arg a = tu_report_arg_of(0, &h.report, &h.gate);
        ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, NULL), 0);
        ck_assert_int_gt(tu_fifo_read_pid(&h.report, TU_DEADLINE_MS), 0);
        tu_blocker w[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            tu_blocker_start(&w[i], shutdown_blocking, p);
        tu_fifo_release(&h.gate, 1);
        wp_pool_destroy(p); /* the waiters may still be inside */
        for (int i = 0; i < WAITERS; i++)
            ck_assert_int_eq(tu_blocker_join(&w[i]), 0);
    }
    tu_hold_close(&h);
}

WP_TEST_BOTH(submit_after_shutdown)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    wp_future *f = tu_run(p, tu_echo, "a", 1, NULL);
    wp_future_release(f);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, NULL, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, NULL, NULL), WP_ESHUTDOWN);
    wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, &nowait, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, 1);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(futures_outlive_pool)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 20 };
    wp_future *fs[N];
    char payload[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(payload[i], sizeof payload[i], "result number %d", i);
        ck_assert_int_eq(wp_submit(p, tu_echo, payload[i], strlen(payload[i]) + 1, NULL, &fs[i]), 0);
    }
    int code = 17;
    wp_future *failing;
    ck_assert_int_eq(wp_submit(p, tu_fail, &code, sizeof code, NULL, &failing), 0);
    ck_assert_int_eq(wp_future_wait(fs[0], -1), 0);
    /* Destroy without waiting for the rest: it runs them to the end. */
    wp_pool_destroy(p);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        tu_check_echo(fs[i], payload[i], strlen(payload[i]) + 1);
        wp_future_release(fs[i]);
    }
    ck_assert_int_eq(wp_future_state(failing), WP_FAILED);
    ck_assert_int_eq(wp_future_error(failing), WP_ETASK);
    ck_assert_int_eq(wp_future_code(failing), 17);
    ck_assert_str_eq(wp_future_message(failing), "tu_fail");
    ck_assert_int_eq(wp_future_cancel(failing), WP_EINVAL);
    wp_future_release(failing);
}

/* ---------------------------------------------------------- its tests */

TU_PART(pool_add_shutdown_tests,
        TU_TEST(shutdown_idempotent_and_concurrent),
        TU_TEST(destroy_races_shutdown),
        TU_TEST(submit_after_shutdown),
        TU_TEST(futures_outlive_pool))
