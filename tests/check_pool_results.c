/* SPDX-License-Identifier: MIT */
/*
 * check_pool_results.c — what comes back from a task (check_pool.c says how
 * the suite's tests work): big arguments and results, a result over the
 * message limit, the stats fields, and done-callbacks: each runs once
 * (inline when registered on a settled future), and a submit from one
 * answers WP_EAGAIN on a full queue rather than block.
 */
#define _GNU_SOURCE
#include "check_pool.h"

/* ------------------------------------------------------------ big frames */

WP_TEST_BOTH(big_argument_and_result)
{
    const size_t big_len = (size_t)8 << 20;
    tu_hold h;
    tu_hold_open(&h);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });

    /* One worker is held (and reads nothing) for the whole test. */
    wp_future *held = tu_submit_held(p, &h, NULL, NULL);

    /* 8 MiB each way, then 100 small tasks: they all finish while the held
       worker still holds, whichever worker the big frame went to. */
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    tu_pattern(big, big_len, 42);
    wp_future *bf;
    ck_assert_int_eq(wp_submit(p, tu_echo, big, big_len, NULL, &bf), 0);
    memset(big, 0, big_len); /* the argument was copied */
    enum { SMALL = 100 };
    wp_future *fs[SMALL];
    for (int i = 0; i < SMALL; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, SMALL, TU_DEADLINE_MS), 0);
    for (int i = 0; i < SMALL; i++) {
        tu_check_echo(fs[i], &i, sizeof i);
        wp_future_release(fs[i]);
    }
    ck_assert_int_eq(wp_future_error(held), WP_EAGAIN); /* still running */

    ck_assert_int_eq(wp_future_wait(bf, TU_DEADLINE_MS), 0);
    size_t len = 0;
    const void *r = wp_future_result(bf, &len);
    ck_assert_int_eq(wp_future_error(bf), 0);
    ck_assert_uint_eq(len, big_len);
    ck_assert_ptr_nonnull(r);
    ck_assert(tu_pattern_ok(r, len, 42));
    ck_assert_uint_eq((uintptr_t)r % _Alignof(max_align_t), 0);
    wp_future_release(bf);

    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wp_future_wait(held, -1), 0);
    ck_assert_int_eq(wp_future_error(held), 0);
    wp_future_release(held);
    free(big);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

WP_TEST_BOTH(result_over_max_message)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .max_message = (size_t)1 << 20 });
    wp_future *f = tu_run(p, tu_pid, NULL, 0, NULL);
    int pid_before;
    ck_assert_int_eq(wp_future_error(f), 0);
    memcpy(&pid_before, wp_future_result(f, NULL), sizeof pid_before);
    wp_future_release(f);

    size_t n = (size_t)2 << 20;
    f = tu_run(p, tu_big_result, &n, sizeof n, NULL);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_E2BIG);
    size_t len = 99;
    ck_assert_ptr_null(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_str_ne(wp_future_message(f), "");
    wp_future_release(f);

    /* Exactly max_message is allowed. */
    n = (size_t)1 << 20;
    f = tu_run(p, tu_big_result, &n, sizeof n, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    const void *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, n);
    ck_assert(tu_pattern_ok(r, len, 7));
    wp_future_release(f);

    /* The same worker goes on serving. */
    f = tu_run(p, tu_pid, NULL, 0, NULL);
    int pid_after;
    ck_assert_int_eq(wp_future_error(f), 0);
    memcpy(&pid_after, wp_future_result(f, NULL), sizeof pid_after);
    wp_future_release(f);
    ck_assert_int_eq(pid_after, pid_before);

    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(4), .succeeded = TU_EQ(3), .failed = TU_EQ(1),
                       .crashed = TU_EQ(0), .workers_started = TU_EQ(1));
    wp_pool_destroy(p);
}

/* ----------------------------------------------------------------- stats */

WP_TEST_BOTH(stats_fields)
{
    tu_hold h;
    tu_hold_open(&h);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .workers_alive = TU_EQ(2), .workers_started = TU_EQ(2),
                       .submitted = TU_EQ(0), .queued = TU_EQ(0), .running = TU_EQ(0));

    wp_future *held = tu_submit_held(p, &h, NULL, NULL);
    s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(1), .running = TU_EQ(1), .queued = TU_EQ(0),
                       .workers_alive = TU_EQ(2));
    ck_assert_int_eq(wp_future_state(held), WP_RUNNING);

    wp_future *fs[7];
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    int code = 42;
    for (int i = 5; i < 7; i++)
        ck_assert_int_eq(wp_submit(p, tu_fail, &code, sizeof code, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, 7, -1), 0);
    for (int i = 0; i < 7; i++)
        wp_future_release(fs[i]);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wp_future_wait(held, -1), 0);
    wp_future_release(held);

    /* The counts settle right after the futures do: poll for them. */
    TU_POLL_UNTIL(tu_pool_stats(p).succeeded + tu_pool_stats(p).failed >= 8);
    s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(8), .succeeded = TU_EQ(6), .failed = TU_EQ(2),
                       .cancelled = TU_EQ(0), .timed_out = TU_EQ(0), .crashed = TU_EQ(0),
                       .retried = TU_EQ(0), .workers_started = TU_EQ(2), .workers_alive = TU_EQ(2));

    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    s = tu_pool_stats(p); /* still readable after shutdown */
    tu_assert_stats(s, .workers_alive = TU_EQ(0), .running = TU_EQ(0), .queued = TU_EQ(0),
                       .submitted = TU_EQ(8));
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* -------------------------------------------------------- done-callbacks */

