/* SPDX-License-Identifier: MIT */
/*
 * check_future_settle.c — settling a future (check_future.c says how the
 * suite's tests work): the readers before and after, each outcome, settle
 * once, start and requeue, future_ops.settling told once before anyone sees
 * the outcome, and cancel requests (a success turned cancelled, a settled
 * future, the owner's answer passed through).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "check_future.h"

/* ------------------------------------------------------- settle / state */

WP_TEST(unsettled_readers)
{
    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_state(f), WP_PENDING);
    ck_assert_int_eq(wp_future_error(f), WP_EAGAIN);
    size_t len = 77;
    ck_assert_ptr_null(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(wp_future_result(f, NULL));
    ck_assert_int_eq(wp_future_code(f), 0);
    ck_assert_str_eq(wp_future_message(f), "");
    ck_assert_int_eq(atomic_load(&f->refs), 1);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
}

WP_TEST(settle_success)
{
    wp_future *f = new_future();
    void *res = dup_bytes("forty-two");
    ck_assert_int_eq(wp__future_settle(f, 0, 5, "ignored", res, 9), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_state(f), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_error(f), 0);
    size_t len = 0;
    const void *got = wp_future_result(f, &len);
    ck_assert_ptr_eq(got, res); /* ownership taken, not copied */
    ck_assert_uint_eq(len, 9);
    ck_assert_mem_eq(got, "forty-two", 9);
    ck_assert_ptr_eq(wp_future_result(f, NULL), res);
    ck_assert_int_eq(wp_future_code(f), 0);
    ck_assert_str_eq(wp_future_message(f), "");
    ck_assert_int_eq(wp_future_wait(f, 0), 0);
    ck_assert_int_eq(wp_future_wait(f, -1), 0);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
}

WP_TEST(settle_success_empty)
{
    /* An empty success still answers non-NULL: NULL always means "no". */
    wp_future *f = new_future();
    ck_assert_int_eq(wp__future_settle(f, 0, 0, NULL, NULL, 0), WP_SUCCEEDED);
    size_t len = 5;
    ck_assert_ptr_nonnull(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
}

WP_TEST(settle_failure)
{
    wp_future *f = new_future();
    char msg[32];
    strcpy(msg, "cannot open input");
    /* A result passed with a failure is freed (LeakSanitizer checks). */
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 3, msg, dup_bytes("partial"), 7), WP_FAILED);
    memset(msg, 'X', sizeof msg - 1); /* the message was copied */
    tu_check_outcome(f, WP_FAILED, WP_ETASK, 3, "cannot open input");
    ck_assert_int_eq(wp_future_wait(f, 0), 0);
    wp_future_release(f);

    /* Other outcomes; a NULL message reads as "". */
    static const int outcomes[] = { WP_ECRASHED, WP_ETIMEDOUT, WP_EPROTO, WP_E2BIG,
                                    WP_ESPAWN, WP_ENOFUNC };
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        f = new_future();
        ck_assert_int_eq(wp__future_settle(f, outcomes[i], 11, NULL, NULL, 0), WP_FAILED);
        tu_check_outcome(f, WP_FAILED, outcomes[i], 11, "");
        wp_future_release(f);
    }
}

WP_TEST(settle_cancelled)
{
    wp_future *f = new_future();
    ck_assert_int_eq(wp__future_settle(f, WP_ECANCELED, 0, "cancelled by test", NULL, 0),
                     WP_CANCELLED);
    tu_check_outcome(f, WP_CANCELLED, WP_ECANCELED, 0, "cancelled by test");
    wp_future_release(f);
}

WP_TEST(settle_once)
{
    wp_future *f = new_future();
    ck_assert_int_eq(settle_ok(f, "first"), WP_SUCCEEDED);
    /* Later settles of any kind: -1, no change, their result freed
       (LeakSanitizer would report it otherwise). */
    ck_assert_int_eq(settle_ok(f, "second"), -1);
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 1, "nope", dup_bytes("x"), 1), -1);
    ck_assert_int_eq(wp__future_settle(f, WP_ECANCELED, 0, NULL, NULL, 0), -1);
    ck_assert_int_eq(wp_future_state(f), WP_SUCCEEDED);
    ck_assert_str_eq(wp_future_result(f, NULL), "first");
    ck_assert_str_eq(wp_future_message(f), "");

    wp_future *g = new_future();
    ck_assert_int_eq(wp__future_settle(g, WP_ECRASHED, 9, "killed by SIGKILL", NULL, 0), WP_FAILED);
    ck_assert_int_eq(settle_ok(g, "late success"), -1);
    ck_assert_int_eq(wp_future_error(g), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(g), 9);
    ck_assert_str_eq(wp_future_message(g), "killed by SIGKILL");
    wp_future_release(f);
    wp_future_release(g);
    ck_assert_int_eq(atomic_load(&g_frees), 2);
}

