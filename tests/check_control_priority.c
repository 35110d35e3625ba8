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
#include <unistd.h>

#include "check_control.h"

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
        TU_CASE("priority", priority_out_of_range),
        TU_TEST(priority_of_batches))
