/* SPDX-License-Identifier: MIT */
/*
 * check_control_cancel.c — cancellation (check_control.c says how the
 * suite's tests work): a queued task never runs, a running one has its
 * worker killed and replaced, a settled one cannot be cancelled, a
 * shielded running task runs to its end (even through shutdown), and a
 * cancel never hits another task: not the next one on the worker, not one
 * prefetched, not while the task's frame is being written.
 */
#define _GNU_SOURCE
#include "check_control.h"

/* f succeeded with the int pid as its result. */
static void check_echo_pid(wp_future *f, int pid)
{
    tu_check_echo(f, &pid, sizeof pid);
}

/* The same for a running task, whose worker is killed and replaced: then
   waits for the pool to have `alive` workers, `started` ever, and checks
   the task settled within TU_PROMPT_MS of the cancel. */
static void cancel_kill(wp_pool *p, wp_future *f, unsigned alive, uint64_t started)
{
    int64_t t0 = tu_now_ms();
    int rc = wp_future_cancel(f);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    tu_wait_workers(p, alive, started);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(w == 0, "a cancelled task did not settle in %d ms", TU_DEADLINE_MS);
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
}

/* A queued task (with these flags) cancelled behind a busy worker settles
   at once and never runs; the hang ahead of it does not notice, and its
   own cancel takes its worker; the replacement runs what comes next. */
static void cancel_behind_hang(unsigned flags)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    int pid;
    wp_future *h = submit_running(p, &report, -1, NULL, &pid);
    count_arg a = count_arg_of("mark", 1, CT_FAIL);
    wp_task_options o = { .flags = flags };
    wp_future *q = tu_submit(p, count_task, &a, sizeof a, &o);
    ck_assert_int_ne(wp_future_state(q), WP_RUNNING);
    cancel_promptly(q);
    check_cancelled(q);
    ck_assert_int_eq(wp_future_cancel(q), WP_EINVAL);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .cancelled = TU_EQ(1), .succeeded = TU_EQ(0));
    ck_assert_int_eq(wp_future_state(h), WP_RUNNING); /* the hang did not notice */

    cancel_kill(p, h, 1, 2);
    check_cancelled(h);
    wait_pid_exited(pid);
    wp_future *g = tu_run(p, tu_echo, "y", 1, NULL);
    tu_check_echo(g, "y", 1);
    wp_pool_destroy(p);
    ck_assert_int_eq(file_size(a.path), 0); /* the cancelled one never ran */
    wp_future_release(h);
    wp_future_release(q);
    wp_future_release(g);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(cancel_queued)
{
    cancel_behind_hang(0);
}

/* A task cancelled while it waits in the queue behind a busy worker never
   runs, even when that worker then finishes normally (rather than being
   killed, as above) and goes on to the next task.  Every other round the
   cancelled task is shielded (the shield only counts once it runs). */
WP_TEST_BOTH(cancel_queued_worker_finishes)
{
    enum { ROUNDS = 20 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold hold;
    tu_hold_open(&hold);
    for (int i = 0; i < ROUNDS; i++) {
        wp_future *h = tu_submit_held(p, &hold, NULL, NULL); /* h runs */
        count_arg a = count_arg_of("mark", 1, CT_FAIL);
        wp_task_options o = { .flags = i % 2 ? WP_TASK_SHIELD : 0 };
        wp_future *q = tu_submit(p, count_task, &a, sizeof a, &o);
        ck_assert_int_eq(wp_future_cancel(q), 0);
        tu_wait_settled(q);
        check_cancelled(q);
        tu_fifo_release(&hold.gate, 1); /* h finishes; the worker takes what is next */
        tu_wait_settled(h);
        ck_assert_int_eq(wp_future_state(h), WP_SUCCEEDED);
        wp_future *x = tu_run(p, tu_echo, &i, sizeof i, NULL);
        tu_check_echo(x, &i, sizeof i);
        ck_assert_msg(file_size(a.path) == 0, "round %d: a task cancelled in the queue ran", i);
        wp_future_release(h);
        wp_future_release(q);
        wp_future_release(x);
    }
    wp_pool_stats s = settled_stats(p, 3 * ROUNDS);
    tu_assert_stats(s, .cancelled = TU_EQ(ROUNDS), .succeeded = TU_EQ(2 * ROUNDS),
                       .workers_started = TU_EQ(1));
    wp_pool_destroy(p);
    tu_hold_close(&hold);
}

/* Cancelling a running task kills its worker, promptly. */
WP_TEST_BOTH(cancel_running)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    for (int round = 0; round < 3; round++) {
        int pid;
        wp_future *h = submit_running(p, &report, -1, NULL, &pid);
        ck_assert_int_eq(wp_future_state(h), WP_RUNNING);
        cancel_kill(p, h, 1, (uint64_t)round + 2);
        check_cancelled(h);
        ck_assert_int_eq(wp_future_cancel(h), WP_EINVAL);
        wait_pid_exited(pid);
        wp_future_release(h);
    }
    const char msg[] = "still serving";
    wp_future *g = tu_run(p, tu_echo, msg, sizeof msg, NULL);
    tu_check_echo(g, msg, sizeof msg);
    wp_future_release(g);
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .cancelled = TU_EQ(3), .crashed = TU_EQ(0), .succeeded = TU_EQ(1),
                       .workers_started = TU_EQ(4));
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(cancel_settled)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int code = 4;
    wp_future *ok = tu_run(p, tu_echo, "x", 1, NULL);
    wp_future *bad = tu_run(p, tu_fail, &code, sizeof code, NULL);
    wp_future *crash = tu_run_crash(p, tu_segv, NULL, 0, NULL, 1, 2);
    ck_assert_int_eq(wp_future_cancel(ok), WP_EINVAL);
    ck_assert_int_eq(wp_future_cancel(bad), WP_EINVAL);
    ck_assert_int_eq(wp_future_cancel(crash), WP_EINVAL);
    ck_assert_int_eq(wp_future_state(ok), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_error(bad), WP_ETASK);
    ck_assert_int_eq(wp_future_code(bad), 4);
    ck_assert_int_eq(wp_future_error(crash), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(crash), SIGSEGV);
    wp_pool_stats s = settled_stats(p, 3);
    ck_assert_uint_eq(s.cancelled, 0);
    wp_future_release(ok);
    wp_future_release(bad);
    wp_future_release(crash);
    wp_pool_destroy(p);
}

