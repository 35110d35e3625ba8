/* SPDX-License-Identifier: MIT */
/*
 * check_pool.c — the pool's public behaviour (DESIGN §1, §2, §4 "Pool",
 * "Submitting"): creation and options, submit/wait/result, argument checks,
 * many submitting threads, backpressure, big frames, result limits, stats,
 * done-callbacks, shutdown, and what workers inherit.
 *
 * Every test runs twice, under WP_START_FORKSERVER and WP_START_FORK
 * (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
 * joins threads, or polls the observed condition against a deadline.
 * Tasks that must stay running while the test looks use tu_report with
 * FIFOs the test owns (testutil.h).
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"


/* ------------------------------------------------------------- creation */

WP_TEST_BOTH(create_null_options)
{
    wp_pool *p = NULL;
    ck_assert_int_eq(wp_pool_create(&p, NULL), 0);
    ck_assert_ptr_nonnull(p);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* workers 0 = online CPUs */
    tu_wait_workers(p, cpus > 0 ? (unsigned)cpus : 1, 0);
    wp_future *f = tu_run(p, tu_echo, "abc", 3, NULL);
    tu_check_echo(f, "abc", 3);
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(create_with_options)
{
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = 3, .queue_capacity = 16, .max_message = 1 << 20 });
    wp_future *f = tu_run(p, tu_echo, "options", 7, NULL);
    tu_check_echo(f, "options", 7);
    wp_future_release(f);
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.workers_alive, 3);
    ck_assert_uint_ge(s.workers_started, 3);
    /* max_message applies to arguments */
    static char big[(1 << 20) + 1];
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_submit(p, tu_echo, big, sizeof big, NULL, &f), WP_E2BIG);
    ck_assert_ptr_null(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(create_bad_options)
{
    wp_pool *p = (wp_pool *)&p;
    wp_pool_options o = { .workers = 1, .start_method = 7 };
    ck_assert_int_eq(wp_pool_create(&p, &o), WP_EINVAL);
    ck_assert_ptr_null(p);

    p = (wp_pool *)&p;
    o = (wp_pool_options){ .workers = 100000, .start_method = tu_method };
    ck_assert_int_eq(wp_pool_create(&p, &o), WP_EINVAL);
    ck_assert_ptr_null(p);

    o = (wp_pool_options){ .workers = 1, .start_method = tu_method };
    ck_assert_int_eq(wp_pool_create(NULL, &o), WP_EINVAL);
    ck_assert_int_eq(wp_pool_create(NULL, NULL), WP_EINVAL);
}

/* --------------------------------------------------------------- submit */

WP_TEST_BOTH(echo_small_and_empty)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    const char msg[] = "hello, worker";
    wp_future *f = tu_run(p, tu_echo, msg, sizeof msg, NULL);
    tu_check_echo(f, msg, sizeof msg);
    wp_future_release(f);

    f = tu_run(p, tu_echo, NULL, 0, NULL); /* empty argument, empty result */
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);

    f = tu_run(p, tu_echo, msg, 0, NULL); /* non-NULL pointer, zero length */
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);

    f = tu_run(p, tu_empty, msg, sizeof msg, NULL);
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);

    /* Many futures waited at once, each with its own bytes. */
    enum { N = 64 };
    wp_future *fs[N];
    int vals[N];
    for (int i = 0; i < N; i++) {
        vals[i] = i * 7919;
        ck_assert_int_eq(wp_submit(p, tu_echo, &vals[i], sizeof vals[i], NULL, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_wait_all(fs, N, -1), 0);
    for (int i = 0; i < N; i++) {
        tu_check_echo(fs[i], &vals[i], sizeof vals[i]);
        wp_future_release(fs[i]);
    }
    wp_pool_destroy(p);
}

WP_TEST_BOTH(submit_bad_arguments)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .max_message = 4096 });
    wp_future *f;
    const char arg[] = "x";
