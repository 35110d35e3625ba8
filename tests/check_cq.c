/* SPDX-License-Identifier: MIT */
/*
 * check_cq.c — completion queues (lib/cq.c): futures delivered exactly
 * once, in settle order, to any number of threads; timeouts; destroy with
 * futures still running.
 *
 * Every test runs under both start methods (WP_TEST_BOTH).
 * No test sleeps to let things happen: tasks are held at FIFO gates and
 * released when the test wants them to settle.
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"


static wp_cq *make_cq(void)
{
    wp_cq *cq = NULL;
    ck_assert_int_eq(wp_cq_create(&cq), 0);
    ck_assert_ptr_nonnull(cq);
    return cq;
}

static wp_future *next_or_fail(wp_cq *cq)
{
    wp_future *f = NULL;
    ck_assert_int_eq(wp_cq_next(cq, TU_DEADLINE_MS, &f), 0);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(wp_future_wait(f, 0), 0); /* delivered means settled */
    return f;
}

/* A new cq watching a task of p held at h's gate (tu_submit_held; h is
   opened here), whose future goes to *held. */
static wp_cq *cq_with_held(wp_pool *p, tu_hold *h, wp_future **held)
{
    tu_hold_open(h);
    wp_cq *cq = make_cq();
    *held = tu_submit_held(p, h, NULL, NULL);
    ck_assert_int_eq(wp_cq_add(cq, *held), 0);
    return cq;
}

