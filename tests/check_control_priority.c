/* SPDX-License-Identifier: MIT */
/*
 * check_control_priority.c — priorities (check_control.c says how the
 * suite's tests work): a waiting task of higher priority starts before
 * every task of lower priority, equal ones in submit order, also when the
 * lower ones were already sent ahead to a busy worker, and the batcher's
 * batches keep its task.priority.  Queue deadlines are
 * check_control_expiry.c's.
 *
 * The start order is what the tasks themselves write (order_task,
 * check_control.h).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "check_control.h"
#include "pool_impl.h"

#define ORDER_TASKS 24        /* tasks whose start order a test checks */
#define HOL_MS 1 /* lib/pool_impl.h's HOL_US: a head that has run this long is long */

/* The priorities of the order test: every level, mixed, repeated. */
static const int order_priority[ORDER_TASKS] = {
    0, -2, 2, 1, 0, -1, 2, -2, 1, 0, 0, 2, -1, 1, -2, 2, 0, -1, 1, 2, -2, 0, 1, -1,
};

/* ORDER_TASKS tasks submitted behind a held worker, the first already in
   its window when the rest come: they start by priority, then in submit
   order, and the pipelined first one waits its turn too. */
WP_TEST_BOTH(priority_start_order)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *f[ORDER_TASKS];
    f[0] = submit_order(p, 0, order_priority[0], 0);
    wait_queued(p, 0); /* sent ahead: in the worker's window */
    for (int i = 1; i < ORDER_TASKS; i++)
        f[i] = submit_order(p, i, order_priority[i], 0);
    /* All wait, the first too: it came back when the first of priority 2
       came (its frame was written: it stays in the window, skipped, until
       answered).  Fewer would mean that has not happened yet. */
    wait_queued(p, ORDER_TASKS);
    tu_fifo_release(&h.gate, 1);
    tu_wait_settled(busy);
    for (int i = 0; i < ORDER_TASKS; i++) {
        tu_check_echo(f[i], &i, sizeof i);
        wp_future_release(f[i]);
    }
    int got[ORDER_MAX];
    size_t n = read_order(got, ORDER_MAX);
    ck_assert_uint_eq(n, ORDER_TASKS); /* each ran once */
    for (size_t k = 1; k < n; k++) {
        int a = got[k - 1], b = got[k];
        bool in_order = order_priority[a] > order_priority[b] ||
                        (order_priority[a] == order_priority[b] && a < b);
        ck_assert_msg(in_order, "task %d (priority %d) started before task %d (priority %d)", a,
                      order_priority[a], b, order_priority[b]);
    }
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

/* The inversion the issue names: low tasks already pipelined behind busy
   workers, then a high one arrives and no worker is idle.  The high one
   starts first; the low ones are not lost and run once.  Where the low
   ones wait is the pool's business while a busy worker's task is young
   (one may move to a worker whose task looks shorter): the test lets the
   busy tasks pass HOL_US first, so that each worker gets one low task
   behind it, and then waits until every task waits again, in line. */
