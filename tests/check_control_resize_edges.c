/* SPDX-License-Identifier: MIT */
/*
 * check_control_resize_edges.c — wp_pool_resize at its edges
 * (check_control.c says how the suite's tests work; the resizing itself
 * is check_control_resize.c's): its errors — WP_EINVAL for a NULL pool,
 * more than 1024 workers or a descriptor limit that cannot hold them (a
 * shrink needs none, also while workers are still starting),
 * WP_ESHUTDOWN once a shutdown began, in task code too — each leaving the
 * pool as it was; 0 meaning the online CPUs; calls from done-callbacks,
 * before and during a shutdown; and 1024 workers and back to one, leaving
 * no process behind.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check_control_resize.h"

#define MAX_WORKERS_PUBLIC 1024 /* the header's "at most 1024" */

/* A task that resizes its worker's copy of the pool (its argument, a
   pointer valid in the copy): the answer is its result. */
static int resize_in_task(const void *arg, size_t len, wp_buf *out)
{
    wp_pool *pool;
    TU_TASK_ARG(pool, arg, len, out);
    int rc = wp_pool_resize(pool, 4);
    return wp_buf_append(out, &rc, sizeof rc);
}

/* Refused calls change nothing: the pool keeps its two workers, and
   works. */
WP_TEST_BOTH(resize_invalid)
{
    ck_assert_int_eq(wp_pool_resize(NULL, 1), WP_EINVAL);
    ck_assert_int_eq(wp_pool_resize(NULL, 0), WP_EINVAL);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    ck_assert_int_eq(wp_pool_resize(p, MAX_WORKERS_PUBLIC + 1), WP_EINVAL);
    ck_assert_int_eq(wp_pool_resize(p, UINT_MAX), WP_EINVAL);
    wp_future *f;
    if (tu_method != WP_START_EXEC) { /* a fresh image has no copy of the pool to pass */
        f = tu_run(p, resize_in_task, &p, sizeof p, NULL);
        ck_assert_int_eq(tu_result_int(f), WP_ESHUTDOWN); /* a worker's copy runs nothing */
        wp_future_release(f);
    }
    f = tu_run(p, tu_empty, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(2), .workers_started = TU_EQ(2));
    wp_pool_destroy(p);
}

static int shutdown_waiting(void *pool)
{
    return wp_pool_shutdown(pool, -1);
}

/* WP_ESHUTDOWN from the moment a shutdown began: while it waits for a
   task, and after it returned. */
WP_TEST_BOTH(resize_after_shutdown)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *f = tu_submit_held(p, &h, NULL, NULL);
    tu_blocker b;
    tu_blocker_start(&b, shutdown_waiting, p); /* asleep: it has begun */
    ck_assert_int_eq(wp_pool_resize(p, 4), WP_ESHUTDOWN);
    ck_assert_int_eq(wp_pool_resize(p, 1), WP_ESHUTDOWN);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(tu_blocker_join(&b), 0);
    ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert_int_eq(wp_pool_resize(p, 2), WP_ESHUTDOWN);
    ck_assert_int_eq(wp_pool_resize(p, 0), WP_ESHUTDOWN);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(0), .workers_started = TU_EQ(2));
    wp_future_release(f);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* 0 is the online CPUs, from a size that differs. */
WP_TEST_BOTH(resize_zero_is_cpus)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_int_gt(cpus, 0);
    unsigned from = cpus == 1 ? 2 : 1;
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = from });
    if (cpus > MAX_WORKERS_PUBLIC) {
        ck_assert_int_eq(wp_pool_resize(p, 0), WP_EINVAL);
        wp_pool_destroy(p);
        return;
    }
    ck_assert_int_eq(wp_pool_resize(p, 0), 0);
    if ((unsigned)cpus > from)
        tu_wait_workers(p, (unsigned)cpus, (uint64_t)cpus); /* no allocation while they fork */
    TU_POLL_UNTIL(alive_now(p) == (unsigned)cpus);
    wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(cpus),
                    .workers_started = TU_EQ((unsigned)cpus > from ? (unsigned)cpus : from));
    wp_pool_destroy(p);
}

/* A done-callback resizes the pool whose dispatcher runs it. */
typedef struct cb_resize {
    wp_pool    *pool;
    unsigned    to;
    pthread_t   test;
    atomic_int  rc;
    atomic_bool elsewhere; /* it ran on another thread than the test's */
} cb_resize;

static void resize_on_done(wp_future *f, void *ctx)
{
    (void)f;
    cb_resize *c = ctx;
    atomic_store(&c->elsewhere, !pthread_equal(pthread_self(), c->test));
    atomic_store(&c->rc, wp_pool_resize(c->pool, c->to));
}

/* Hold a task, let it settle with resize_on_done(to) attached (so that
   the dispatcher runs the callback); returns what the resize said, once
   at least `to` workers are up if it said 0 (no allocation before: they
   may be forking). */
static int resize_from_done(wp_pool *p, unsigned to, bool shutting_down)
{
    tu_hold h;
    tu_hold_open(&h);
    wp_future *f = tu_submit_held(p, &h, NULL, NULL);
    cb_resize c = { .pool = p, .to = to, .test = pthread_self() };
    atomic_init(&c.rc, 1);
    atomic_init(&c.elsewhere, false);
    ck_assert_int_eq(wp_future_on_done(f, resize_on_done, &c), 0);
    tu_blocker b;
    if (shutting_down)
        tu_blocker_start(&b, shutdown_waiting, p);
    tu_fifo_release(&h.gate, 1);
    TU_POLL_UNTIL(atomic_load(&c.rc) != 1); /* the callback has run */
    int rc = atomic_load(&c.rc);
    if (rc == 0)
        tu_wait_workers(p, to, 0);
    if (shutting_down)
        ck_assert_int_eq(tu_blocker_join(&b), 0);
    ck_assert(atomic_load(&c.elsewhere));
    tu_wait_settled(f);
    wp_future_release(f);
    tu_hold_close(&h);
    return rc;
}