/* A shielded running task cannot be cancelled: WP_EBUSY, and it completes. */
WP_TEST_BOTH(shield_running)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    tu_report_arg a = tu_report_arg_of(0, &h.report, &h.gate);
    wp_task_options o = { .flags = WP_TASK_SHIELD };
    wp_future *f = tu_submit(p, tu_report, &a, sizeof a, &o);
    int pid = tu_fifo_read_pid(&h.report, TU_DEADLINE_MS);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    tu_check_echo(f, &pid, sizeof pid);
    ck_assert_int_eq(wp_future_cancel(f), WP_EINVAL);
    ck_assert(tu_pid_alive(pid)); /* the worker was not killed */
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .cancelled = TU_EQ(0), .succeeded = TU_EQ(1), .workers_started = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

static int shutdown_no_grace(void *pool)
{
    return wp_pool_shutdown(pool, 0);
}

/* Shutdown with no grace cancels what it can, but a shielded running task
   runs to its end (as the batcher's shielded batches do): shutdown waits. */
WP_TEST_BOTH(shield_survives_shutdown)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    const wp_task_options shield = { .flags = WP_TASK_SHIELD };
    int pid;
    wp_future *held = tu_submit_held(p, &h, &shield, &pid);
    wp_future *queued = tu_submit(p, tu_echo, "q", 1, NULL);
    tu_blocker w;
    tu_blocker_start(&w, shutdown_no_grace, p);
    tu_wait_settled(queued); /* cancelled at once */
    check_cancelled(queued);
    ck_assert_int_eq(wp_future_state(held), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(tu_blocker_join(&w), 0);
    check_echo_pid(held, pid);
    wp_future_release(held);
    wp_future_release(queued);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* A shielded task can still be cancelled while queued: it never runs. */
WP_TEST_BOTH(shield_queued)
{
    cancel_behind_hang(WP_TASK_SHIELD);
}

/* A cancel that arrives as its task completes never hits the task after it
   on the same worker. */
WP_TEST_BOTH(late_cancel_spares_next)
{
    enum { ROUNDS = 200 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    unsigned seed = 12345u + (unsigned)tu_method;
    unsigned won = 0, lost = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int64_t ms = 1;
        wp_future *a = tu_submit(p, tu_sleep, &ms, sizeof ms, NULL);
        wp_future *b = tu_submit(p, tu_echo, &i, sizeof i, NULL);
        spin_us((unsigned)rand_r(&seed) % 2500);
        int rc = wp_future_cancel(a);
        /* b settles after a replacement for a killed worker has started:
           no allocation before that (see the top of check_control.c). */
        int wb = wp_future_wait(b, TU_DEADLINE_MS);
        int wa = wp_future_wait(a, TU_DEADLINE_MS);
        ck_assert_int_eq(wb, 0);
        ck_assert_int_eq(wa, 0);
        if (rc == 0) {
            ck_assert_msg(wp_future_state(a) == WP_CANCELLED,
                          "round %d: cancel returned 0 but the task ended %d (%s)", i,
                          wp_future_state(a), wp_future_message(a));
            won++;
        } else {
            ck_assert_int_eq(rc, WP_EINVAL);
            tu_check_echo(a, &ms, sizeof ms);
            lost++;
        }
        /* The next task is never disturbed. */
        ck_assert_msg(wp_future_state(b) == WP_SUCCEEDED, "round %d: next task ended %d (%s)", i,
                      wp_future_state(b), wp_future_message(b));
        tu_check_echo(b, &i, sizeof i);
        wp_future_release(a);
        wp_future_release(b);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(2 * ROUNDS), .cancelled = TU_EQ(won),
                       .succeeded = TU_EQ(ROUNDS + lost), .failed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* Cancel a task prefetched behind a busy worker's hanging task: it settles
   promptly and never runs; the other prefetched task runs once a worker
   frees. */
WP_TEST_BOTH(cancel_prefetched)
{
    /* tu_make_pool waits for both workers, so each hang gets a worker of its
       own (a hang sent behind the other one and then taken back by a worker
       that became idle would keep its first worker from taking a task
       behind its hang until the "skipped" reply, which never comes). */
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    tu_fifo report;
    tu_fifo_open(&report);
    int pid[2];
    wp_future *h[2];
    h[0] = submit_running(p, &report, -1, NULL, &pid[0]);
    h[1] = submit_running(p, &report, -1, NULL, &pid[1]);
    ck_assert_int_ne(pid[0], pid[1]);
    /* Both hangs past the head-of-line time (1 ms): a task behind a young
       one could otherwise move to the other worker (schedule.c, unstick). */
    int64_t long_after = tu_now_ms() + 2;
    while (tu_now_ms() < long_after)
        tu_poll_pause();

    count_arg a = count_arg_of("mark", 1, CT_FAIL);
    wp_future *q1 = tu_submit(p, count_task, &a, sizeof a, NULL);
    const char msg[] = "q2";
    wp_future *q2 = tu_submit(p, tu_echo, msg, sizeof msg, NULL);
    /* Both leave the queue: each sits behind one of the hangs. */
    TU_POLL_UNTIL(tu_pool_stats(p).queued == 0);
    ck_assert_int_eq(wp_future_state(q1), WP_PENDING);
    ck_assert_int_eq(wp_future_state(q2), WP_PENDING);

    cancel_promptly(q1);
    check_cancelled(q1);
    ck_assert_int_eq(wp_future_wait(q2, 0), WP_ETIMEDOUT); /* no worker is free */
    ck_assert_int_eq(wp_future_state(h[0]), WP_RUNNING);
    ck_assert_int_eq(wp_future_state(h[1]), WP_RUNNING);

    /* Free one worker: q2 runs, whichever hang it was behind. */
    int64_t t0 = tu_now_ms();
    int rc = wp_future_cancel(h[0]);
    int w0 = wp_future_wait(h[0], TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    int w2 = wp_future_wait(q2, TU_DEADLINE_MS);
    tu_wait_workers(p, 2, 3);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(w0, 0);
    ck_assert_int_eq(w2, 0);
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
    check_cancelled(h[0]);
    tu_check_echo(q2, msg, sizeof msg);
    ck_assert_int_eq(wp_future_state(h[1]), WP_RUNNING);
    cancel_kill(p, h[1], 2, 4);
    check_cancelled(h[1]);
    wait_pid_exited(pid[0]);
    wait_pid_exited(pid[1]);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(file_size(a.path), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .cancelled = TU_EQ(3), .succeeded = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(h[0]);
    wp_future_release(h[1]);
    wp_future_release(q1);
    wp_future_release(q2);
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

/* A task whose large argument is still being written behind a busy worker
   is cancelled and released: the rest of its frame still goes out (the
   worker skips it), no freed memory is read, and the healthy worker is
   neither killed nor replaced. */
WP_TEST_BOTH(cancel_while_writing)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    int pid;
    wp_future *busy = tu_submit_held(p, &h, NULL, &pid);

    size_t big_len = (size_t)8 << 20; /* far more than a pipe holds */
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', big_len);
    wp_future *f = tu_submit(p, tu_empty, big, big_len, NULL);
    free(big);
    TU_POLL_UNTIL(tu_pool_stats(p).queued == 0); /* written behind the busy task */
    ck_assert_int_eq(wp_future_cancel(f), 0);
    tu_wait_settled(f);
    check_cancelled(f);
    wp_future_release(f);

    tu_fifo_release(&h.gate, 1);
    check_echo_pid(busy, pid);
    wp_future *after = tu_submit(p, tu_pid, NULL, 0, NULL);
    check_echo_pid(after, pid);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .workers_started = TU_EQ(1), .crashed = TU_EQ(0));
    wp_future_release(busy);
    wp_future_release(after);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_cancel_tests,
        TU_TEST(cancel_queued),
        TU_TEST(cancel_queued_worker_finishes),
        TU_TEST(cancel_running),
        TU_TEST(cancel_settled),
        TU_TEST(shield_running),
        TU_TEST(shield_queued),
        TU_TEST(shield_survives_shutdown),
        TU_TEST(late_cancel_spares_next),
        TU_TEST(cancel_prefetched),
        TU_TEST(cancel_while_writing))