#define EXPECT_FAIL(code, call)                  \
    do {                                         \
        f = (wp_future *)&f;                     \
        ck_assert_int_eq((call), (code));        \
        ck_assert_ptr_null(f);                   \
    } while (0)
    EXPECT_FAIL(WP_EINVAL, wp_submit(NULL, tu_echo, arg, 1, NULL, &f));
    EXPECT_FAIL(WP_EINVAL, wp_submit(p, NULL, arg, 1, NULL, &f));
    EXPECT_FAIL(WP_EINVAL, wp_submit(p, tu_echo, NULL, 5, NULL, &f));
    wp_task_options o = { .timeout_ms = -1 };
    EXPECT_FAIL(WP_EINVAL, wp_submit(p, tu_echo, arg, 1, &o, &f));
    o = (wp_task_options){ .flags = 1u << 7 };
    EXPECT_FAIL(WP_EINVAL, wp_submit(p, tu_echo, arg, 1, &o, &f));
    o = (wp_task_options){ .flags = WP_TASK_NOWAIT | (1u << 30) };
    EXPECT_FAIL(WP_EINVAL, wp_submit(p, tu_echo, arg, 1, &o, &f));

    /* arg_len > max_message: E2BIG; exactly max_message is fine. */
    char *big = malloc(4097);
    ck_assert_ptr_nonnull(big);
    tu_pattern(big, 4097, 3);
    EXPECT_FAIL(WP_E2BIG, wp_submit(p, tu_echo, big, 4097, NULL, &f));
#undef EXPECT_FAIL
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, 0); /* nothing was queued */

    f = tu_run(p, tu_echo, big, 4096, NULL);
    tu_check_echo(f, big, 4096);
    wp_future_release(f);
    free(big);

    wp_pool_stats st;
    ck_assert_int_eq(wp_pool_get_stats(NULL, &st), WP_EINVAL);
    ck_assert_int_eq(wp_pool_get_stats(p, NULL), WP_EINVAL);
    wp_pool_destroy(p);
}

/* ------------------------------------------------- many submitting threads */

enum { THREADS = 8, PER_THREAD = 2000 };

/* Task i of thread t echoes { t, i }. */
static int echo_pair(void *pool, unsigned t, unsigned i, wp_future **out)
{
    uint32_t v[2] = { t, i };
    return wp_submit(pool, tu_echo, v, sizeof v, NULL, out);
}

static bool echoed_pair(void *pool, unsigned t, unsigned i, wp_future *f)
{
    (void)pool;
    uint32_t v[2] = { t, i }, got[2] = { 0, 0 };
    size_t len = 0;
    const void *r = wp_future_result(f, &len);
    if (wp_future_state(f) == WP_SUCCEEDED && r != NULL && len == sizeof v &&
        memcmp(r, v, sizeof v) == 0)
        return true;
    if (r != NULL && len == sizeof got)
        memcpy(got, r, sizeof got);
    fprintf(stderr, "thread %u task %u: state %d, %s, \"%s\", %zu bytes {%u, %u}\n", t, i,
            wp_future_state(f), wp_strerror(wp_future_error(f)), wp_future_message(f), len,
            (unsigned)got[0], (unsigned)got[1]);
    return false;
}

WP_TEST_BOTH(many_submitting_threads)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2, .queue_capacity = 256 });
    tu_run_crowd(&(tu_crowd){ .threads = THREADS, .per_thread = PER_THREAD, .submit = echo_pair,
                              .ok = echoed_pair, .ctx = p });
    /* Every future was waited on; after shutdown every count is final. */
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ((uint64_t)THREADS * PER_THREAD),
                       .succeeded = TU_EQ(s.submitted), .failed = TU_EQ(0), .cancelled = TU_EQ(0),
                       .timed_out = TU_EQ(0), .crashed = TU_EQ(0), .retried = TU_EQ(0),
                       .queued = TU_EQ(0), .running = TU_EQ(0), .workers_alive = TU_EQ(0));
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- backpressure */

typedef struct blocked_submitter {
    wp_pool   *pool;
    wp_future *fs[4];
    int        rc[4];
    atomic_bool done;
} blocked_submitter;

static void *submit_blocking(void *arg)
{
    blocked_submitter *b = arg;
    for (int i = 0; i < 4; i++) {
        int v = 1000 + i;
        b->rc[i] = wp_submit(b->pool, tu_echo, &v, sizeof v, NULL, &b->fs[i]);
    }
    atomic_store(&b->done, true);
    return NULL;
}