static void takes_back_pipelined(unsigned workers)
{
    enum { HOLDS_MAX = 2 };
    ck_assert_uint_le(workers, HOLDS_MAX);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = workers });
    tu_hold h[HOLDS_MAX];
    wp_future *busy[HOLDS_MAX], *low[HOLDS_MAX];
    for (unsigned i = 0; i < workers; i++) {
        tu_hold_open(&h[i]);
        busy[i] = tu_submit_held(p, &h[i], NULL, NULL);
    }
    int64_t long_after = tu_now_ms() + 2 * HOL_MS;
    while (tu_now_ms() < long_after)
        tu_poll_pause(); /* the busy tasks have run long: see above */
    for (unsigned i = 0; i < workers; i++)
        low[i] = submit_order(p, (int)i, WP_PRIORITY_MIN, 0);
    wait_queued(p, 0); /* one behind each busy worker */
    wp_future *high = submit_order(p, (int)workers, WP_PRIORITY_MAX, 0);
    wait_queued(p, workers + 1); /* the low ones came back to the line, behind it */
    tu_fifo_release(&h[workers - 1].gate, 1);
    tu_wait_settled(high);
    int got[ORDER_MAX];
    ck_assert_uint_ge(read_order(got, ORDER_MAX), 1);
    ck_assert_int_eq(got[0], (int)workers);
    for (unsigned i = 0; i + 1 < workers; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (unsigned i = 0; i < workers; i++) {
        int want = (int)i;
        tu_check_echo(low[i], &want, sizeof want);
        wp_future_release(low[i]);
        tu_wait_settled(busy[i]);
        wp_future_release(busy[i]);
        tu_hold_close(&h[i]);
    }
    ck_assert_uint_eq(read_order(got, ORDER_MAX), workers + 1);
    wp_future_release(high);
    tu_assert_stats(tu_pool_stats(p), .succeeded = TU_EQ(2 * workers + 1), .failed = TU_EQ(0));
    wp_pool_destroy(p);
}

WP_TEST_BOTH(priority_takes_back_pipelined)
{
    takes_back_pipelined(1);
}

WP_TEST_BOTH(priority_takes_back_pipelined_two_workers)
{
    takes_back_pipelined(2);
}

/* Many workers, many tasks of every level submitted at once while all
   workers are held: once released, no task starts after one two levels
   below it.  (Next levels may overlap a little: tasks already in two
   windows start as their workers reach them, and a worker the machine
   does not run for a while is behind the others; docs/ARCHITECTURE.md,
   "Priorities and queue deadlines".  Two levels apart are 48 tasks: far
   more than the windows hold.) */
WP_TEST_BOTH(priority_many_workers)
{
    enum { WORKERS = 3, TASKS = 120, RUN_US = 500 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = WORKERS });
    tu_hold h[WORKERS];
    wp_future *busy[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        tu_hold_open(&h[i]);
        busy[i] = tu_submit_held(p, &h[i], NULL, NULL);
    }
    static wp_future *f[TASKS];
    int prio[TASKS];
    for (int i = 0; i < TASKS; i++) {
        prio[i] = (int)((unsigned)(i * 7) % 5) + WP_PRIORITY_MIN;
        f[i] = submit_order_for(p, i, prio[i], 0, RUN_US);
    }
    for (int i = 0; i < WORKERS; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (int i = 0; i < TASKS; i++) {
        tu_check_echo(f[i], &i, sizeof i);
        wp_future_release(f[i]);
    }
    int got[ORDER_MAX];
    size_t n = read_order(got, ORDER_MAX);
    ck_assert_uint_eq(n, TASKS);
    size_t overlaps = 0; /* starts after one of the next level down */
    for (size_t k = 0; k < n; k++)
        for (size_t j = k + 1; j < n; j++) {
            overlaps += prio[got[j]] == prio[got[k]] + 1;
            ck_assert_msg(prio[got[j]] <= prio[got[k]] + 1,
                          "task %d (priority %d) started %zu places after task %d (priority %d)",
                          got[j], prio[got[j]], j - k, got[k], prio[got[k]]);
        }
    fprintf(stderr, "priority_many_workers: %zu starts after one of the next level down\n",
            overlaps);
    for (int i = 0; i < WORKERS; i++) {
        tu_wait_settled(busy[i]);
        wp_future_release(busy[i]);
        tu_hold_close(&h[i]);
    }
    wp_pool_destroy(p);
}

