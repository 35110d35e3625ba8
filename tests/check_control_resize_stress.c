/* SPDX-License-Identifier: MIT */
/*
 * check_control_resize_stress.c — wp_pool_resize under load
 * (check_control.c says how the suite's tests work,
 * check_control_resize.h what the resize tests share): eight threads
 * submitting and cancelling while a ninth resizes the pool at random
 * between 1 and 16 workers, as issue #11 asks.
 */
#define _GNU_SOURCE
#include "check_control_resize.h"

enum { RS_THREADS = 8, RS_PER_THREAD = RZ_MAX_TASKS / RS_THREADS, RS_MAX_WORKERS = 16 };
#define RS_NOT_CANCELLED 1

typedef struct rs_rec {
    wp_future *f;
    int        cancel_rc;  /* RS_NOT_CANCELLED, or what wp_future_cancel said */
    atomic_int calls;      /* done-callbacks run */
} rs_rec;

typedef struct rs_thread {
    wp_pool  *pool;
    rs_rec   *recs;        /* this thread's n, tasks base .. base + n - 1 */
    int       base, n;
    unsigned  seed;
    int       error;       /* a submit or on_done that failed */
} rs_thread;

static void rs_cancel(rs_rec *r)
{
    if (r->cancel_rc == RS_NOT_CANCELLED)
        r->cancel_rc = wp_future_cancel(r->f);
}

/* Submit n tasks, some spinning up to a millisecond (so retiring workers
   have tasks running), and cancel about one in ten: right after the
   submit, a few submits later, or after a short wait. */
static void *rs_submit_main(void *arg)
{
    rs_thread *t = arg;
    for (int k = 0; k < t->n; k++) {
        rs_rec *r = &t->recs[k];
        r->cancel_rc = RS_NOT_CANCELLED;
        atomic_init(&r->calls, 0);
        rz_arg a = { .index = t->base + k,
                     .spin_us = rand_r(&t->seed) % 8 == 0 ? rand_r(&t->seed) % 1000 : 0 };
        int rc = submit_counted(t->pool, &a, &r->f, &r->calls);
        if (rc != 0) {
            t->error = rc;
            return NULL;
        }
        int c = rand_r(&t->seed) % 30;
        if (c == 0)
            rs_cancel(r);
        else if (c == 1 && k >= 4)
            rs_cancel(&t->recs[k - 4]);
        else if (c == 2) {
            wp_future_wait(r->f, rand_r(&t->seed) % 3);
            rs_cancel(r);
        }
    }
    return NULL;
}

typedef struct rs_resizer {
    wp_pool    *pool;
    unsigned    seed;
    atomic_bool stop;
    int         resizes, error;
} rs_resizer;

/* Resize to 1 .. RS_MAX_WORKERS at random until told to stop, and at
   least RS_MIN_RESIZES times. */
enum { RS_MIN_RESIZES = 100, RS_PAUSE_MAX_US = 3000 };

static void *rs_resize_main(void *arg)
{
    rs_resizer *z = arg;
    while (!atomic_load(&z->stop) || z->resizes < RS_MIN_RESIZES) {
        int rc = wp_pool_resize(z->pool, 1 + (unsigned)rand_r(&z->seed) % RS_MAX_WORKERS);
        if (rc != 0) {
            z->error = rc;
            return NULL;
        }
        z->resizes++;
        spin_us((unsigned)rand_r(&z->seed) % RS_PAUSE_MAX_US);
    }
    return NULL;
}

/* Why rec r (task index) is wrong, or NULL. */
static const char *rs_wrong(const rs_rec *r, int index)
{
    int runs = atomic_load(&rz->runs[index]), st = wp_future_state(r->f);
    if (atomic_load(&r->calls) != 1)
        return "its done-callbacks did not run exactly once";
    if (runs > 1)
        return "it ran more than once";
    if (r->cancel_rc != RS_NOT_CANCELLED && r->cancel_rc != 0 && r->cancel_rc != WP_EINVAL)
        return "wp_future_cancel said something else than 0 or WP_EINVAL";
    if (r->cancel_rc == 0)
        return st == WP_CANCELLED ? NULL : "cancel returned 0, it was not cancelled";
    size_t len = 0;
    const rz_result *res = wp_future_result(r->f, &len);
    if (st != WP_SUCCEEDED)
        return "not cancelled, and it did not succeed";
    if (runs != 1 || len != sizeof *res || res->index != index)
        return "it succeeded without running, or with another task's result";
    return NULL;
}