WP_TEST_BOTH(backpressure)
{
    tu_hold h;
    tu_hold_open(&h);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .queue_capacity = 1 });

    /* The only worker runs a blocker until the test opens its gate. */
    int wpid;
    wp_future *blocker = tu_submit_held(p, &h, NULL, &wpid);

    /* Fill the queue without blocking until it says WP_EAGAIN.  A queue of
       one, plus at most the one task the dispatcher may pipeline to the busy
       worker, takes at most two: the dispatcher can take a task off the
       queue between our submits, so count what gets in rather than expect
       EAGAIN at a given submit. */
    wp_future *fs[16];
    int accepted = 0, rc = 0;
    wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    while (accepted < 16) {
        wp_future *f = (wp_future *)&f;
        rc = wp_submit(p, tu_echo, &accepted, sizeof accepted, &nowait, &f);
        if (rc != 0) {
            ck_assert_ptr_null(f);
            break;
        }
        fs[accepted++] = f;
    }
    ck_assert_int_eq(rc, WP_EAGAIN);
    ck_assert_int_ge(accepted, 1);
    /* out == NULL with NOWAIT: the same, until EAGAIN. */
    int anonymous = 0;
    while (anonymous < 16 && (rc = wp_submit(p, tu_echo, "x", 1, &nowait, NULL)) == 0)
        anonymous++;
    ck_assert_int_eq(rc, WP_EAGAIN);
    ck_assert_int_le(accepted + anonymous, 2);
    wp_pool_stats s = tu_pool_stats(p); /* failed submits queued nothing */
    ck_assert_uint_eq(s.submitted, 1 + (uint64_t)accepted + (uint64_t)anonymous);

    /* A blocking submitter cannot get 4 more tasks in while the worker is
       held; it finishes once the gate opens. */
    blocked_submitter b = { .pool = p };
    atomic_init(&b.done, false);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, submit_blocking, &b), 0);
    ck_assert(!atomic_load(&b.done));
    ck_assert_int_eq(wp_future_state(blocker), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert(atomic_load(&b.done));

    ck_assert_int_eq(wp_future_wait(blocker, -1), 0);
    tu_check_echo(blocker, &wpid, sizeof wpid);
    wp_future_release(blocker);
    for (int i = 0; i < accepted; i++) {
        tu_check_echo(fs[i], &i, sizeof i);
        wp_future_release(fs[i]);
    }
    for (int i = 0; i < 4; i++) {
        int v = 1000 + i;
        ck_assert_int_eq(b.rc[i], 0);
        tu_check_echo(b.fs[i], &v, sizeof v);
        wp_future_release(b.fs[i]);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(1 + (uint64_t)accepted + (uint64_t)anonymous + 4),
                       .succeeded = TU_EQ(s.submitted));
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

WP_TEST_BOTH(submit_without_future)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, NULL), 0);
    int code = 9;
    ck_assert_int_eq(wp_submit(p, tu_fail, &code, sizeof code, NULL, NULL), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* they run to the end */
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(51), .succeeded = TU_EQ(50), .failed = TU_EQ(1),
                       .cancelled = TU_EQ(0));
    wp_pool_destroy(p);
}

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

/* -------------------------------------------------------------- shutdown */

static void *shutdown_thread(void *arg)
{
    return (void *)(intptr_t)wp_pool_shutdown(arg, -1);
}

WP_TEST_BOTH(shutdown_idempotent_and_concurrent)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, 0), 0);
    wp_pool_destroy(p);

    /* Two threads at once, with work in flight: both return once it is
       all done, and the work completes (grace -1). */
    p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 8 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        int64_t ms = 20;
        ck_assert_int_eq(wp_submit(p, tu_sleep, &ms, sizeof ms, NULL, &fs[i]), 0);
    }
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, shutdown_thread, p), 0);
    ck_assert_int_eq(pthread_create(&b, NULL, shutdown_thread, p), 0);
    void *ra, *rb;
    ck_assert_int_eq(pthread_join(a, &ra), 0);
    ck_assert_int_eq(pthread_join(b, &rb), 0);
    ck_assert_int_eq((int)(intptr_t)ra, 0);
    ck_assert_int_eq((int)(intptr_t)rb, 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0); /* settled already */
        int64_t ms = 20;
        tu_check_echo(fs[i], &ms, sizeof ms);
        wp_future_release(fs[i]);
    }
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .workers_alive = TU_EQ(0));
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_destroy(p);
    ck_assert_int_eq(wp_pool_shutdown(NULL, -1), WP_EINVAL);
    wp_pool_destroy(NULL);
}