enum { CB_TASKS = 200 };
static atomic_int cb_total;
static atomic_int cb_each[CB_TASKS];
static pthread_t cb_registering_thread;
static atomic_int cb_inline;

static void on_done_count(wp_future *f, void *ctx)
{
    atomic_int *c = ctx;
    /* The future is settled when its callbacks run. */
    if (wp_future_state(f) == WP_SUCCEEDED)
        atomic_fetch_add(c, 1);
    atomic_fetch_add(&cb_total, 1);
}

static void on_done_inline(wp_future *f, void *ctx)
{
    (void)ctx;
    if (pthread_equal(pthread_self(), cb_registering_thread) && wp_future_error(f) == 0)
        atomic_fetch_add(&cb_inline, 1);
}

WP_TEST_BOTH(done_callbacks)
{
    atomic_store(&cb_total, 0);
    atomic_store(&cb_inline, 0);
    for (int i = 0; i < CB_TASKS; i++)
        atomic_store(&cb_each[i], 0);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_future *fs[CB_TASKS];
    for (int i = 0; i < CB_TASKS; i++) {
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
        ck_assert_int_eq(wp_future_on_done(fs[i], on_done_count, &cb_each[i]), 0);
    }
    ck_assert_int_eq(wp_future_on_done(NULL, on_done_count, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_on_done(fs[0], NULL, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(fs, CB_TASKS, -1), 0);

    /* Callbacks run on the dispatcher right after the future settles:
       poll for the count. */
    TU_POLL_UNTIL(atomic_load(&cb_total) >= CB_TASKS);
    /* On a settled future a callback runs at once, in the caller. */
    cb_registering_thread = pthread_self();
    ck_assert_int_eq(wp_future_on_done(fs[0], on_done_inline, NULL), 0);
    ck_assert_int_eq(atomic_load(&cb_inline), 1);

    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(atomic_load(&cb_total), CB_TASKS);
    for (int i = 0; i < CB_TASKS; i++) {
        ck_assert_int_eq(atomic_load(&cb_each[i]), 1);
        wp_future_release(fs[i]);
    }
    wp_pool_destroy(p);
}

/* A done-callback runs on the dispatcher: a wp_submit from there must not
   block on a full queue (only the dispatcher drains it), it answers
   WP_EAGAIN; with room, continuation chains work. */
static wp_pool *cb_pool;
static atomic_int cb_rc = 1; /* 1: the callback has not run yet */
static wp_future *_Atomic cb_follow;

static void on_done_submit(wp_future *f, void *ctx)
{
    (void)f; (void)ctx;
    wp_future *g = NULL;
    int rc = wp_submit(cb_pool, tu_echo, "c", 1, NULL, &g);
    atomic_store(&cb_follow, g);
    atomic_store(&cb_rc, rc);
}

static int wait_cb_rc(void)
{
    TU_POLL_UNTIL(atomic_load(&cb_rc) != 1); /* else it is stuck in wp_submit */
    return atomic_load(&cb_rc);
}

WP_TEST_BOTH(submit_from_callback_full_queue)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .queue_capacity = 4 });
    cb_pool = p;
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    /* One task goes behind the busy one; then the queue fills up. */
    ck_assert_int_eq(wp_submit(p, tu_empty, NULL, 0, NULL, NULL), 0);
    TU_POLL_UNTIL(tu_pool_stats(p).queued == 0);
    const wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    int filled = 0;
    while (wp_submit(p, tu_empty, NULL, 0, &nowait, NULL) == 0)
        filled++;
    ck_assert_int_eq(filled, 4);

    atomic_store(&cb_rc, 1);
    ck_assert_int_eq(wp_future_on_done(busy, on_done_submit, NULL), 0);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wait_cb_rc(), WP_EAGAIN);
    ck_assert_ptr_null(atomic_load(&cb_follow));

    /* With room, a callback's submit queues its follow-up. */
    ck_assert_int_eq(wp_wait_all(&busy, 1, -1), 0);
    wp_future *drained = tu_run(p, tu_empty, NULL, 0, NULL); /* behind the filler */
    wp_future_release(drained);
    wp_future *last = tu_submit_held(p, &h, NULL, NULL);
    atomic_store(&cb_rc, 1);
    ck_assert_int_eq(wp_future_on_done(last, on_done_submit, NULL), 0);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wait_cb_rc(), 0);
    wp_future *g = atomic_load(&cb_follow);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(wp_future_wait(g, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(g), 0);
    wp_future_release(g);
    wp_future_release(last);
    wp_future_release(busy);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* ---------------------------------------------------------- its tests */

TU_PART(pool_add_results_tests,
        TU_TEST(big_argument_and_result),
        TU_TEST(result_over_max_message),
        TU_TEST(stats_fields),
        TU_TEST(done_callbacks),
        TU_TEST(submit_from_callback_full_queue))