WP_TEST_BOTH(bad_arguments)
{
    ck_assert_int_eq(wp_cq_create(NULL), WP_EINVAL);
    wp_cq *cq = make_cq();
    wp_future *f = (wp_future *)&f;
    ck_assert_int_eq(wp_cq_next(cq, 0, &f), WP_EAGAIN); /* nothing watched */
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_cq_next(cq, -1, &f), WP_EAGAIN); /* never blocks for nothing */
    ck_assert_int_eq(wp_cq_next(NULL, 0, &f), WP_EINVAL);
    ck_assert_int_eq(wp_cq_next(cq, 0, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_cq_add(NULL, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_cq_add(cq, NULL), WP_EINVAL);
    wp_cq_destroy(cq);
    wp_cq_destroy(NULL);
}

/* Delivered in the order they settle, not the order they were added;
   one already settled comes at once; then WP_EAGAIN. */
WP_TEST_BOTH(settle_order)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    tu_hold h;
    wp_future *slow;
    wp_cq *cq = cq_with_held(p, &h, &slow);
    wp_future *quick = tu_run(p, tu_echo, "q", 1, NULL); /* settled already */
    ck_assert_int_eq(wp_cq_add(cq, quick), 0);
    wp_future *f = NULL;
    ck_assert_int_eq(wp_cq_next(cq, 0, &f), 0);
    ck_assert_ptr_eq(f, quick);
    wp_future_release(f);
    ck_assert_int_eq(wp_cq_next(cq, 50, &f), WP_ETIMEDOUT); /* slow is held */
    ck_assert_ptr_null(f);
    tu_fifo_release(&h.gate, 1);
    f = next_or_fail(cq);
    ck_assert_ptr_eq(f, slow);
    wp_future_release(f);
    ck_assert_int_eq(wp_cq_next(cq, -1, &f), WP_EAGAIN);
    /* Each add is one delivery, the same future included. */
    ck_assert_int_eq(wp_cq_add(cq, quick), 0);
    ck_assert_int_eq(wp_cq_add(cq, quick), 0);
    for (int i = 0; i < 2; i++) {
        f = next_or_fail(cq);
        ck_assert_ptr_eq(f, quick);
        wp_future_release(f);
    }
    wp_future_release(quick);
    wp_future_release(slow);
    wp_cq_destroy(cq);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* Destroyed with futures delivered to nobody and futures still running:
   the cq's references all go (LeakSanitizer and valgrind check it). */
WP_TEST_BOTH(destroy_with_futures_left)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    tu_hold h;
    wp_future *held;
    wp_cq *cq = cq_with_held(p, &h, &held);
    wp_future_release(held); /* the cq's is the last reference */
    for (int i = 0; i < 3; i++) {
        wp_future *f = tu_run(p, tu_echo, &i, sizeof i, NULL);
        ck_assert_int_eq(wp_cq_add(cq, f), 0);
        wp_future_release(f);
    }
    wp_cq_destroy(cq);
    tu_fifo_release(&h.gate, 1); /* its callback runs after the cq is gone */
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* Many threads add while many threads take: every future is delivered
   exactly once, settled, with its own result. */
enum { ADDERS = 4, TAKERS = 4, PER_ADDER = 1500, TOTAL = ADDERS * PER_ADDER };

typedef struct cq_run {
    wp_pool   *pool;
    wp_cq     *cq;
    atomic_int delivered;
    atomic_int seen[TOTAL];
    atomic_int bad;
} cq_run;

typedef struct adder {
    cq_run *run;
    int     first;
} adder;

static void *adder_main(void *arg)
{
    adder *a = arg;
    for (int i = a->first; i < a->first + PER_ADDER; i++) {
        wp_future *f = NULL;
        if (wp_submit(a->run->pool, tu_echo, &i, sizeof i, NULL, &f) != 0 ||
            wp_cq_add(a->run->cq, f) != 0)
            atomic_fetch_add(&a->run->bad, 1);
        wp_future_release(f);
    }
    return NULL;
}

static void *taker_main(void *arg)
{
    cq_run *r = arg;
    while (atomic_load(&r->delivered) < TOTAL) {
        wp_future *f = NULL;
        int rc = wp_cq_next(r->cq, 20, &f);
        if (rc == WP_ETIMEDOUT || rc == WP_EAGAIN)
            continue; /* more may still be added */
        size_t len = 0;
        const void *res = rc == 0 ? wp_future_result(f, &len) : NULL;
        int v = -1;
        if (res != NULL && len == sizeof v)
            memcpy(&v, res, sizeof v);
        if (v < 0 || v >= TOTAL)
            atomic_fetch_add(&r->bad, 1);
        else
            atomic_fetch_add(&r->seen[v], 1);
        atomic_fetch_add(&r->delivered, 1);
        wp_future_release(f);
    }
    return NULL;
}

WP_TEST_BOTH(many_threads)
{
    cq_run *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->pool = tu_make_pool((wp_pool_options){ .workers = 2 });
    r->cq = make_cq();
    pthread_t adders[ADDERS], takers[TAKERS];
    adder as[ADDERS];
    for (int i = 0; i < TAKERS; i++)
        ck_assert_int_eq(pthread_create(&takers[i], NULL, taker_main, r), 0);
    for (int i = 0; i < ADDERS; i++) {
        as[i] = (adder){ .run = r, .first = i * PER_ADDER };
        ck_assert_int_eq(pthread_create(&adders[i], NULL, adder_main, &as[i]), 0);
    }
    for (int i = 0; i < ADDERS; i++)
        ck_assert_int_eq(pthread_join(adders[i], NULL), 0);
    for (int i = 0; i < TAKERS; i++)
        ck_assert_int_eq(pthread_join(takers[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&r->bad), 0);
    ck_assert_int_eq(atomic_load(&r->delivered), TOTAL);
    for (int i = 0; i < TOTAL; i++)
        ck_assert_msg(atomic_load(&r->seen[i]) == 1, "future %d delivered %d times", i,
                      atomic_load(&r->seen[i]));
    wp_future *f = NULL;
    ck_assert_int_eq(wp_cq_next(r->cq, -1, &f), WP_EAGAIN);
    wp_cq_destroy(r->cq);
    wp_pool_destroy(r->pool);
    free(r);
}

int main(void)
{
    const tu_suite suite = { .name = "cq", .timeout_s = 120 };
    const tu_test tests[] = {
        TU_TEST(bad_arguments),
        TU_TEST(settle_order),
        TU_TEST(destroy_with_futures_left),
        TU_TEST(many_threads),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