WP_TEST(priority_out_of_range)
{
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 1 });
    static const int bad[] = { WP_PRIORITY_MIN - 1, WP_PRIORITY_MAX + 1, INT_MIN, INT_MAX };
    int v = 1;
    wp_item item = { &v, sizeof v };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wp_task_options o = { .priority = bad[i] };
        wp_future *f = NULL;
        ck_assert_int_eq(wp_submit(p, tu_echo, &v, sizeof v, &o, &f), WP_EINVAL);
        ck_assert_ptr_null(f);
        ck_assert_int_eq(wp_submit_many(p, tu_echo, &item, 1, &o, NULL, NULL), WP_EINVAL);
    }
    static const int64_t bad_queue[] = { -1, INT64_MIN };
    for (size_t i = 0; i < sizeof bad_queue / sizeof bad_queue[0]; i++) {
        wp_task_options o = { .queue_timeout_ms = bad_queue[i] };
        ck_assert_int_eq(wp_submit(p, tu_echo, &v, sizeof v, &o, NULL), WP_EINVAL);
    }
    wp_task_options edge = { .priority = WP_PRIORITY_MAX, .queue_timeout_ms = INT64_MAX };
    wp_future *f = tu_run(p, tu_echo, &v, sizeof v, &edge); /* no overflow: it just runs */
    tu_check_echo(f, &v, sizeof v);
    wp_future_release(f);
    tu_assert_stats(tu_pool_stats(p), .submitted = TU_EQ(1), .expired = TU_EQ(0));
    wp_pool_destroy(p);
}

/* ------------------------------------------------ a window emptied */

/* What the done-callback below does on the dispatcher thread, and what
   it saw.  No Check call there. */
typedef struct release_pair {
    wp_pool   *pool;
    tu_hold   *holds;      /* two held tasks, in slots 1 and 2 */
    wp_future *low;        /* submitted by the callback */
    int        error;      /* a step that failed, or 0 */
    atomic_int done;
} release_pair;

/* The worker of slot i has written its answer: it is in the pool's pipe. */
static bool answer_waits(wp_pool *p, unsigned i)
{
    int n = 0;
    return ioctl(p->slots[i].h.result_fd, FIONREAD, &n) == 0 && n > 0;
}

/* On the dispatcher, between two turns: both held tasks finish and their
   answers wait in the pipes, and a low task waits in the queue, so the
   next turn finds two idle workers and a task in line at once. */
static void release_both(wp_future *f, void *ctx)
{
    (void)f;
    release_pair *r = ctx;
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    for (unsigned i = 0; i < 2 && r->error == 0; i++)
        if (write(r->holds[i].gate.fd, "x", 1) != 1)
            r->error = 1;
    while (r->error == 0 && !(answer_waits(r->pool, 1) && answer_waits(r->pool, 2)))
        if (tu_now_ms() >= deadline)
            r->error = 2;
    order_arg a = order_arg_of(3);
    wp_task_options lo = { .priority = WP_PRIORITY_MIN };
    if (r->error == 0 && wp_submit(r->pool, order_task, &a, sizeof a, &lo, &r->low) != 0)
        r->error = 3;
    atomic_store(&r->done, 1);
}

/* Two workers come free in one turn with a low task in line and a high
   one pipelined behind a third worker that has not started its head (it
   is stopped): the first free worker gets the low task, the second steals
   the high one, which takes the low one back from the first worker's
   window before its frame was written.  That window is empty then, and
   its worker idle: it must count so (before, its slot stayed busy with no
   task, counted as running for good, and the next task sent to it broke
   the slot's state machine). */
