/* SPDX-License-Identifier: MIT */
/*
 * check_faults_end.c — a busy pool's end (check_faults.c says how the
 * suite's tests work): shutdown with an unlimited, a zero and a limited
 * grace, and the owning process dying with its workers busy: no process
 * outlives it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_faults.h"

#define GRACE_MS 400          /* shutdown_grace_limited's grace, times tu_slowdown() */

/* ----------------------------------------------------- shutdown while busy */

WP_TEST_BOTH(shutdown_grace_unlimited)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 6 };
    wp_future *fs[N];
    tu_report_arg a = tu_report_arg_of(30, NULL, NULL);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    int pids[N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        ck_assert_int_eq(wp_future_state(fs[i]), WP_SUCCEEDED);
        pids[i] = tu_result_int(fs[i]);
        wp_future_release(fs[i]);
    }
    assert_gone(pids, N);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .cancelled = TU_EQ(0), .workers_alive = TU_EQ(0),
                       .running = TU_EQ(0));
    wp_pool_destroy(p);
}

WP_TEST_BOTH(shutdown_grace_zero)
{
    tu_fifo report;
    tu_fifo_open(&report);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });

    /* Both workers hang in tasks we saw start, one after the other. */
    enum { N = 6 };
    wp_future *fs[N];
    int pids[3];
    tu_report_arg a = tu_report_arg_of(-1, &report, NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, &fs[i]), 0);
        pids[i] = tu_fifo_read_pid(&report, TU_DEADLINE_MS);
        ck_assert_int_gt(pids[i], 0);
    }
    ck_assert_int_ne(pids[0], pids[1]);
    pids[2] = forkserver_of(pids[0]);
    /* Queued behind them: plain hangs and echoes. */
    for (int i = 2; i < N; i++) {
        if (i % 2 == 0)
            ck_assert_int_eq(wp_submit(p, tu_hang, NULL, 0, NULL, &fs[i]), 0);
        else
            ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, 0), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        ck_assert_int_eq(wp_future_state(fs[i]), WP_CANCELLED);
        ck_assert_int_eq(wp_future_error(fs[i]), WP_ECANCELED);
        ck_assert_ptr_null(wp_future_result(fs[i], NULL));
        wp_future_release(fs[i]);
    }
    assert_gone(pids, tu_method == WP_START_FORKSERVER ? 3 : 2);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(N), .cancelled = TU_EQ(N), .succeeded = TU_EQ(0),
                       .failed = TU_EQ(0), .workers_alive = TU_EQ(0), .running = TU_EQ(0),
                       .queued = TU_EQ(0));
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(shutdown_grace_limited)
{
    /* Long enough for a 30 ms task and one queued behind it, on a loaded
       machine under a sanitizer too (GRACE_MS per unit of slowdown). */
    const int64_t grace = GRACE_MS * (int64_t)tu_slowdown();
    tu_fifo report;
    tu_fifo_open(&report);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });

    int pids[3];
    wp_future *hang, *shortf, *queued;
    /* tu_report with ms -1 is tu_hang that first tells us it runs. */
    tu_report_arg a = tu_report_arg_of(-1, &report, NULL);
    ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, &hang), 0);
    pids[0] = tu_fifo_read_pid(&report, TU_DEADLINE_MS);
    ck_assert_int_gt(pids[0], 0);
    a = tu_report_arg_of(30, &report, NULL);
    ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, &shortf), 0);
    pids[1] = tu_fifo_read_pid(&report, TU_DEADLINE_MS);
    ck_assert_int_gt(pids[1], 0);
    ck_assert_int_ne(pids[0], pids[1]);
    pids[2] = forkserver_of(pids[0]);
    int v = 77;
    ck_assert_int_eq(wp_submit(p, tu_echo, &v, sizeof v, NULL, &queued), 0);

    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_pool_shutdown(p, grace), 0);
    int64_t took = tu_now_ms() - t0;
    /* The hanging task held the pool for the whole grace, then was cancelled. */
    ck_assert_msg(took >= grace - 5, "shutdown took %lld ms, grace %lld", (long long)took,
                  (long long)grace);
    ck_assert_msg(took < grace + TU_DEADLINE_MS, "shutdown took %lld ms", (long long)took);
    ck_assert_int_eq(wp_future_state(hang), WP_CANCELLED);
    ck_assert_int_eq(wp_future_error(hang), WP_ECANCELED);
    /* The short one and the one queued behind it finished within it. */
    ck_assert_int_eq(wp_future_state(shortf), WP_SUCCEEDED);
    ck_assert_int_eq(tu_result_int(shortf), pids[1]);
    ck_assert_int_eq(wp_future_state(queued), WP_SUCCEEDED);
    ck_assert_int_eq(tu_result_int(queued), 77);
    wp_future_release(hang);
    wp_future_release(shortf);
    wp_future_release(queued);
    assert_gone(pids, tu_method == WP_START_FORKSERVER ? 3 : 2);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(3), .succeeded = TU_EQ(2), .cancelled = TU_EQ(1),
                       .failed = TU_EQ(0));
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

