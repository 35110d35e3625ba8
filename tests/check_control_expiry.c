/* SPDX-License-Identifier: MIT */
/*
 * check_control_expiry.c — queue deadlines and the line (check_control.c
 * says how the suite's tests work; docs/ARCHITECTURE.md, "Priorities and
 * queue deadlines"): a task not started within its queue_timeout_ms never
 * runs and fails WP_EEXPIRED, promptly, wherever it waits; a task that
 * started is past the rule; a task that settles leaves the deadline heap
 * at once, so the heap keeps nothing alive; and a retry that comes due
 * while no worker has room still goes ahead of a task pipelined behind a
 * busy worker.
 *
 * The tests that look at the heap read pool_impl.h's fields, after a
 * future they waited on settled: the dispatcher takes a task out of the
 * heap before it publishes the outcome, and the waiter's lock orders the
 * two.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "check_control.h"
#include "pool_impl.h"

#define LONG_QUEUE_MS (3600 * 1000) /* a queue deadline far past the test */
#define CANCELLED_QUEUE_MS (10 * 1000) /* cancelled long before it passes */
#define RETRY_MS      300           /* a retry delay that passes during the test, after
                                       its setup (times tu_slowdown) */

/* f failed WP_EEXPIRED, and the task never wrote its index. */
static void check_expired(wp_future *f)
{
    tu_check_outcome(f, WP_FAILED, WP_EEXPIRED, 0, NULL);
    ck_assert_ptr_nonnull(strstr(wp_future_message(f), "expired before it started"));
}

/* Waiting in the line behind a held worker: it settles WP_EEXPIRED while
   the worker is still held (the timer, not the next free worker), and
   never runs. */
WP_TEST_BOTH(queue_deadline_in_line)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *filler = submit_order(p, 0, 0, 0); /* takes the window's one place */
    wait_queued(p, 0);
    wp_future *f = submit_order(p, 1, 0, SHORT_QUEUE_MS);
    ck_assert_int_eq(wp_future_wait(f, TU_PROMPT_MS), 0);
    ck_assert_int_eq(wp_future_state(busy), WP_RUNNING); /* it did not wait for a worker */
    check_expired(f);
    tu_fifo_release(&h.gate, 1);
    tu_check_echo(filler, &(int){ 0 }, sizeof(int));
    int got[ORDER_MAX];
    ck_assert_uint_eq(read_order(got, ORDER_MAX), 1); /* only the filler ran */
    tu_wait_settled(busy);
    tu_assert_stats(tu_pool_stats(p), .failed = TU_EQ(1), .expired = TU_EQ(0 + 1),
                    .succeeded = TU_EQ(2));
    wp_future_release(f);
    wp_future_release(filler);
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

/* Already sent ahead into a busy worker's window: taken back at its
   deadline and failed, the worker never starting it. */
WP_TEST_BOTH(queue_deadline_in_window)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *f = submit_order(p, 0, 0, SHORT_QUEUE_MS);
    ck_assert_int_eq(wp_future_wait(f, TU_PROMPT_MS), 0);
    ck_assert_int_eq(wp_future_state(busy), WP_RUNNING);
    check_expired(f);
    tu_fifo_release(&h.gate, 1);
    tu_wait_settled(busy);
    wp_future *g = submit_order(p, 1, 0, 0); /* the worker answered "skipped" and goes on */
    tu_check_echo(g, &(int){ 1 }, sizeof(int));
    int got[ORDER_MAX];
    ck_assert_uint_eq(read_order(got, ORDER_MAX), 1);
    ck_assert_int_eq(got[0], 1);
    tu_assert_stats(tu_pool_stats(p), .expired = TU_EQ(1), .workers_started = TU_EQ(1));
    wp_future_release(f);
    wp_future_release(g);
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

/* Started in time: the deadline no longer applies, however long it runs,
   and a retry after the deadline is still a retry, not an expiry. */
WP_TEST_BOTH(queue_deadline_ends_at_start)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_task_options o = { .queue_timeout_ms = SHORT_QUEUE_MS, .retries = 1 };
    int pid;
    wp_future *f = tu_submit_held(p, &h, &o, &pid);
    ck_assert_int_eq(wp_future_wait(f, 2 * SHORT_QUEUE_MS), WP_ETIMEDOUT); /* past its deadline */
    ck_assert_int_eq(kill(pid, SIGKILL), 0); /* the attempt crashes: retried */
    ck_assert_int_eq(tu_fifo_read_pid(&h.report, TU_DEADLINE_MS) > 0, 1);
    tu_fifo_release(&h.gate, 1);
    tu_wait_settled(f);
    ck_assert_int_eq(wp_future_error(f), 0);
    tu_assert_stats(tu_pool_stats(p), .expired = TU_EQ(0), .retried = TU_EQ(1),
                    .succeeded = TU_EQ(1));
    wp_future_release(f);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