/* Eight threads submit and cancel while a ninth resizes the pool at random
   between 1 and 16 workers, until every task has settled: every future
   settles exactly once, no task runs twice, every task not cancelled
   succeeds, the counters add up. */
WP_TEST_BOTH(resize_stress)
{
    /* Threads allocate all the time while the dispatcher forks: see
       stress_mixed (check_control_stress.c). */
    if (TU_ASAN && tu_method == WP_START_FORK)
        return;
    runs_map();
    uint64_t seed = tu_seed();
    fprintf(stderr, "resize_stress: WP_TEST_SEED=%llu\n", (unsigned long long)seed);
    int per = (int)tu_scaled(RS_PER_THREAD), n = per * RS_THREADS;
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 4 });
    rs_rec *recs = calloc((size_t)n, sizeof *recs);
    wp_future **fs = calloc((size_t)n, sizeof *fs);
    ck_assert(recs != NULL && fs != NULL);
    rs_thread th[RS_THREADS];
    pthread_t tid[RS_THREADS], rtid;
    rs_resizer z = { .pool = p, .seed = (unsigned)seed };
    atomic_init(&z.stop, false);
    ck_assert_int_eq(pthread_create(&rtid, NULL, rs_resize_main, &z), 0);
    for (int i = 0; i < RS_THREADS; i++) {
        th[i] = (rs_thread){ .pool = p, .recs = recs + i * per, .base = i * per, .n = per,
                             .seed = (unsigned)(seed >> 32) + 7919u * (unsigned)i };
        ck_assert_int_eq(pthread_create(&tid[i], NULL, rs_submit_main, &th[i]), 0);
    }
    for (int i = 0; i < RS_THREADS; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < n; i++)
        fs[i] = recs[i].f; /* NULL where a submit failed: caught below */
    bool all = true;
    for (int i = 0; i < RS_THREADS; i++)
        all = all && th[i].error == 0;
    all = all && quiet_wait_all(fs, (size_t)n, TU_DEADLINE_MS * 3);
    atomic_store(&z.stop, true);
    pthread_join(rtid, NULL);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* every callback has run */
    for (int i = 0; i < RS_THREADS; i++)
        ck_assert_msg(th[i].error == 0, "thread %d: submit failed with %d", i, th[i].error);
    ck_assert_msg(z.error == 0, "a resize failed with %d", z.error);
    ck_assert_msg(all, "not every future settled");
    uint64_t ok = 0, cancelled = 0;
    for (int i = 0; i < n; i++) {
        const char *why = rs_wrong(&recs[i], i);
        ck_assert_msg(why == NULL, "task %d: %s [state %d, error %d, runs %d, \"%s\"]", i, why,
                      wp_future_state(recs[i].f), wp_future_error(recs[i].f),
                      atomic_load(&rz->runs[i]), wp_future_message(recs[i].f));
        ok += wp_future_state(recs[i].f) == WP_SUCCEEDED;
        cancelled += wp_future_state(recs[i].f) == WP_CANCELLED;
    }
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(n), .succeeded = TU_EQ(ok), .failed = TU_EQ(0),
                       .cancelled = TU_EQ(cancelled), .queued = TU_EQ(0), .running = TU_EQ(0),
                       .workers_alive = TU_EQ(0));
    ck_assert_uint_eq(s.submitted, s.succeeded + s.failed + s.cancelled);
    fprintf(stderr, "resize_stress: %d tasks, %llu cancelled, %d resizes, %llu workers started\n",
            n, (unsigned long long)cancelled, z.resizes, (unsigned long long)s.workers_started);
    for (int i = 0; i < n; i++)
        wp_future_release(recs[i].f);
    free(fs);
    free(recs);
    wp_pool_destroy(p);
    runs_unmap();
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_resize_stress_tests,
        TU_TEST(resize_stress))