WP_TEST(start_and_requeue)
{
    wp_future *f = new_future();
    ck_assert(!wp__future_requeue(f)); /* not running */
    ck_assert(wp__future_start(f));
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    ck_assert_int_eq(wp_future_error(f), WP_EAGAIN); /* running is unsettled */
    ck_assert(!wp__future_start(f));
    ck_assert(wp__future_requeue(f));
    ck_assert_int_eq(wp_future_state(f), WP_PENDING);
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert(!wp__future_start(f)); /* cancelled: never starts */
    ck_assert_int_eq(wp_future_state(f), WP_PENDING);
    ck_assert_int_eq(wp__future_settle(f, WP_ECANCELED, 0, NULL, NULL, 0), WP_CANCELLED);
    ck_assert(!wp__future_start(f));
    ck_assert(!wp__future_requeue(f));
    ck_assert_int_eq(wp_future_state(f), WP_CANCELLED);
    wp_future_release(f);
}

/* future_ops.settling: told the final outcome once, under f->mu, before
   anyone can see it settled. */
static atomic_int g_settling_calls;
static int g_settling_state, g_settling_error;
static bool g_settling_locked, g_settling_unpublished;

static void rec_settling(wp_future *f, int state, int error)
{
    atomic_fetch_add(&g_settling_calls, 1);
    g_settling_state = state;
    g_settling_error = error;
    int rc = pthread_mutex_trylock(&f->mu);
    if (rc == 0)
        pthread_mutex_unlock(&f->mu);
    g_settling_locked = rc == EBUSY;
    g_settling_unpublished = !wp__future_is_settled(wp_future_state(f));
}

static const future_ops rec_ops_settling = { .cancel = rec_cancel, .free = rec_free,
                                             .settling = rec_settling };

static wp_future *new_future_settling(void)
{
    rec *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    atomic_init(&r->cancel_calls, 0);
    wp__future_init(&r->f, &rec_ops_settling);
    return &r->f;
}

static void check_settling(int calls, int state, int error)
{
    ck_assert_int_eq(atomic_load(&g_settling_calls), calls);
    ck_assert_int_eq(g_settling_state, state);
    ck_assert_int_eq(g_settling_error, error);
    ck_assert_msg(g_settling_locked, "settling ran without f->mu held");
    ck_assert_msg(g_settling_unpublished, "settling ran after the outcome was published");
}

typedef struct settling_waiter {
    wp_future *f;
    atomic_int tid;
    int rc, calls_seen;
} settling_waiter;

static void *settling_waiter_main(void *arg)
{
    settling_waiter *w = arg;
    atomic_store(&w->tid, (int)gettid());
    w->rc = wp_future_wait(w->f, -1);
    w->calls_seen = atomic_load(&g_settling_calls);
    return NULL;
}

WP_TEST(settling_op_told_once_before_publishing)
{
    wp_future *f = new_future_settling();
    ck_assert_int_eq(settle_ok(f, "r"), WP_SUCCEEDED);
    check_settling(1, WP_SUCCEEDED, 0);
    ck_assert_int_eq(settle_ok(f, "again"), -1);
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 1, NULL, NULL, 0), -1);
    ck_assert_int_eq(atomic_load(&g_settling_calls), 1); /* not for a second settle */
    wp_future_release(f);

    f = new_future_settling();
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 3, "x", NULL, 0), WP_FAILED);
    check_settling(2, WP_FAILED, WP_ETASK);
    wp_future_release(f);

    /* A cancel request turns the outcome: settling is told the final one. */
    f = new_future_settling();
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert_int_eq(settle_ok(f, "too late"), WP_CANCELLED);
    check_settling(3, WP_CANCELLED, WP_ECANCELED);
    wp_future_release(f);

    /* A waiter woken by the settle already sees what settling did. */
    f = new_future_settling();
    settling_waiter w = { .f = f, .rc = 1, .calls_seen = -1 };
    atomic_init(&w.tid, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, settling_waiter_main, &w), 0);
    wait_thread_sleeping(&w.tid);
    ck_assert_int_eq(settle_ok(f, "seen"), WP_SUCCEEDED);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.calls_seen, 4);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 4);
}