/* Many tasks with deadlines that pass while they wait, some cancelled
   from another thread at the same time: each settles exactly once, as
   succeeded, expired or cancelled, and the counts add up. */
typedef struct cancel_crowd {
    wp_future **f;
    size_t      n;
} cancel_crowd;

static void *cancel_every_third(void *arg)
{
    cancel_crowd *c = arg;
    for (size_t i = 0; i < c->n; i += 3)
        (void)wp_future_cancel(c->f[i]);
    return NULL;
}

WP_TEST_BOTH(queue_deadline_with_cancels)
{
    enum { TASKS = 300 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    static wp_future *f[TASKS];
    for (int i = 0; i < TASKS; i++) {
        wp_task_options o = { .queue_timeout_ms = 1 + i % 3, .priority = i % 5 - 2 };
        int64_t ms = 1;
        f[i] = tu_submit(p, tu_sleep, &ms, sizeof ms, &o);
    }
    cancel_crowd c = { f, TASKS };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, cancel_every_third, &c), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    uint64_t ok = 0, expired = 0, cancelled = 0;
    for (int i = 0; i < TASKS; i++) {
        tu_wait_settled(f[i]);
        int e = wp_future_error(f[i]);
        ck_assert_msg(e == 0 || e == WP_EEXPIRED || e == WP_ECANCELED, "task %d: %s", i,
                      wp_strerror(e));
        ok += e == 0;
        expired += e == WP_EEXPIRED;
        cancelled += e == WP_ECANCELED;
        wp_future_release(f[i]);
    }
    ck_assert_uint_gt(expired, 0); /* 2 workers cannot start 300 tasks in 3 ms */
    tu_assert_stats(tu_pool_stats(p), .submitted = TU_EQ(TASKS), .succeeded = TU_EQ(ok),
                    .expired = TU_EQ(expired), .failed = TU_EQ(expired),
                    .cancelled = TU_EQ(cancelled));
    wp_pool_destroy(p);
}

/* ----------------------------------------------------------- the line */

/* What expiring() reads on the dispatcher thread (a done-callback runs
   there), so that the read never races the dispatcher's own writes. */
typedef struct heap_probe {
    wp_pool    *p;
    size_t      n;
    atomic_int  ran; /* 0 not yet, 1 read on the dispatcher, 2 ran elsewhere */
} heap_probe;

static void read_heap(wp_future *f, void *ctx)
{
    heap_probe *pr = ctx;
    (void)f;
    bool here = wp__is_dispatcher_of(pr->p);
    if (here)
        pr->n = pr->p->expiring_n;
    atomic_store(&pr->ran, here ? 1 : 2);
}

/* Heap entries left: a task submitted and cancelled at once settles on the
   dispatcher, whose done-callback reads the count there.  (Settled before
   the callback was added, it would run here: then try again.) */
static size_t expiring(wp_pool *p)
{
    for (;;) {
        heap_probe pr = { .p = p };
        atomic_init(&pr.ran, 0);
        wp_future *f = tu_submit(p, tu_empty, NULL, 0, NULL);
        ck_assert_int_eq(wp_future_on_done(f, read_heap, &pr), 0);
        (void)wp_future_cancel(f);
        TU_POLL_UNTIL(atomic_load(&pr.ran) != 0);
        wp_future_release(f);
        if (atomic_load(&pr.ran) == 1)
            return pr.n;
    }
}

/* Tasks with deadlines an hour away that succeed, or are cancelled while
   they wait behind a busy worker: none stays in the heap (before, each stayed with
   its record and result until its deadline). */
