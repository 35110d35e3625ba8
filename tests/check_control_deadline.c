/* SPDX-License-Identifier: MIT */
/*
 * check_control_deadline.c — per-task deadlines (check_control.c says
 * how the suite's tests work): the deadline counts from the start of the
 * attempt, a task past it has its worker killed and fails WP_ETIMEDOUT,
 * hangs are cut off, and a task finishing right at its deadline settles
 * exactly once.
 */
#define _GNU_SOURCE
#include "check_control.h"

/* The deadline counts from the start of the attempt: a task that waited
   longer than its timeout behind another one still succeeds. */
WP_TEST_BOTH(deadline_counts_from_start)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int64_t t0 = tu_now_ms();
    int64_t ms_a = 300, ms_b = 20; /* b waits longer than its limit, runs far less */
    wp_future *a = tu_submit(p, tu_sleep, &ms_a, sizeof ms_a, NULL);
    wp_task_options o = { .timeout_ms = 200 };
    wp_future *b = tu_submit(p, tu_sleep, &ms_b, sizeof ms_b, &o);
    tu_check_echo(b, &ms_b, sizeof ms_b);
    ck_assert_int_ge(tu_now_ms() - t0, ms_a + ms_b); /* it did wait behind a */
    tu_check_echo(a, &ms_a, sizeof ms_a);
    wp_pool_stats s = settled_stats(p, 2);
    tu_assert_stats(s, .timed_out = TU_EQ(0), .succeeded = TU_EQ(2));
    wp_future_release(a);
    wp_future_release(b);
    wp_pool_destroy(p);
}

/* Past its deadline the worker is killed, the task fails WP_ETIMEDOUT with
   the limit in its message, and a replacement serves the next task. */
WP_TEST_BOTH(deadline_kills_worker)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    wp_task_options o = { .timeout_ms = 200 };
    int64_t t0 = tu_now_ms();
    int pid;
    wp_future *f = submit_running(p, &report, 5000, &o, &pid);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    tu_wait_workers(p, 1, 2); /* the replacement */
    ck_assert_int_eq(w, 0);
    ck_assert_int_ge(took, 200);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETIMEDOUT);
    ck_assert_ptr_null(wp_future_result(f, NULL));
    ck_assert_msg(strstr(wp_future_message(f), "200 ms") != NULL,
                  "message \"%s\" does not name the limit", wp_future_message(f));
    wait_pid_exited(pid);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .timed_out = TU_EQ(1), .failed = TU_EQ(1), .crashed = TU_EQ(0));

    wp_future *g = tu_run(p, tu_pid, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_state(g), WP_SUCCEEDED);
    int pid2;
    memcpy(&pid2, wp_future_result(g, NULL), sizeof pid2);
    ck_assert_int_ne(pid2, pid);
    wp_future_release(f);
    wp_future_release(g);
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(deadline_on_hang)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_task_options o = { .timeout_ms = 100 };
    wp_future *f[3];
    for (int i = 0; i < 3; i++)
        f[i] = tu_submit(p, tu_hang, NULL, 0, &o);
    bool all = quiet_wait_all(f, 3, TU_DEADLINE_MS);
    tu_wait_workers(p, 2, 2 + 3); /* one replacement per kill */
    ck_assert(all);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(wp_future_state(f[i]), WP_FAILED);
        ck_assert_int_eq(wp_future_error(f[i]), WP_ETIMEDOUT);
        ck_assert_ptr_nonnull(strstr(wp_future_message(f[i]), "100 ms"));
        wp_future_release(f[i]);
    }
    const char msg[] = "after the hangs";
    wp_future *g = tu_run(p, tu_echo, msg, sizeof msg, NULL);
    tu_check_echo(g, msg, sizeof msg);
    wp_future_release(g);
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .timed_out = TU_EQ(3), .crashed = TU_EQ(0), .workers_started = TU_EQ(2 + 3));
    wp_pool_destroy(p);
}

/* Tasks that finish right around their deadline: each settles exactly
   once, either way. */
WP_TEST_BOTH(deadline_race_settles_once)
{
    enum { N = 48 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 4 });
    wp_future *f[N];
    int64_t ms[N];
    atomic_int calls[N];
    for (int i = 0; i < N; i++) {
        int64_t t = 20 + (i % 4) * 10;
        ms[i] = t + ((i % 3) - 1) * 2;
        atomic_init(&calls[i], 0);
        wp_task_options o = { .timeout_ms = t };
        f[i] = tu_submit(p, tu_sleep, &ms[i], sizeof ms[i], &o);
        ck_assert_int_eq(wp_future_on_done(f[i], count_done, &calls[i]), 0);
    }
    bool all = quiet_wait_all(f, N, 60000);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* callbacks have all run */
    ck_assert(all);
    unsigned ok = 0, late = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&calls[i]), 1);
        int st = wp_future_state(f[i]);
        if (st == WP_SUCCEEDED) {
            tu_check_echo(f[i], &ms[i], sizeof ms[i]);
            ok++;
        } else {
            ck_assert_int_eq(st, WP_FAILED);
            ck_assert_int_eq(wp_future_error(f[i]), WP_ETIMEDOUT);
            late++;
        }
        wp_future_release(f[i]);
    }
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(N), .succeeded = TU_EQ(ok), .failed = TU_EQ(late),
                       .timed_out = TU_EQ(late), .cancelled = TU_EQ(0), .crashed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_deadline_tests,
        TU_TEST(deadline_counts_from_start),
        TU_TEST(deadline_kills_worker),
        TU_TEST(deadline_on_hang),
        TU_TEST(deadline_race_settles_once))