WP_TEST_BOTH(resize_from_callback)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    ck_assert_int_eq(resize_from_done(p, 4, false), 0);
    tu_wait_workers(p, 4, 4);
    ck_assert_int_eq(resize_from_done(p, 2, false), 0);
    TU_POLL_UNTIL(alive_now(p) == 2);
    ck_assert_int_eq(resize_from_done(p, 3, true), WP_ESHUTDOWN);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(0), .workers_started = TU_EQ(4));
    wp_pool_destroy(p);
}

/* Lower the descriptor limit, soft and hard, to those open now and
   `slack` more (the caller saved the limit before, to restore it). */
static void lower_fd_limit(int slack)
{
    tu_start_symbolizer(); /* before: it needs descriptors of its own */
    tu_fds fds;
    tu_fds_snapshot(&fds);
    rlim_t n = (rlim_t)(fds.n + slack);
    struct rlimit low = { .rlim_cur = n, .rlim_max = n };
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
}

/* A descriptor limit that cannot hold the growth: WP_EINVAL, and the pool
   keeps its workers and runs tasks; a shrink needs no descriptors; with the
   limit back, the growth works. */
WP_TEST_BOTH(resize_fd_limit)
{
    enum { FROM = 2, TOO_MANY = 64, SLACK = 8 };
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = FROM });
    lower_fd_limit(SLACK);
    int rc = wp_pool_resize(p, TOO_MANY);
    wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
    unsigned up = alive_now(p);
    int shrink = wp_pool_resize(p, 1);
    bool restored = setrlimit(RLIMIT_NOFILE, &saved) == 0; /* not for a non-root user */
    ck_assert_int_eq(rc, WP_EINVAL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    ck_assert_uint_eq(up, FROM);
    ck_assert_int_eq(shrink, 0);
    TU_POLL_UNTIL(alive_now(p) == 1);
    if (restored) {
        ck_assert_int_eq(wp_pool_resize(p, FROM + 2), 0);
        tu_wait_workers(p, FROM + 2, FROM + 2);
    }
    wp_pool_destroy(p);
}

/* A shrink needs no descriptors, also while the workers are still
   starting (none alive yet, so each kept one was counted as needing its
   own again): under a limit that holds no more descriptors it is taken,
   and the pool ends with the workers asked for. */
WP_TEST_BOTH(resize_shrink_while_starting_fd_limit)
{
    enum { FROM = 4, TO = 2, SLACK = 2 /* fewer than one worker needs */ };
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    tu_hold g;
    wp_pool *p = gated_pool(FROM, &g);
    for (int i = 0; i < FROM; i++) /* forked, and held in worker_init */
        ck_assert_int_gt(tu_fifo_read_pid(&g.report, TU_DEADLINE_MS), 0);
    ck_assert_uint_eq(alive_now(p), 0);
    lower_fd_limit(SLACK);
    int shrink = wp_pool_resize(p, TO);
    bool restored = setrlimit(RLIMIT_NOFILE, &saved) == 0; /* not for a non-root user */
    ck_assert_msg(shrink == 0, "a shrink while workers start said %s", wp_strerror(shrink));
    tu_fifo_release(&g.gate, FROM);
    if (restored) { /* else the fork server's workers may not fit: they need not */
        TU_POLL_UNTIL(alive_now(p) == TO && tu_pool_stats(p).workers_started == FROM);
        wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
        ck_assert_int_eq(wp_future_error(f), 0);
        wp_future_release(f);
        tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(TO),
                        .workers_started = TU_EQ(FROM) /* each became ready, then retired */);
    }
    wp_pool_destroy(p);
    tu_hold_close(&g);
}

/* This test's processes: workers (WP_START_FORK), or the fork server and
   its workers. */
static size_t descendants(void)
{
    int kids[2];
    size_t n = tu_children((int)getpid(), kids, 2);
    if (tu_method == WP_START_FORKSERVER && n == 1)
        n += tu_children(kids[0], NULL, 0);
    return n;
}

/* The most workers there may be, and back to one: every other worker is
   gone and reaped, and after the pool no process is left. */
WP_TEST_BOTH(resize_to_1024_and_back)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    ck_assert_int_eq(wp_pool_resize(p, MAX_WORKERS_PUBLIC), 0);
    bool up = tu_workers_up(p, MAX_WORKERS_PUBLIC, MAX_WORKERS_PUBLIC, TU_DEADLINE_MS * 4);
    ck_assert_msg(up, "%u of %d workers up", alive_now(p), MAX_WORKERS_PUBLIC);
    wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    TU_POLL_UNTIL(alive_now(p) == 1);
    TU_POLL_UNTIL(descendants() == (tu_method == WP_START_FORKSERVER ? 2u : 1u));
    f = tu_run(p, tu_empty, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(1),
                    .workers_started = TU_EQ(MAX_WORKERS_PUBLIC));
    wp_pool_destroy(p);
    ck_assert_uint_eq(descendants(), 0);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_resize_edge_tests,
        TU_TEST(resize_invalid),
        TU_TEST(resize_after_shutdown),
        TU_TEST(resize_zero_is_cpus),
        TU_TEST(resize_from_callback),
        TU_TEST(resize_fd_limit),
        TU_TEST(resize_shrink_while_starting_fd_limit),
        TU_TEST(resize_to_1024_and_back))