WP_TEST_BOTH(queue_deadline_heap_forgets_settled)
{
    enum { RUN = 40, CANCEL = 8 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    wp_future *f[RUN];
    for (int i = 0; i < RUN; i++)
        f[i] = submit_order(p, i, 0, LONG_QUEUE_MS);
    for (int i = 0; i < RUN; i++) {
        tu_check_echo(f[i], &i, sizeof i);
        wp_future_release(f[i]);
    }
    ck_assert_uint_eq(expiring(p), 0);
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *c[CANCEL];
    for (int i = 0; i < CANCEL; i++)
        c[i] = submit_order(p, RUN + i, 0, LONG_QUEUE_MS); /* in the window, or the line */
    for (int i = CANCEL; i-- > 0;) { /* from the back: each leaves the middle of the heap */
        cancel_promptly(c[i]);
        check_cancelled(c[i]);
        wp_future_release(c[i]);
    }
    ck_assert_uint_eq(expiring(p), 0);
    tu_fifo_release(&h.gate, 1);
    tu_wait_settled(busy);
    wp_future_release(busy);
    tu_hold_close(&h);
    /* Each expiring() adds a task or more, succeeded or cancelled. */
    wp_pool_stats st = tu_pool_stats(p);
    ck_assert_uint_ge(st.succeeded + st.cancelled, RUN + 1 + CANCEL + 2);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_ge(st.cancelled, CANCEL);
    ck_assert_uint_eq(st.expired, 0);
    wp_pool_destroy(p);
}

/* Deadlines in every order, a third cancelled and a third long, behind a
   held worker: every short one still expires while the worker is held
   (the heap, not the front of the line, ended it), whatever was taken
   out of the heap's middle before. */
WP_TEST_BOTH(queue_deadline_heap_removals)
{
    enum { TASKS = 60 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *filler = submit_order(p, TASKS, 0, 0); /* takes the window's place */
    wait_queued(p, 0);
    wp_future *f[TASKS];
    for (int i = 0; i < TASKS; i++) {
        /* Short ones not before all are submitted and cancelled: under a
           sanitizer that takes longer than SHORT_QUEUE_MS. */
        int64_t ms = i % 3 == 2   ? LONG_QUEUE_MS
                     : i % 3 == 0 ? CANCELLED_QUEUE_MS + (i * 37) % 61 /* between the others */
                                  : SHORT_QUEUE_MS * (int64_t)tu_slowdown() + (i * 37) % 61;
        f[i] = submit_order(p, i, 0, ms);
    }
    for (int i = 0; i < TASKS; i += 3)
        ck_assert_int_eq(wp_future_cancel(f[i]), 0);
    for (int i = 0; i < TASKS; i++) {
        if (i % 3 == 2)
            continue;
        tu_wait_settled(f[i]);
        if (i % 3 == 0)
            check_cancelled(f[i]);
        else
            check_expired(f[i]);
    }
    ck_assert_int_eq(wp_future_state(busy), WP_RUNNING);
    ck_assert_uint_eq(expiring(p), TASKS / 3); /* the long ones */
    tu_fifo_release(&h.gate, 1);
    for (int i = 2; i < TASKS; i += 3)
        tu_check_echo(f[i], &i, sizeof i);
    tu_check_echo(filler, &(int){ TASKS }, sizeof(int));
    ck_assert_uint_eq(expiring(p), 0);
    for (int i = 0; i < TASKS; i++)
        wp_future_release(f[i]);
    wp_future_release(filler);
    tu_wait_settled(busy);
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

/* A retry of high priority comes due while the only worker runs a long
   task with a low one pipelined behind it, so no worker has room: the
   dispatcher, asleep without wanting tasks, still wakes for the retry and
   takes the low one back, and the retry starts first.  (Before, it slept
   on, and the low task ran ahead.) */
WP_TEST_BOTH(retry_due_ahead_of_pipelined)
{
    enum { HIGH = 0, LOW = 1 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    order_arg a = order_arg_of(HIGH);
    tu_tmp_path(a.fail_path, sizeof a.fail_path, "fails");
    wp_task_options ro = { .priority = WP_PRIORITY_MAX, .retries = 1,
                           .retry_delay_ms = RETRY_MS * tu_slowdown() };
    wp_future *high = tu_submit(p, order_task, &a, sizeof a, &ro);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    while (tu_pool_stats(p).retried == 0 && tu_now_ms() < deadline)
        tu_poll_pause(); /* its first attempt failed: the retry waits RETRY_MS */
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *low = submit_order(p, LOW, WP_PRIORITY_MIN, 0);
    wait_queued(p, 1); /* low sent ahead, the retry held */
    wait_queued(p, 2); /* the retry came due: low is back in line */
    tu_fifo_release(&h.gate, 1);
    tu_check_echo(high, &(int){ HIGH }, sizeof(int));
    tu_check_echo(low, &(int){ LOW }, sizeof(int));
    int got[ORDER_MAX];
    ck_assert_uint_eq(read_order(got, ORDER_MAX), 3);
    ck_assert_int_eq(got[0], HIGH); /* the failed attempt */
    ck_assert_int_eq(got[1], HIGH);
    ck_assert_int_eq(got[2], LOW);
    tu_wait_settled(busy);
    wp_future_release(busy);
    wp_future_release(high);
    wp_future_release(low);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

TU_PART(control_add_expiry_tests,
        TU_TEST(queue_deadline_in_line),
        TU_TEST(queue_deadline_in_window),
        TU_TEST(queue_deadline_ends_at_start),
        TU_TEST(queue_deadline_with_cancels),
        TU_TEST(queue_deadline_heap_forgets_settled),
        TU_TEST(queue_deadline_heap_removals),
        TU_TEST(retry_due_ahead_of_pipelined))
