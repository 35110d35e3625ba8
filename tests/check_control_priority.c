/* SPDX-License-Identifier: MIT */
/*
 * check_control_priority.c — priorities and queue deadlines (check_control.c
 * says how the suite's tests work): a waiting task of higher priority
 * starts before every task of lower priority, equal ones in submit order,
 * also when the lower ones were already sent ahead to a busy worker; a task
 * not started within its queue_timeout_ms never runs and fails
 * WP_EEXPIRED, promptly, wherever it waits; neither rule touches tasks
 * that started.
 *
 * The start order is what the tasks themselves write, each its index with
 * one O_APPEND write as it starts, into a file of the test's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "check_control.h"

#define ORDER_TASKS 24        /* tasks whose start order a test checks */
#define ORDER_MAX   256       /* most indices a test reads back */
#define SHORT_QUEUE_MS 50     /* a queue deadline that passes during the test */
#define HOL_MS 1 /* lib/pool_impl.h's HOL_US: a head that has run this long is long */

/* The argument of order_task: where it writes, and what. */
typedef struct order_arg {
    char path[128];
    int  index;
    int  sleep_us; /* after writing: how long it runs */
} order_arg;

/* Writes its index to the order file as it starts; echoes it. */
static int order_task(const void *arg, size_t len, wp_buf *out)
{
    order_arg a;
    if (len != sizeof a)
        return 1;
    memcpy(&a, arg, sizeof a);
    int fd = open(a.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return 2;
    ssize_t n = write(fd, &a.index, sizeof a.index);
    close(fd);
    if (n != (ssize_t)sizeof a.index)
        return 3;
    if (a.sleep_us > 0)
        tu_sleep_us((uint64_t)a.sleep_us);
    return wp_buf_append(out, &a.index, sizeof a.index);
}

static order_arg order_arg_of(int index)
{
    order_arg a = { .index = index };
    tu_tmp_path(a.path, sizeof a.path, "order");
    return a;
}

/* The indices written so far, in start order: how many. */
static size_t read_order(int *out, size_t max)
{
    order_arg a = order_arg_of(0);
    int fd = open(a.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, out, max * sizeof *out);
    close(fd);
    ck_assert_int_ge(n, 0);
    return (size_t)n / sizeof *out;
}

static wp_future *submit_order_for(wp_pool *p, int index, int priority, int64_t queue_ms,
                                   int sleep_us)
{
    order_arg a = order_arg_of(index);
    a.sleep_us = sleep_us;
    wp_task_options o = { .priority = priority, .queue_timeout_ms = queue_ms };
    return tu_submit(p, order_task, &a, sizeof a, &o);
}

static wp_future *submit_order(wp_pool *p, int index, int priority, int64_t queue_ms)
{
    return submit_order_for(p, index, priority, queue_ms, 0);
}

/* Wait until exactly `queued` tasks wait for a worker (in the queue or
   the line: not in a window). */
static void wait_queued(wp_pool *p, unsigned queued)
{
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    wp_pool_stats s;
    while ((s = tu_pool_stats(p)).queued != queued && tu_now_ms() < deadline)
        tu_poll_pause();
    ck_assert_msg(s.queued == queued, "%u tasks wait for a worker, not %u (%u running)", s.queued,
                  queued, s.running);
}

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

/* -------------------------------------------------------- queue deadlines */

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
        TU_TEST(queue_deadline_in_line),
        TU_TEST(queue_deadline_in_window),
        TU_TEST(queue_deadline_ends_at_start),
        TU_TEST(queue_deadline_with_cancels),
        TU_TEST(priority_of_batches))
