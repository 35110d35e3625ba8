/* SPDX-License-Identifier: MIT */
/*
 * check_pool_submit.c — making a pool and submitting to it (check_pool.c
 * says how the suite's tests work): default and given options, bad ones
 * refused, small and empty echoes, bad arguments to submit and the rest,
 * many threads submitting at once, and backpressure: a full queue blocks
 * a submit, or fails it with WP_TASK_NOWAIT.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "check_pool.h"

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

/* ---------------------------------------------------------- its tests */

TU_PART(pool_add_submit_tests,
        TU_TEST(create_null_options),
        TU_TEST(create_with_options),
        TU_TEST(create_bad_options),
        TU_TEST(echo_small_and_empty),
        TU_TEST(submit_bad_arguments),
        TU_TEST(many_submitting_threads),
        TU_TEST(backpressure),
        TU_TEST(submit_without_future))
