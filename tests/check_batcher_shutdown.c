/* SPDX-License-Identifier: MIT */
/*
 * check_batcher_shutdown.c — the end of a batcher (check_batcher.c says how
 * the suite's tests work): graceful, forced and graceful-with-a-limit
 * shutdown (without spinning past the grace), a shutdown cut short by a
 * second one, submits after it, and destroy settling what is left.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <time.h>

#include "check_batcher.h"

WP_TEST_BOTH(graceful_shutdown)
{
    enum { N = 10 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 4, .max_wait_ms = LONG_WAIT_MS, .max_in_flight = 1 });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_SLEEP, 20);
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    /* Every item settled before shutdown returned. */
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        expect_value(fs[i], 20);
    }
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items_batched, N);
    ck_assert_uint_eq(s.batches, 3);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(forced_shutdown)
{
    enum { N = 6 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = LONG_WAIT_MS, .max_in_flight = 1 });
    wp_future *fs[N];
    fs[0] = submit(b, OP_HANG, 0); /* items 0 and 1: the batch in flight, hanging */
    for (int i = 1; i < N; i++)
        fs[i] = submit(b, OP_VALUE, i); /* 2..5 wait behind it */
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    ck_assert_uint_eq(bstats(b).pending, N - 2);
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_batcher_shutdown(b, 0), 0);
    ck_assert_int_lt(tu_now_ms() - t0, TU_DEADLINE_MS);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        expect_outcome(fs[i], WP_CANCELLED, WP_ECANCELED);
    }
    ck_assert_int_eq(atomic_load(&pr->entered), 1);
    /* The pool lost a worker to the cancel and serves on. */
    tu_wait_workers(p, 2, 3);
    wp_future *f = tu_run(p, tu_echo, "after", 5, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(shutdown_with_grace)
{
    /* A grace long enough that item 0 (20 ms of work) finishes in it even
       on a loaded machine; item 1 then hangs until the grace ends. */
    enum { N = 6, GRACE_MS = 1500 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 1, .max_wait_ms = LONG_WAIT_MS, .max_in_flight = 1 });
    wp_future *fs[N];
    fs[0] = submit(b, OP_SLEEP, 20); /* finishes within the grace */
    fs[1] = submit(b, OP_HANG, 0);   /* sent in the grace, never finishes */
    for (int i = 2; i < N; i++)
        fs[i] = submit(b, OP_VALUE, i); /* still waiting when the grace ends */
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_batcher_shutdown(b, GRACE_MS), 0);
    int64_t took = tu_now_ms() - t0;
    ck_assert_msg(took >= GRACE_MS, "shutdown returned after %lld ms, before its grace",
                  (long long)took);
    ck_assert_int_lt(took, GRACE_MS + TU_DEADLINE_MS);
    expect_value(fs[0], 20);
    for (int i = 1; i < N; i++)
        expect_outcome(fs[i], WP_CANCELLED, WP_ECANCELED);
    /* Item 1 was sent in the grace (whether it reached the batch function
       before the cancel depends on the machine); 2..5 never were. */
    ck_assert_int_le(atomic_load(&pr->entered), 2);
    ck_assert_uint_le(bstats(b).items_batched, 2);
    release_all(fs, N);
    finish(b, p);
}

static double cpu_seconds(void)
{
    struct rusage u;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &u), 0);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

/* Past the grace, a shielded batch runs to its end and shutdown waits for
   it; meanwhile nothing in this process should burn CPU (the workers are
   other processes, outside RUSAGE_SELF). */
WP_TEST_BOTH(shutdown_past_grace_does_not_spin)
{
    enum { WORK_MS = 600 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 1, .max_wait_ms = LONG_WAIT_MS,
                              .task.flags = WP_TASK_SHIELD });
    wp_future *f = submit(b, OP_SLEEP, WORK_MS);
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    double cpu0 = cpu_seconds();
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_batcher_shutdown(b, 0), 0);
    double wall = (double)(tu_now_ms() - t0) / 1000.0, cpu = cpu_seconds() - cpu0;
    expect_value(f, WORK_MS); /* shielded: it ran to its end */
    ck_assert_msg(cpu < 0.05 + 0.1 * wall,
                  "shutdown waited %.3f s for a shielded batch and used %.3f s of CPU", wall, cpu);
    wp_future_release(f);
    finish(b, p);
}

typedef struct shutdown_call {
    wp_batcher *b;
    int64_t     grace_ms;
    int         rc;
} shutdown_call;

static void *shutdown_main(void *arg)
{
    shutdown_call *c = arg;
    c->rc = wp_batcher_shutdown(c->b, c->grace_ms);
    return NULL;
}

/* Shutdown is idempotent, and a later call with a shorter grace shortens a
   shutdown already waiting in another thread. */
WP_TEST_BOTH(shutdown_idempotent_and_shortened)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 1, .max_wait_ms = LONG_WAIT_MS });
    wp_future *f = submit(b, OP_HANG, 0);
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    shutdown_call c = { b, -1, 1 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, shutdown_main, &c), 0);
    /* Once it is closing, a new item is refused... */
    bitem it = { OP_VALUE, 1 };
    TU_POLL_UNTIL(wp_batcher_submit(b, &it, sizeof it, NULL) == WP_ESHUTDOWN);
    /* ...and a forced shutdown ends both calls. */
    ck_assert_int_eq(wp_batcher_shutdown(b, 0), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(c.rc, 0);
    expect_outcome(f, WP_CANCELLED, WP_ECANCELED);
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(wp_batcher_shutdown(b, 0), 0);
    wp_future_release(f);
    finish(b, p);
}

WP_TEST_BOTH(submit_after_shutdown)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ 0 });
    wp_future *f = submit(b, OP_VALUE, 3);
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    expect_value(f, 3);
    wp_future_release(f);
    bitem it = { OP_VALUE, 4 };
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, &it, sizeof it, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(b, &it, sizeof it, WP_TASK_NOWAIT, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_flush(b), WP_ESHUTDOWN);
    ck_assert_uint_eq(bstats(b).items, 1);
    /* The pool itself is untouched. */
    f = tu_run(p, tu_echo, "pool", 4, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    finish(b, p);
}

/* Items whose batcher is destroyed without a shutdown still settle. */
WP_TEST_BOTH(destroy_settles_items)
{
    enum { N = 5 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, i);
    wp_batcher_destroy(b);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(wp_future_wait(fs[i], 0), 0);
        expect_value(fs[i], i);
    }
    release_all(fs, N);
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(batcher_add_shutdown_tests,
        TU_TEST(graceful_shutdown),
        TU_TEST(forced_shutdown),
        TU_TEST(shutdown_with_grace),
        TU_TEST(shutdown_past_grace_does_not_spin),
        TU_TEST(shutdown_idempotent_and_shortened),
        TU_TEST(submit_after_shutdown),
        TU_TEST(destroy_settles_items))