/* wp_pool_destroy while other threads wait in wp_pool_shutdown(-1): they
   all return 0 and destroy frees the pool only after they have left it. */
static int shutdown_blocking(void *pool)
{
    return wp_pool_shutdown(pool, -1);
}

WP_TEST_BOTH(destroy_races_shutdown)
{
    enum { ROUNDS = 10, WAITERS = 4 };
    tu_hold h;
    tu_hold_open(&h);
    for (int round = 0; round < ROUNDS; round++) {
        wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
        tu_report_arg a = tu_report_arg_of(0, &h.report, &h.gate);
        ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, NULL, NULL), 0);
        ck_assert_int_gt(tu_fifo_read_pid(&h.report, TU_DEADLINE_MS), 0);
        tu_blocker w[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            tu_blocker_start(&w[i], shutdown_blocking, p);
        tu_fifo_release(&h.gate, 1);
        wp_pool_destroy(p); /* the waiters may still be inside */
        for (int i = 0; i < WAITERS; i++)
            ck_assert_int_eq(tu_blocker_join(&w[i]), 0);
    }
    tu_hold_close(&h);
}

WP_TEST_BOTH(submit_after_shutdown)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    wp_future *f = tu_run(p, tu_echo, "a", 1, NULL);
    wp_future_release(f);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, NULL, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, NULL, NULL), WP_ESHUTDOWN);
    wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_submit(p, tu_echo, "b", 1, &nowait, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, 1);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(futures_outlive_pool)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 20 };
    wp_future *fs[N];
    char payload[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(payload[i], sizeof payload[i], "result number %d", i);
        ck_assert_int_eq(wp_submit(p, tu_echo, payload[i], strlen(payload[i]) + 1, NULL, &fs[i]), 0);
    }
    int code = 17;
    wp_future *failing;
    ck_assert_int_eq(wp_submit(p, tu_fail, &code, sizeof code, NULL, &failing), 0);
    ck_assert_int_eq(wp_future_wait(fs[0], -1), 0);
    /* Destroy without waiting for the rest: it runs them to the end. */
    wp_pool_destroy(p);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        tu_check_echo(fs[i], payload[i], strlen(payload[i]) + 1);
        wp_future_release(fs[i]);
    }
    ck_assert_int_eq(wp_future_state(failing), WP_FAILED);
    ck_assert_int_eq(wp_future_error(failing), WP_ETASK);
    ck_assert_int_eq(wp_future_code(failing), 17);
    ck_assert_str_eq(wp_future_message(failing), "tu_fail");
    ck_assert_int_eq(wp_future_cancel(failing), WP_EINVAL);
    wp_future_release(failing);
}

/* ------------------------------------------------------------ descriptors */

WP_TEST_BOTH(workers_inherit_no_descriptors)
{
    /* 20 descriptors without O_CLOEXEC, open while the pool starts. */
    int fds[20];
    for (int i = 0; i < 16; i += 2)
        ck_assert_int_eq(pipe(&fds[i]), 0);
    for (int i = 16; i < 20; i++) {
        fds[i] = open("/dev/null", O_RDWR);
        ck_assert_int_ge(fds[i], 0);
    }
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 8 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(wp_submit(p, tu_count_fds, NULL, 0, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, N, -1), 0);
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        const void *r = wp_future_result(fs[i], &len);
        ck_assert_int_eq(wp_future_error(fs[i]), 0);
        ck_assert_uint_eq(len, sizeof(int));
        int n;
        memcpy(&n, r, sizeof n);
        ck_assert_msg(n == 2, "a worker has %d descriptors open above stderr, not 2", n);
        wp_future_release(fs[i]);
    }
    /* Descriptors opened after the pool started are not seen either. */
    int late[2];
    ck_assert_int_eq(pipe(late), 0);
    wp_future *f = tu_run(p, tu_count_fds, NULL, 0, NULL);
    int n;
    memcpy(&n, wp_future_result(f, NULL), sizeof n);
    ck_assert_int_eq(n, 2);
    wp_future_release(f);
    wp_pool_destroy(p);
    close(late[0]);
    close(late[1]);
    for (int i = 0; i < 20; i++)
        close(fds[i]);
}

