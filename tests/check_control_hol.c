/* SPDX-License-Identifier: MIT */
/*
 * check_control_hol.c — head-of-line (check_control.c says how the
 * suite's tests work; docs/ARCHITECTURE.md, "The window", and rule 3 of
 * "Priorities and queue deadlines"): a task left behind a head that has
 * run HOL_US goes to the next worker with room before anything behind it
 * in line — also when it joined that long head's window in the very turn
 * in which the next worker had room.
 *
 * The turn under test is made deterministic: one worker is stopped
 * (SIGSTOP), so what is sent to it waits unstarted; the turn's tasks are
 * submitted from a done-callback on the dispatcher thread, so they are
 * lined up together in the next turn; and the stopped worker is let go
 * from another done-callback, which waits there until it has started
 * one of them, so no later turn can move them first.  The callbacks run
 * when a parked task is cancelled: one whose retry is due in an hour,
 * settled during the cancels of a turn, before its timers and dispatch.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "check_control.h"
#include "pool_impl.h"

#define HOL_MS          1                /* lib/pool_impl.h's HOL_US */
#define PARKED_RETRY_MS (3600u * 1000u)  /* a retry that never comes due here */
#define PARKED          2

/* A task parked in the line: its first attempt failed, its retry waits
   an hour. */
static wp_future *park(wp_pool *p, const char *name)
{
    count_arg a = count_arg_of(name, 2, CT_FAIL);
    wp_task_options o = { .retries = 1, .retry_delay_ms = PARKED_RETRY_MS };
    return tu_submit(p, count_task, &a, sizeof a, &o);
}

/* The two steps, on the dispatcher thread: no Check call there. */
typedef struct hol_turn {
    wp_pool   *pool;
    order_arg  x, l;        /* X is ahead of L in line */
    wp_future *fx, *fl;     /* submitted by the first step */
    int        stopped;     /* the stopped worker */
    int        first;       /* the first of X and L to start, or -1 */
    int        error;
    atomic_int steps;       /* steps done */
} hol_turn;

static void submit_pair(wp_future *f, void *ctx)
{
    (void)f;
    hol_turn *h = ctx;
    if (wp_submit(h->pool, order_task, &h->x, sizeof h->x, NULL, &h->fx) != 0 ||
        wp_submit(h->pool, order_task, &h->l, sizeof h->l, NULL, &h->fl) != 0)
        h->error = 1;
    atomic_fetch_add(&h->steps, 1);
}

/* The first of the indices a and b in the order file, or -1. */
static int first_started(const char *path, int a, int b)
{
    int got[ORDER_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, got, sizeof got) : -1;
    if (fd >= 0)
        close(fd);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof got[0]; i++)
        if (got[i] == a || got[i] == b)
            return got[i];
    return -1;
}

static void let_stopped_start(wp_future *f, void *ctx)
{
    (void)f;
    hol_turn *h = ctx;
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    if (kill(h->stopped, SIGCONT) != 0)
        h->error = 2;
    while (h->error == 0 && (h->first = first_started(h->x.path, h->x.index, h->l.index)) < 0)
        if (tu_now_ms() >= deadline)
            h->error = 3;
    atomic_fetch_add(&h->steps, 1);
}

/* Run the step on the dispatcher: cancel the parked task it hangs on. */
static void step(hol_turn *h, wp_future *parked, wp_done_fn fn)
{
    int before = atomic_load(&h->steps);
    ck_assert_int_eq(wp_future_on_done(parked, fn, h), 0);
    ck_assert_int_eq(wp_future_cancel(parked), 0);
    TU_POLL_UNTIL(atomic_load(&h->steps) > before);
    ck_assert_int_eq(h->error, 0);
}

/* Worker 0 runs a long head with room for one task behind it, worker 1
   (stopped) has room too; X and L come in one turn.  X goes behind the
   long head (the first slot with room), and worker 1 must then take X,
   not L, which is behind it in line.  (Before, the count of tasks stuck
   behind long heads was taken before the turn only: worker 1 got L, and
   started it while X waited for the long head.) */
WP_TEST_BOTH(hol_task_joining_a_long_head)
{
    enum { HEAD = 0, X = 1, L = 2 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_future *parked[PARKED] = { park(p, "parked0"), park(p, "parked1") };
    TU_POLL_UNTIL(tu_pool_stats(p).retried == PARKED);
    hol_turn h = { .pool = p, .x = order_arg_of(X), .l = order_arg_of(L), .first = -1,
                   .stopped = p->slots[1].h.pid }; /* read after the workers were seen alive */
    ck_assert_int_eq(kill(h.stopped, SIGSTOP), 0);
    ck_assert_msg(tu_wait_state(h.stopped, 'T', TU_DEADLINE_MS), "worker %d did not stop", h.stopped);
    tu_hold hold;
    tu_hold_open(&hold);
    wp_future *busy = tu_submit_held(p, &hold, NULL, NULL); /* worker 0: the first idle */
    wp_future *head = submit_order(p, HEAD, 0, 0);          /* worker 1, never claimed yet */
    wait_queued(p, PARKED);
    int64_t long_after = tu_now_ms() + 2 * HOL_MS;
    while (tu_now_ms() < long_after)
        tu_poll_pause(); /* the busy head has run long */
    step(&h, parked[0], submit_pair);
    wait_queued(p, PARKED - 1); /* X and L are in windows */
    step(&h, parked[1], let_stopped_start);
    ck_assert_msg(h.first == X, "task %d started first: task %d, ahead of it in line, waited "
                  "behind a long head while a worker with room took the one behind", h.first, X);
    tu_fifo_release(&hold.gate, 1);
    tu_check_echo(head, &(int){ HEAD }, sizeof(int));
    tu_check_echo(h.fx, &(int){ X }, sizeof(int));
    tu_check_echo(h.fl, &(int){ L }, sizeof(int));
    tu_wait_settled(busy);
    for (int i = 0; i < PARKED; i++) {
        check_cancelled(parked[i]);
        wp_future_release(parked[i]);
    }
    tu_assert_stats(tu_pool_stats(p), .succeeded = TU_EQ(4), .cancelled = TU_EQ(PARKED),
                    .retried = TU_EQ(PARKED), .failed = TU_EQ(0));
    wp_future_release(h.fx);
    wp_future_release(h.fl);
    wp_future_release(head);
    wp_future_release(busy);
    tu_hold_close(&hold);
    wp_pool_destroy(p);
}

TU_PART(control_add_hol_tests,
        TU_TEST(hol_task_joining_a_long_head))
