/* SPDX-License-Identifier: MIT */
/*
 * check_pool_many.c — wp_submit_many (check_pool.c says how the suite's
 * tests work): every item gets its own future and outcome, in order, and
 * with WP_TASK_NOWAIT a full queue takes what fits and says how many.
 */
#define _GNU_SOURCE
#include <signal.h>

#include "check_pool.h"

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

/* ---------------------------------------------------------- its tests */

TU_PART(pool_add_many_tests,
        TU_TEST(submit_many_semantics),
        TU_TEST(submit_many_nowait))