/* The documented maximum of 1024 workers starts, and tasks submitted at
   once do not fail on a transient EAGAIN (the fork server's socket fills
   with start requests): they wait and run. */
WP_TEST_BOTH(thousand_workers)
{
    enum { WORKERS = 1024, TASKS = 2048 };
    wp_pool *p = NULL;
    ck_assert_int_eq(wp_pool_create(&p, &(wp_pool_options){ .workers = WORKERS,
                                                            .start_method = tu_method }), 0);
    wp_future **fs = calloc(TASKS, sizeof *fs);
    ck_assert_ptr_nonnull(fs);
    for (int i = 0; i < TASKS; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, TASKS, 120000), 0);
    for (int i = 0; i < TASKS; i++) {
        tu_check_echo(fs[i], &i, sizeof i);
        wp_future_release(fs[i]);
    }
    free(fs);
    tu_wait_workers(p, WORKERS, WORKERS);
    wp_pool_destroy(p);
}

/* ------------------------------------------------------- wp_submit_many */

/* Item i of a many-item submit: what the task does with it. */
enum { MANY_ECHO, MANY_SEGV, MANY_FAIL, MANY_HANG };
typedef struct many_item {
    int op;
    int value;
} many_item;

static int many_task(const void *arg, size_t len, wp_buf *out)
{
    many_item it;
    TU_TASK_ARG(it, arg, len, out);
    switch (it.op) {
    case MANY_SEGV:
        return tu_segv(NULL, 0, out);
    case MANY_FAIL:
        return wp_buf_fail(out, it.value, "item failed");
    case MANY_HANG:
        return tu_hang(NULL, 0, out);
    default:
        return wp_buf_append(out, &it.value, sizeof it.value);
    }
}

