/* SPDX-License-Identifier: MIT */
/*
 * chaos_stopped.c — the moments the random kills of check_chaos hit, made
 * deterministic (part of check_chaos).  A worker is held still with
 * SIGSTOP (or killed from a done-callback, on the dispatcher thread, at the
 * one moment the pool is busy settling) so that what the pool believes
 * about a task can be compared with what the worker has really done:
 *
 *   unread_task:     a task written to an idle worker that dies before it
 *                    reads the frame has not started: it must run elsewhere;
 *   unclaimed_next:  a task pipelined behind another, whose 16 MiB frame is
 *                    still being written when its worker dies right after
 *                    the task ahead finished: likewise;
 *   steal_unclaimed: a pipelined task taken back (stolen by an idle worker)
 *                    while its worker has not yet claimed the task ahead of
 *                    it must not run a second time in that worker.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"

#define SMALL         32
#define BIG_FRAME     ((uint64_t)16 << 20) /* far more than a pipe holds */
#define PATTERN_SEED  3u

/* Until the pool has taken every task off its queue (handed to workers). */
static void wait_dispatched(wp_pool *p)
{
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    while (tu_pool_stats(p).queued > 0 && tu_now_ms() < deadline)
        tu_poll_pause();
    ck_assert_uint_eq(tu_pool_stats(p).queued, 0);
}

static unsigned ok_only(void)
{
    return CHAOS_ALLOW(CHAOS_SUCCEEDED);
}

WP_TEST_BOTH(stopped_unread_task)
{
    chaos_shared_open();
    wp_pool *p = tu_pool_started(chaos_pool_options(1, false));
    int pid = atomic_load(&chaos_mem->w[0].pid);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    ck_assert_msg(tu_wait_state(pid, 'T', TU_DEADLINE_MS), "worker %d did not stop", pid);
    char pattern[SMALL];
    tu_pattern(pattern, sizeof pattern, PATTERN_SEED);
    chaos_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(chaos_submit(p, &r, 0, pattern, PATTERN_SEED, SMALL, SMALL, 0, NULL), 0);
    wait_dispatched(p); /* its frame is in the stopped worker's pipe */
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(wp_future_wait(r.f, TU_DEADLINE_MS), 0);
    ck_assert_msg(wp_future_error(r.f) == 0, "a task its worker never read failed: %s (\"%s\")",
                  wp_strerror(wp_future_error(r.f)), wp_future_message(r.f));
    chaos_finish(p, &r, 1, ok_only(), 0, 0, "stopped_unread_task");
}

static void kill_worker(wp_future *f, void *ctx)
{
    (void)f;
    kill(*(int *)ctx, SIGKILL);
}

WP_TEST_BOTH(stopped_unclaimed_next)
{
    tu_hold h;
    tu_hold_open(&h);
    chaos_shared_open();
    wp_pool *p = tu_pool_started(chaos_pool_options(1, false));
    int pid;
    wp_future *ahead = tu_submit_held(p, &h, NULL, &pid);
    char *pattern = malloc(BIG_FRAME);
    ck_assert_ptr_nonnull(pattern);
    tu_pattern(pattern, BIG_FRAME, PATTERN_SEED);
    chaos_rec r;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(chaos_submit(p, &r, 0, pattern, PATTERN_SEED, BIG_FRAME, SMALL, 0, NULL), 0);
    free(pattern);
    wait_dispatched(p); /* pipelined behind `ahead`, its frame partly written */
    /* Settling `ahead` runs this on the dispatcher, which is then not
       writing the rest of the frame: the worker cannot have all of it. */
    ck_assert_int_eq(wp_future_on_done(ahead, kill_worker, &pid), 0);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wp_future_wait(ahead, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(ahead), 0);
    ck_assert_int_eq(wp_future_wait(r.f, TU_DEADLINE_MS), 0);
    ck_assert_msg(wp_future_error(r.f) == 0, "a pipelined task whose frame its worker never had "
                  "failed: %s (\"%s\")", wp_strerror(wp_future_error(r.f)), wp_future_message(r.f));
    wp_future_release(ahead);
    tu_hold_close(&h);
    chaos_finish(p, &r, 1, ok_only(), 1, 0, "stopped_unclaimed_next");
}