/* ----------------------------------------------------------------- cancel */

WP_TEST(cancel_requested_turns_success_into_cancelled)
{
    rec *r = new_rec(0);
    wp_future *f = &r->f;
    ck_assert(wp__future_start(f));
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert_int_eq(atomic_load(&r->cancel_calls), 1);
    /* A second request is answered 0 without asking the owner again. */
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert_int_eq(atomic_load(&r->cancel_calls), 1);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING); /* not settled by the request */
    /* The task finished anyway: it still settles as cancelled, and its
       result is freed, not exposed. */
    ck_assert_int_eq(settle_ok(f, "too late"), WP_CANCELLED);
    ck_assert_int_eq(wp_future_state(f), WP_CANCELLED);
    ck_assert_int_eq(wp_future_error(f), WP_ECANCELED);
    ck_assert_int_eq(wp_future_code(f), 0);
    ck_assert_ptr_null(wp_future_result(f, NULL));
    ck_assert_int_eq(wp_future_cancel(f), WP_EINVAL);
    ck_assert_int_eq(atomic_load(&r->cancel_calls), 1);
    wp_future_release(f);

    /* Same for a failure that races the cancel. */
    r = new_rec(0);
    f = &r->f;
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert_int_eq(wp__future_settle(f, WP_ECRASHED, 9, "killed", NULL, 0), WP_CANCELLED);
    ck_assert_int_eq(wp_future_error(f), WP_ECANCELED);
    ck_assert_int_eq(wp_future_code(f), 0);
    wp_future_release(f);
}

WP_TEST(cancel_settled_is_einval)
{
    rec *r = new_rec(0);
    ck_assert_int_eq(settle_ok(&r->f, "done"), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_cancel(&r->f), WP_EINVAL);
    ck_assert_int_eq(atomic_load(&r->cancel_calls), 0); /* owner not asked */
    ck_assert_int_eq(wp_future_state(&r->f), WP_SUCCEEDED);
    wp_future_release(&r->f);

    r = new_rec(0);
    ck_assert_int_eq(wp__future_settle(&r->f, WP_ETASK, 1, "x", NULL, 0), WP_FAILED);
    ck_assert_int_eq(wp_future_cancel(&r->f), WP_EINVAL);
    wp_future_release(&r->f);

    r = new_rec(0);
    ck_assert_int_eq(wp__future_settle(&r->f, WP_ECANCELED, 0, NULL, NULL, 0), WP_CANCELLED);
    ck_assert_int_eq(wp_future_cancel(&r->f), WP_EINVAL);
    wp_future_release(&r->f);
}

WP_TEST(cancel_passes_owner_answer_through)
{
    static const int answers[] = { WP_EBUSY, WP_EINVAL };
    for (size_t i = 0; i < 2; i++) {
        rec *r = new_rec(answers[i]);
        wp_future *f = &r->f;
        ck_assert(wp__future_start(f));
        ck_assert_int_eq(wp_future_cancel(f), answers[i]);
        ck_assert_int_eq(atomic_load(&r->cancel_calls), 1);
        /* Refused: no cancel was requested, so asking again asks again ... */
        ck_assert_int_eq(wp_future_cancel(f), answers[i]);
        ck_assert_int_eq(atomic_load(&r->cancel_calls), 2);
        /* ... and the task's own outcome stands. */
        ck_assert_int_eq(settle_ok(f, "shielded"), WP_SUCCEEDED);
        ck_assert_str_eq(wp_future_result(f, NULL), "shielded");
        wp_future_release(f);
    }
}

/* Forget what the settling op saw (reset_globals calls it). */
void future_settle_reset(void)
{
    atomic_store(&g_settling_calls, 0);
}

/* ---------------------------------------------------------- its tests */

TU_PART(future_add_settle_tests,
        TU_CASE("settle", unsettled_readers),
        TU_CASE("settle", settle_success),
        TU_CASE("settle", settle_success_empty),
        TU_CASE("settle", settle_failure),
        TU_CASE("settle", settle_cancelled),
        TU_CASE("settle", settle_once),
        TU_CASE("settle", start_and_requeue),
        TU_CASE("settle", settling_op_told_once_before_publishing),
        TU_CASE("cancel", cancel_requested_turns_success_into_cancelled),
        TU_CASE("cancel", cancel_settled_is_einval),
        TU_CASE("cancel", cancel_passes_owner_answer_through))