WP_TEST_BOTH(priority_take_back_empties_window)
{
    enum { WORKERS = 3, HEAD = 0, HIGH = 1, CANCELLED = 2, LOW = 3 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = WORKERS });
    int stopped = p->slots[0].h.pid; /* read after the workers were seen alive */
    ck_assert_int_eq(kill(stopped, SIGSTOP), 0);
    ck_assert_msg(tu_wait_state(stopped, 'T', TU_DEADLINE_MS), "worker %d did not stop", stopped);
    wp_future *head = submit_order(p, HEAD, WP_PRIORITY_MAX, 0); /* slot 0, never claimed */
    wait_queued(p, 0);
    tu_hold h[2];
    wp_future *busy[2];
    for (int i = 0; i < 2; i++) {
        tu_hold_open(&h[i]);
        busy[i] = tu_submit_held(p, &h[i], NULL, NULL); /* slots 1 and 2 */
    }
    wp_future *high = submit_order(p, HIGH, WP_PRIORITY_MAX, 0); /* behind the head */
    wait_queued(p, 0);
    wp_future *blocker = submit_order(p, CANCELLED, WP_PRIORITY_MIN, 0); /* slot 0 too */
    wait_queued(p, 0);
    release_pair r = { .pool = p, .holds = h };
    ck_assert_int_eq(wp_future_on_done(blocker, release_both, &r), 0);
    ck_assert_int_eq(wp_future_cancel(blocker), 0); /* settled, and r run, by the dispatcher */
    TU_POLL_UNTIL(atomic_load(&r.done));
    ck_assert_int_eq(r.error, 0);
    tu_check_echo(high, &(int){ HIGH }, sizeof(int));
    tu_check_echo(r.low, &(int){ LOW }, sizeof(int));
    ck_assert_int_eq(kill(stopped, SIGCONT), 0);
    tu_check_echo(head, &(int){ HEAD }, sizeof(int));
    for (int i = 0; i < 2; i++) {
        tu_wait_settled(busy[i]);
        wp_future_release(busy[i]);
        tu_hold_close(&h[i]);
    }
    TU_POLL_UNTIL(tu_pool_stats(p).running == 0); /* every window is empty */
    int got[ORDER_MAX];
    ck_assert_uint_eq(read_order(got, ORDER_MAX), 3); /* each once; high and low at once */
    check_cancelled(blocker);
    wp_future_release(blocker);
    wp_future_release(r.low);
    wp_future_release(high);
    wp_future_release(head);
    tu_assert_stats(tu_pool_stats(p), .succeeded = TU_EQ(5), .cancelled = TU_EQ(1),
                    .failed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* ------------------------------------------------------------ the batcher */

static int batch_order(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        int rc = order_task(items[i].data, items[i].len, results[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The batcher's task.priority reaches its batches: a batch of high
   priority starts before a plain task submitted earlier. */
WP_TEST_BOTH(priority_of_batches)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    wp_future *low = submit_order(p, 0, 0, 0);
    wait_queued(p, 0); /* sent ahead, behind the busy task */
    wp_batcher_options bo = { .max_batch_size = 2, .task = { .priority = WP_PRIORITY_MAX } };
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, batch_order, &bo), 0);
    wp_future *item[2];
    for (int i = 0; i < 2; i++) {
        order_arg a = order_arg_of(1 + i);
        ck_assert_int_eq(wp_batcher_submit(b, &a, sizeof a, &item[i]), 0);
    }
    wait_queued(p, 2); /* the batch is in the line, the low task came back to it */
    tu_fifo_release(&h.gate, 1);
    for (int i = 0; i < 2; i++) {
        tu_check_echo(item[i], &(int){ 1 + i }, sizeof(int));
        wp_future_release(item[i]);
    }
    tu_check_echo(low, &(int){ 0 }, sizeof(int));
    int got[ORDER_MAX];
    ck_assert_uint_eq(read_order(got, ORDER_MAX), 3);
    ck_assert_int_eq(got[0], 1);
    ck_assert_int_eq(got[1], 2);
    ck_assert_int_eq(got[2], 0);
    wp_batcher_destroy(b);
    wp_future_release(low);
    tu_wait_settled(busy);
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

TU_PART(control_add_priority_tests,
        TU_TEST(priority_start_order),
        TU_TEST(priority_takes_back_pipelined),
        TU_TEST(priority_takes_back_pipelined_two_workers),
        TU_TEST(priority_many_workers),
        TU_TEST(priority_take_back_empties_window),
        TU_CASE("priority", priority_out_of_range),
        TU_TEST(priority_of_batches))