/* ------------------------------------------------------ the owner dies */

/* In a child of the test: create a pool, get both workers hanging in tasks
   that report their pids, pass the pids on to the test, and wait to be
   killed.  No Check calls here: this is not the test's process. */
static _Noreturn void owner_main(int start_method, tu_fifo *report, int out)
{
    wp_pool *p = NULL;
    wp_pool_options o = { .workers = 2, .start_method = start_method };
    if (wp_pool_create(&p, &o) != 0)
        _exit(10);
    if (!tu_workers_up(p, 2, 0, TU_DEADLINE_MS))
        _exit(11);
    tu_report_arg a = tu_report_arg_of(-1, report, NULL);
    for (int i = 0; i < 2; i++) {
        if (wp_submit(p, tu_report, &a, sizeof a, NULL, NULL) != 0)
            _exit(12);
        int pid = tu_fifo_read_pid(report, TU_DEADLINE_MS);
        if (pid <= 0 || write(out, &pid, sizeof pid) != (ssize_t)sizeof pid)
            _exit(13);
    }
    for (;;)
        pause();
}

WP_TEST_BOTH(owner_dies)
{
    tu_fifo report;
    tu_fifo_open(&report);
    int pp[2];
    ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
    pid_t owner = fork();
    ck_assert_int_ge(owner, 0);
    if (owner == 0) {
        close(pp[0]);
        owner_main(tu_method, &report, pp[1]);
    }
    close(pp[1]);
    int pids[3];
    for (int i = 0; i < 2; i++) {
        pids[i] = tu_read_int(pp[0], TU_DEADLINE_MS);
        if (pids[i] <= 0) {
            int st = 0;
            kill(owner, SIGKILL);
            waitpid(owner, &st, 0);
            ck_abort_msg("the owner did not report its workers (status 0x%x)", (unsigned)st);
        }
    }
    close(pp[0]);
    ck_assert_int_ne(pids[0], pids[1]);
    /* Who is whose child: workers under the owner (fork), or under a fork
       server under the owner. */
    int n = 2;
    for (int i = 0; i < 2; i++) {
        int parent = tu_pid_parent(pids[i]);
        if (tu_no_forkserver()) {
            ck_assert_int_eq(parent, owner);
        } else {
            ck_assert_int_ne(parent, owner);
            ck_assert_int_eq(tu_pid_parent(parent), owner);
            if (i == 0)
                pids[n++] = parent;
            else
                ck_assert_int_eq(parent, pids[2]);
        }
    }

    ck_assert_int_eq(kill(owner, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(owner, &st, 0), owner);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    /* Orphans are reparented to a reaper we do not control: an exited one
       may linger as a zombie, which counts as gone. */
    for (int i = 0; i < n; i++)
        ck_assert_msg(tu_wait_exited(pids[i], GONE_MS), "%s %d outlived its owner",
                      i < 2 ? "worker" : "fork server", pids[i]);
    tu_fifo_close(&report);
}

/* ---------------------------------------------------------- its tests */

TU_PART(faults_add_end_tests,
        TU_TEST(shutdown_grace_unlimited),
        TU_TEST(shutdown_grace_zero),
        TU_TEST(shutdown_grace_limited),
        TU_TEST(owner_dies))