WP_TEST_BOTH(submit_many_semantics)
{
    enum { N = 600 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    many_item *its = calloc(N, sizeof *its);
    wp_item *items = calloc(N, sizeof *items);
    wp_future **fs = calloc(N, sizeof *fs);
    ck_assert(its != NULL && items != NULL && fs != NULL);
    for (int i = 0; i < N; i++) {
        its[i] = (many_item){ i % 97 == 5 ? MANY_SEGV : i % 89 == 7 ? MANY_FAIL : MANY_ECHO, i };
        items[i] = (wp_item){ &its[i], sizeof its[i] };
    }
    size_t accepted = 12345;
    ck_assert_int_eq(wp_submit_many(p, many_task, items, N, NULL, fs, &accepted), 0);
    ck_assert_uint_eq(accepted, N);
    ck_assert_int_eq(wp_wait_all(fs, N, TU_DEADLINE_MS), 0);
    int crashed = 0;
    for (int i = 0; i < N; i++) {
        if (its[i].op == MANY_SEGV) {
            ck_assert_int_eq(wp_future_error(fs[i]), WP_ECRASHED);
            ck_assert_int_eq(wp_future_code(fs[i]), SIGSEGV);
            crashed++;
        } else if (its[i].op == MANY_FAIL) {
            ck_assert_int_eq(wp_future_error(fs[i]), WP_ETASK);
            ck_assert_int_eq(wp_future_code(fs[i]), i);
        } else {
            tu_check_echo(fs[i], &i, sizeof i); /* only the crashing items failed */
        }
        wp_future_release(fs[i]);
    }
    tu_wait_workers(p, 2, 2 + (uint64_t)crashed);

    /* A deadline and a cancel in the middle of a run of items: only those
       two items end that way. */
    its[10] = (many_item){ MANY_HANG, 10 };
    its[20] = (many_item){ MANY_HANG, 20 };
    for (int i = 0; i < 40; i++)
        if (i != 10 && i != 20)
            its[i] = (many_item){ MANY_ECHO, i };
    wp_task_options o = { .timeout_ms = 200 };
    ck_assert_int_eq(wp_submit_many(p, many_task, items, 20, &o, fs, NULL), 0);
    ck_assert_int_eq(wp_submit_many(p, many_task, items + 20, 20, NULL, fs + 20, NULL), 0);
    TU_POLL_UNTIL(wp_future_state(fs[20]) == WP_RUNNING);
    ck_assert_int_eq(wp_future_cancel(fs[20]), 0);
    ck_assert_int_eq(wp_wait_all(fs, 40, TU_DEADLINE_MS), 0);
    for (int i = 0; i < 40; i++) {
        if (i == 10)
            ck_assert_int_eq(wp_future_error(fs[i]), WP_ETIMEDOUT);
        else if (i == 20)
            ck_assert_int_eq(wp_future_error(fs[i]), WP_ECANCELED);
        else
            tu_check_echo(fs[i], &i, sizeof i);
        wp_future_release(fs[i]);
    }
    /* The deadline killed a worker; the cancel did too unless it came
       before item 20 had really started (then it was taken back). */
    tu_wait_workers(p, 2, 2 + (uint64_t)crashed + 1);

    /* Errors: what was queued before the bad item stays queued. */
    items[3] = (wp_item){ NULL, 4 };
    ck_assert_int_eq(wp_submit_many(p, many_task, items, 8, NULL, fs, &accepted), WP_EINVAL);
    ck_assert_uint_eq(accepted, 3);
    for (int i = 3; i < 8; i++)
        ck_assert_ptr_null(fs[i]);
    ck_assert_int_eq(wp_wait_all(fs, 3, TU_DEADLINE_MS), 0);
    for (int i = 0; i < 3; i++)
        wp_future_release(fs[i]);
    ck_assert_int_eq(wp_submit_many(NULL, many_task, items, 1, NULL, NULL, &accepted), WP_EINVAL);
    ck_assert_int_eq(wp_submit_many(p, NULL, items, 1, NULL, NULL, &accepted), WP_EINVAL);
    ck_assert_int_eq(wp_submit_many(p, many_task, NULL, 1, NULL, NULL, &accepted), WP_EINVAL);
    ck_assert_int_eq(wp_submit_many(p, many_task, NULL, 0, NULL, NULL, &accepted), 0);
    ck_assert_uint_eq(accepted, 0);
    wp_pool_destroy(p);
    free(its);
    free(items);
    free(fs);
}

/* With WP_TASK_NOWAIT a full queue stops the submit at the first item that
   does not fit. */
WP_TEST_BOTH(submit_many_nowait)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .queue_capacity = 8 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *held = tu_submit_held(p, &h, NULL, NULL);
    enum { N = 64 };
    many_item its[N];
    wp_item items[N];
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        its[i] = (many_item){ MANY_ECHO, i };
        items[i] = (wp_item){ &its[i], sizeof its[i] };
    }
    size_t accepted = 0;
    const wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    ck_assert_int_eq(wp_submit_many(p, many_task, items, N, &nowait, fs, &accepted), WP_EAGAIN);
    ck_assert_uint_ge(accepted, 8);
    ck_assert_uint_lt(accepted, N);
    for (size_t i = accepted; i < N; i++)
        ck_assert_ptr_null(fs[i]);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(wp_wait_all(fs, accepted, TU_DEADLINE_MS), 0);
    for (size_t i = 0; i < accepted; i++) {
        int v = (int)i;
        tu_check_echo(fs[i], &v, sizeof v);
        wp_future_release(fs[i]);
    }
    wp_future_release(held);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "pool", .timeout_s = 60 };
    const tu_test tests[] = {
        TU_TEST(create_null_options),
        TU_TEST(create_with_options),
        TU_TEST(create_bad_options),
        TU_TEST(echo_small_and_empty),
        TU_TEST(submit_bad_arguments),
        TU_TEST(many_submitting_threads),
        TU_TEST(backpressure),
        TU_TEST(submit_without_future),
        TU_TEST(big_argument_and_result),
        TU_TEST(result_over_max_message),
        TU_TEST(stats_fields),
        TU_TEST(done_callbacks),
        TU_TEST(submit_from_callback_full_queue),
        TU_TEST(shutdown_idempotent_and_concurrent),
        TU_TEST(destroy_races_shutdown),
        TU_TEST(submit_after_shutdown),
        TU_TEST(futures_outlive_pool),
        TU_TEST(workers_inherit_no_descriptors),
        TU_TEST(thousand_workers),
        TU_TEST(submit_many_semantics),
        TU_TEST(submit_many_nowait),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