WP_TEST_BOTH(stopped_steal_unclaimed)
{
    chaos_shared_open();
    atomic_store(&chaos_mem->free_workers, 1); /* the second waits in worker_init */
    wp_pool *p = tu_pool_create(chaos_pool_options(2, true));
    tu_wait_workers(p, 1, 1);
    chaos_wait_forked(2);
    int a = atomic_load(&chaos_mem->w[0].pid);
    ck_assert_int_eq(kill(a, SIGSTOP), 0);
    ck_assert_msg(tu_wait_state(a, 'T', TU_DEADLINE_MS), "worker %d did not stop", a);
    /* Both go to the stopped worker: one as its task, one behind it. */
    char pattern[SMALL];
    tu_pattern(pattern, sizeof pattern, PATTERN_SEED);
    chaos_rec r[2];
    memset(r, 0, sizeof r);
    for (unsigned i = 0; i < 2; i++)
        ck_assert_int_eq(chaos_submit(p, &r[i], i, pattern, PATTERN_SEED, SMALL, SMALL, 0, NULL), 0);
    wait_dispatched(p);
    /* The second worker starts, finds the queue empty and takes the one
       behind (it has not started: the stopped worker has not even claimed
       the one ahead). */
    atomic_store(&chaos_mem->go, 1);
    ck_assert_int_eq(wp_future_wait(r[1].f, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(r[1].f), 0);
    ck_assert_int_eq(kill(a, SIGCONT), 0);
    ck_assert_int_eq(wp_future_wait(r[0].f, TU_DEADLINE_MS), 0);
    /* The stopped worker has answered both frames once it is idle again. */
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    while (tu_pool_stats(p).running > 0 && tu_now_ms() < deadline)
        tu_poll_pause();
    ck_assert_uint_eq(tu_pool_stats(p).running, 0);
    ck_assert_msg(atomic_load(&chaos_mem->entered[1]) == 1,
                  "the task taken back from the stopped worker ran %u times",
                  atomic_load(&chaos_mem->entered[1]));
    chaos_finish(p, r, 2, ok_only(), 0, 0, "stopped_steal_unclaimed");
}

/*
 * shutdown(-1) must return once the last task is done even when what made
 * the pool drained was dropping a task cancelled while queued: the worker
 * retires after its one task, its replacement takes the cancelled task off
 * the queue, and nothing else is left to happen.
 */
WP_TEST_BOTH(stopped_cancelled_last)
{
    tu_hold h;
    tu_hold_open(&h);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = 1 });
    wp_future *running = tu_submit_held(p, &h, NULL, NULL), *queued = NULL;
    ck_assert_int_eq(wp_submit(p, tu_empty, NULL, 0, NULL, &queued), 0);
    ck_assert_int_eq(wp_future_cancel(queued), 0);
    ck_assert_int_eq(wp_future_wait(queued, TU_DEADLINE_MS), 0);
    chaos_shutter t = { .pool = p, .grace = -1 };
    chaos_shutdown_start(&t);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    wp_future *probe = NULL;
    while (wp_submit(p, tu_empty, NULL, 0, NULL, &probe) == 0 && tu_now_ms() < deadline) {
        ck_assert_int_eq(wp_future_cancel(probe), 0); /* not shutting down yet: one more */
        wp_future_release(probe);
        tu_poll_pause();
    }
    tu_fifo_release(&h.gate, 1);
    chaos_shutdown_join(&t, 0, "stopped_cancelled_last");
    ck_assert_int_eq(wp_future_state(running), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_state(queued), WP_CANCELLED);
    wp_future_release(running);
    wp_future_release(queued);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

void chaos_add_stopped_tests(Suite *s, const tu_suite *def)
{
    const tu_test tests[] = {
        TU_TEST(stopped_unread_task),
        TU_TEST(stopped_unclaimed_next),
        TU_TEST(stopped_steal_unclaimed),
        TU_TEST(stopped_cancelled_last),
    };
    tu_add_tests(s, def, tests, TU_COUNT(tests));
}
