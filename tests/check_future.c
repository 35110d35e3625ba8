/* SPDX-License-Identifier: MIT */
/*
 * check_future.c — futures (lib/future.c): settle once; the public readers
 * for every outcome; cancel requests; waits with timeouts and from many
 * threads; done-callbacks; reference counts; wp_wait_any / wp_wait_all;
 * NULL arguments; wp_strerror.
 *
 * The futures here are embedded in a test-owned record with its own
 * future_ops (a configurable cancel answer, a free that counts).  Threads
 * are ordered with joins and barriers, or by polling what they are waiting
 * for (a waiter linked into a future, a thread's scheduler state in /proc);
 * nothing sleeps to let things happen.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "future.h"
#include "testutil.h"

/* --------------------------------------------------------- test record */

typedef struct rec {
    wp_future  f;            /* first member: (rec *)f is the record */
    int        cancel_rc;    /* what ops->cancel answers */
    atomic_int cancel_calls;
} rec;

static atomic_int g_frees;

static int rec_cancel(wp_future *f)
{
    rec *r = (rec *)f;
    atomic_fetch_add(&r->cancel_calls, 1);
    return r->cancel_rc;
}

static void rec_free(wp_future *f)
{
    atomic_fetch_add(&g_frees, 1);
    free(f);
}

static const future_ops rec_ops = { .cancel = rec_cancel, .free = rec_free };

static rec *new_rec(int cancel_rc)
{
    rec *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->cancel_rc = cancel_rc;
    atomic_init(&r->cancel_calls, 0);
    wp__future_init(&r->f, &rec_ops);
    return r;
}

static wp_future *new_future(void)
{
    return &new_rec(0)->f;
}

static void *dup_bytes(const char *s)
{
    char *p = strdup(s);
    ck_assert_ptr_nonnull(p);
    return p;
}

static int settle_ok(wp_future *f, const char *result)
{
    return wp__future_settle(f, 0, 0, NULL, result ? dup_bytes(result) : NULL,
                             result ? strlen(result) : 0);
}

/* ------------------------------------------------------------- timing */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------ waiting for a thread */

/* Until the thread is blocked in the kernel (a futex wait: state S). */
static void wait_thread_sleeping(atomic_int *tid_slot)
{
    int tid;
    while ((tid = atomic_load(tid_slot)) == 0)
        sched_yield();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    for (;;) {
        FILE *fp = fopen(path, "r");
        ck_assert_ptr_nonnull(fp);
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        ck_assert_ptr_nonnull(p);
        if (p[1] == ' ' && (p[2] == 'S' || p[2] == 'D'))
            return;
        sched_yield();
    }
}

/* Until a wp_wait_any caller has linked its waiter into f. */
static void wait_waiter_linked(wp_future *f)
{
    for (;;) {
        pthread_mutex_lock(&f->mu);
        bool linked = !wp__list_empty(&f->waiters);
        pthread_mutex_unlock(&f->mu);
        if (linked)
            return;
        sched_yield();
    }
}

static bool no_waiters(wp_future *f)
{
    pthread_mutex_lock(&f->mu);
    bool none = wp__list_empty(&f->waiters);
    pthread_mutex_unlock(&f->mu);
    return none;
}

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

/* ------------------------------------------------------------------ waits */

WP_TEST(wait_timeout_unsettled)
{
    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_wait(f, 0), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_future_wait(f, 1), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_future_wait(f, 50), WP_ETIMEDOUT);
    ck_assert(wp__future_start(f));
    ck_assert_int_eq(wp_future_wait(f, 0), WP_ETIMEDOUT); /* running is not settled */
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    wp_future_release(f);
}

/*
 * A wait with a timeout must not give up before the timeout has passed
 * (lower bound only: no upper bound is asserted).  The clock is read to the
 * nanosecond; the start is placed late in a millisecond, the case in which a
 * deadline computed from a clock truncated to whole milliseconds comes up
 * to 1 ms short.
 */
static int64_t timed_from_late_in_a_ms(int (*fn)(void *), void *arg, int *rc)
{
    int64_t t0;
    while (((t0 = now_ns()) % 1000000) < 900000)
        ; /* reading the clock, not sleeping */
    *rc = fn(arg);
    return now_ns() - t0;
}

static int do_future_wait(void *arg) { return wp_future_wait(arg, 50); }
static int do_wait_any(void *arg)
{
    size_t idx = 99;
    return wp_wait_any(arg, 2, 50, &idx);
}
static int do_wait_all(void *arg) { return wp_wait_all(arg, 2, 50); }

WP_TEST(wait_timeout_lower_bound)
{
    wp_future *fs[2] = { new_future(), new_future() };
    int rc;
    int64_t w = timed_from_late_in_a_ms(do_future_wait, fs[0], &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    int64_t a = timed_from_late_in_a_ms(do_wait_any, fs, &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    ck_assert_int_eq(settle_ok(fs[0], "one of two"), WP_SUCCEEDED);
    int64_t l = timed_from_late_in_a_ms(do_wait_all, fs, &rc);
    ck_assert_int_eq(rc, WP_ETIMEDOUT);
    ck_assert_msg(w >= 50000000 && a >= 50000000 && l >= 50000000,
                  "a 50 ms timeout gave up early: wp_future_wait after %.3f ms, "
                  "wp_wait_any after %.3f ms, wp_wait_all after %.3f ms",
                  w / 1e6, a / 1e6, l / 1e6);
    wp_future_release(fs[0]);
    wp_future_release(fs[1]);
}

typedef struct waiter {
    pthread_t  thread;
    wp_future *f;
    int64_t    timeout;
    atomic_int tid;
    int        rc;
    int        state_seen; /* the state right after the wait returned */
    atomic_bool *settled_flag;
    bool       settled_before_return;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    atomic_store(&w->tid, (int)gettid());
    w->rc = wp_future_wait(w->f, w->timeout);
    w->settled_before_return = atomic_load(w->settled_flag);
    w->state_seen = wp_future_state(w->f);
    return NULL;
}

static void waiter_start(waiter *w, wp_future *f, int64_t timeout, atomic_bool *flag)
{
    w->f = f;
    w->timeout = timeout;
    atomic_init(&w->tid, 0);
    w->rc = 1;
    w->settled_flag = flag;
    ck_assert_int_eq(pthread_create(&w->thread, NULL, waiter_main, w), 0);
}

WP_TEST(waiter_released_by_settle_from_other_thread)
{
    static const int64_t timeouts[] = { -1, 30000 };
    for (size_t i = 0; i < 2; i++) {
        wp_future *f = new_future();
        atomic_bool flag;
        atomic_init(&flag, false);
        waiter w;
        waiter_start(&w, f, timeouts[i], &flag);
        wait_thread_sleeping(&w.tid);
        ck_assert_int_eq(wp_future_state(f), WP_PENDING);
        atomic_store(&flag, true);
        ck_assert_int_eq(settle_ok(f, "hello"), WP_SUCCEEDED);
        ck_assert_int_eq(pthread_join(w.thread, NULL), 0);
        ck_assert_int_eq(w.rc, 0);
        ck_assert(w.settled_before_return);
        ck_assert_int_eq(w.state_seen, WP_SUCCEEDED);
        wp_future_release(f);
    }
}

WP_TEST(many_waiters_all_wake)
{
    enum { N = 8 };
    wp_future *f = new_future();
    atomic_bool flag;
    atomic_init(&flag, false);
    waiter w[N];
    for (unsigned i = 0; i < N; i++)
        waiter_start(&w[i], f, i % 2 ? -1 : 30000, &flag);
    for (unsigned i = 0; i < N; i++)
        wait_thread_sleeping(&w[i].tid);
    atomic_store(&flag, true);
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 4, "all of you", NULL, 0), WP_FAILED);
    for (unsigned i = 0; i < N; i++) {
        ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
        ck_assert_int_eq(w[i].rc, 0);
        ck_assert(w[i].settled_before_return);
        ck_assert_int_eq(w[i].state_seen, WP_FAILED);
    }
    wp_future_release(f);
}

/* --------------------------------------------------------- done-callbacks */

enum { MAX_CALLS = 64 };

typedef struct cb_log {
    atomic_int n;
    int        order[MAX_CALLS];
    pthread_t  thread[MAX_CALLS];
    wp_future *future[MAX_CALLS];
} cb_log;

static cb_log g_log;

static void cb_record(wp_future *f, void *ctx)
{
    int i = atomic_fetch_add(&g_log.n, 1);
    if (i < MAX_CALLS) {
        g_log.order[i] = (int)(intptr_t)ctx;
        g_log.thread[i] = pthread_self();
        g_log.future[i] = f;
    }
}

typedef struct settler {
    wp_future *f;
    pthread_t  self;
    int        rc;
} settler;

static void *settler_main(void *arg)
{
    settler *s = arg;
    s->self = pthread_self();
    s->rc = settle_ok(s->f, "from another thread");
    return NULL;
}

WP_TEST(callbacks_in_order_on_settling_thread)
{
    wp_future *f = new_future();
    for (intptr_t i = 1; i <= 5; i++)
        ck_assert_int_eq(wp_future_on_done(f, cb_record, (void *)i), 0);
    ck_assert_int_eq(atomic_load(&g_log.n), 0); /* not before settling */

    settler s = { .f = f };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, settler_main, &s), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(s.rc, WP_SUCCEEDED);
    ck_assert_int_eq(atomic_load(&g_log.n), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(g_log.order[i], i + 1);
        ck_assert(pthread_equal(g_log.thread[i], s.self));
        ck_assert_ptr_eq(g_log.future[i], f);
    }

    /* Once: a second settle runs nothing. */
    ck_assert_int_eq(settle_ok(f, "again"), -1);
    ck_assert_int_eq(atomic_load(&g_log.n), 5);

    /* Already settled: runs at once, in the registering thread, before
       on_done returns. */
    ck_assert_int_eq(wp_future_on_done(f, cb_record, (void *)6), 0);
    ck_assert_int_eq(atomic_load(&g_log.n), 6);
    ck_assert_int_eq(g_log.order[5], 6);
    ck_assert(pthread_equal(g_log.thread[5], pthread_self()));
    ck_assert_int_eq(wp_future_on_done(f, cb_record, (void *)7), 0);
    ck_assert_int_eq(atomic_load(&g_log.n), 7);
    ck_assert_int_eq(g_log.order[6], 7);
    wp_future_release(f);
}

static void cb_check_settled(wp_future *f, void *ctx)
{
    /* Inside the callback the outcome is fully visible. */
    int *ok = ctx;
    *ok = wp_future_state(f) == WP_FAILED && wp_future_error(f) == WP_ETASK
       && wp_future_code(f) == 8 && strcmp(wp_future_message(f), "why") == 0
       && wp_future_wait(f, 0) == 0;
}

WP_TEST(callback_sees_outcome)
{
    wp_future *f = new_future();
    int ok = -1;
    ck_assert_int_eq(wp_future_on_done(f, cb_check_settled, &ok), 0);
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 8, "why", NULL, 0), WP_FAILED);
    ck_assert_int_eq(ok, 1);
    wp_future_release(f);
}

static void cb_release(wp_future *f, void *ctx)
{
    (void)ctx;
    wp_future_release(f);
}

WP_TEST(callback_releases_last_reference)
{
    /* While settling. */
    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_on_done(f, cb_record, (void *)1), 0);
    ck_assert_int_eq(wp_future_on_done(f, cb_release, NULL), 0);
    ck_assert_int_eq(settle_ok(f, "result freed with the future"), WP_SUCCEEDED);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
    ck_assert_int_eq(atomic_load(&g_log.n), 1);

    /* From another thread. */
    f = new_future();
    ck_assert_int_eq(wp_future_on_done(f, cb_release, NULL), 0);
    settler s = { .f = f };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, settler_main, &s), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(s.rc, WP_SUCCEEDED);
    ck_assert_int_eq(atomic_load(&g_frees), 2);

    /* Registered after settling: runs at once and frees it. */
    f = new_future();
    ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 1, "message freed too", NULL, 0), WP_FAILED);
    ck_assert_int_eq(wp_future_on_done(f, cb_release, NULL), 0);
    ck_assert_int_eq(atomic_load(&g_frees), 3);
}

/* Registering from several threads while the future settles: every
   callback runs exactly once, whichever side runs it. */
enum { REG_THREADS = 4, REG_EACH = 500 };
static atomic_int g_calls[REG_THREADS * REG_EACH];

static void cb_count(wp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add(&g_calls[(intptr_t)ctx], 1);
}

typedef struct registrar {
    wp_future *f;
    int id;
    pthread_barrier_t *go;
    int failures;
} registrar;

static void *registrar_main(void *arg)
{
    registrar *r = arg;
    pthread_barrier_wait(r->go);
    for (int i = 0; i < REG_EACH; i++)
        if (wp_future_on_done(r->f, cb_count, (void *)(intptr_t)(r->id * REG_EACH + i)) != 0)
            r->failures++;
    return NULL;
}

WP_TEST(callbacks_registered_during_settle_run_once)
{
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < REG_THREADS * REG_EACH; i++)
            atomic_init(&g_calls[i], 0);
        wp_future *f = new_future();
        pthread_barrier_t go;
        ck_assert_int_eq(pthread_barrier_init(&go, NULL, REG_THREADS + 1), 0);
        pthread_t th[REG_THREADS];
        registrar rg[REG_THREADS];
        for (int i = 0; i < REG_THREADS; i++) {
            rg[i] = (registrar){ .f = f, .id = i, .go = &go, .failures = 0 };
            ck_assert_int_eq(pthread_create(&th[i], NULL, registrar_main, &rg[i]), 0);
        }
        pthread_barrier_wait(&go);
        ck_assert_int_eq(settle_ok(f, "race"), WP_SUCCEEDED);
        for (int i = 0; i < REG_THREADS; i++) {
            ck_assert_int_eq(pthread_join(th[i], NULL), 0);
            ck_assert_int_eq(rg[i].failures, 0);
        }
        for (int i = 0; i < REG_THREADS * REG_EACH; i++)
            ck_assert_msg(atomic_load(&g_calls[i]) == 1, "callback %d ran %d times", i,
                          atomic_load(&g_calls[i]));
        pthread_barrier_destroy(&go);
        wp_future_release(f);
    }
}

/* ------------------------------------------------------------- refcounts */

enum { RC_THREADS = 8, RC_ITER = 20000 };

typedef struct rc_arg {
    wp_future *f;
    pthread_barrier_t *go;
    bool release_one; /* release the reference main gave this thread */
} rc_arg;

static void *rc_main(void *arg)
{
    rc_arg *a = arg;
    pthread_barrier_wait(a->go);
    for (int i = 0; i < RC_ITER; i++) {
        wp_future_retain(a->f);
        if (i % 3 == 0)
            (void)wp_future_state(a->f);
        wp_future_release(a->f);
    }
    if (a->release_one)
        wp_future_release(a->f);
    return NULL;
}

/* Start RC_THREADS threads of rc_main on f, each given a reference of its
   own (released there), all to start at *go (made here for them and the
   caller). */
static void rc_threads_start(wp_future *f, pthread_barrier_t *go, pthread_t *th, rc_arg *args)
{
    ck_assert_int_eq(pthread_barrier_init(go, NULL, RC_THREADS + 1), 0);
    for (int i = 0; i < RC_THREADS; i++) {
        wp_future_retain(f);
        args[i] = (rc_arg){ .f = f, .go = go, .release_one = true };
        ck_assert_int_eq(pthread_create(&th[i], NULL, rc_main, &args[i]), 0);
    }
}

WP_TEST(refcount_threads_free_once)
{
    wp_future *f = new_future();
    pthread_barrier_t go;
    pthread_t th[RC_THREADS];
    rc_arg args[RC_THREADS];
    rc_threads_start(f, &go, th, args);
    ck_assert_int_eq(atomic_load(&f->refs), RC_THREADS + 1);
    pthread_barrier_wait(&go);
    /* Settle while the others retain and release. */
    ck_assert_int_eq(settle_ok(f, "shared"), WP_SUCCEEDED);
    for (int i = 0; i < RC_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&go);
    ck_assert_int_eq(atomic_load(&g_frees), 0);
    ck_assert_int_eq(atomic_load(&f->refs), 1);
    ck_assert_str_eq(wp_future_result(f, NULL), "shared");
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
}

WP_TEST(refcount_last_release_by_any_thread)
{
    /* Main's own reference goes first; the last thread to finish frees. */
    for (int round = 0; round < 20; round++) {
        atomic_store(&g_frees, 0);
        wp_future *f = new_future();
        pthread_barrier_t go;
        pthread_t th[RC_THREADS];
        rc_arg args[RC_THREADS];
        rc_threads_start(f, &go, th, args);
        ck_assert_int_eq(wp__future_settle(f, WP_ETASK, 2, "message to free", NULL, 0), WP_FAILED);
        wp_future_release(f);
        pthread_barrier_wait(&go);
        for (int i = 0; i < RC_THREADS; i++)
            ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(atomic_load(&g_frees), 1);
        pthread_barrier_destroy(&go);
    }
}

WP_TEST(release_order_irrelevant)
{
    /* Two references: the "pool" (settles) and the "caller". */
    /* a) caller releases first, before the settle. */
    wp_future *f = new_future();
    wp_future_retain(f);
    wp_future_release(f);                       /* caller */
    ck_assert_int_eq(atomic_load(&g_frees), 0);
    ck_assert_int_eq(settle_ok(f, "unread"), WP_SUCCEEDED);
    wp_future_release(f);                       /* pool */
    ck_assert_int_eq(atomic_load(&g_frees), 1);

    /* b) pool settles and releases, caller reads then releases. */
    f = new_future();
    wp_future_retain(f);
    ck_assert_int_eq(wp__future_settle(f, WP_ECRASHED, 9, "killed by SIGKILL", NULL, 0), WP_FAILED);
    wp_future_release(f);                       /* pool */
    ck_assert_int_eq(atomic_load(&g_frees), 1);
    ck_assert_str_eq(wp_future_message(f), "killed by SIGKILL");
    ck_assert_int_eq(wp_future_code(f), 9);
    wp_future_release(f);                       /* caller */
    ck_assert_int_eq(atomic_load(&g_frees), 2);

    /* c) caller releases after the settle, pool last. */
    f = new_future();
    wp_future_retain(f);
    ck_assert_int_eq(settle_ok(f, "x"), WP_SUCCEEDED);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 2);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 3);

    /* d) never settled at all. */
    f = new_future();
    wp_future_retain(f);
    wp_future_release(f);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 4);
}

/* --------------------------------------------------------------- wait_any */

WP_TEST(wait_any_invalid)
{
    wp_future *a = new_future(), *b = new_future();
    ck_assert_int_eq(settle_ok(a, "a"), WP_SUCCEEDED);
    size_t idx = 77;
    wp_future *fs[3] = { a, b, NULL };
    ck_assert_int_eq(wp_wait_any(NULL, 2, 0, &idx), WP_EINVAL);
    ck_assert_int_eq(wp_wait_any(NULL, 0, -1, &idx), WP_EINVAL);
    ck_assert_int_eq(wp_wait_any(fs, 0, -1, &idx), WP_EINVAL);
    ck_assert_int_eq(wp_wait_any(fs, 3, -1, &idx), WP_EINVAL); /* NULL at the end */
    wp_future *mid[3] = { b, NULL, a };
    ck_assert_int_eq(wp_wait_any(mid, 3, -1, &idx), WP_EINVAL);
    wp_future *first[2] = { NULL, a };
    ck_assert_int_eq(wp_wait_any(first, 2, -1, &idx), WP_EINVAL);
    ck_assert_uint_eq(idx, 77); /* untouched */
    ck_assert(no_waiters(a) && no_waiters(b));
    wp_future_release(a);
    wp_future_release(b);
}

WP_TEST(wait_any_lowest_settled)
{
    enum { N = 5 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    size_t idx = 99;
    ck_assert_int_eq(wp_wait_any(fs, N, 0, &idx), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_wait_any(fs, N, 20, &idx), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_wait_any(fs, N, 20, NULL), WP_ETIMEDOUT);
    for (int i = 0; i < N; i++)
        ck_assert(no_waiters(fs[i]));

    ck_assert_int_eq(settle_ok(fs[3], "3"), WP_SUCCEEDED);
    ck_assert_int_eq(wp_wait_any(fs, N, 0, &idx), 0);
    ck_assert_uint_eq(idx, 3);
    ck_assert_int_eq(wp__future_settle(fs[4], WP_ETASK, 1, NULL, NULL, 0), WP_FAILED);
    ck_assert_int_eq(wp_wait_any(fs, N, -1, &idx), 0);
    ck_assert_uint_eq(idx, 3);
    ck_assert_int_eq(wp__future_settle(fs[1], WP_ECANCELED, 0, NULL, NULL, 0), WP_CANCELLED);
    ck_assert_int_eq(wp_wait_any(fs, N, -1, &idx), 0);
    ck_assert_uint_eq(idx, 1);
    ck_assert_int_eq(wp_wait_any(fs, N, 1000, NULL), 0); /* index may be NULL */
    ck_assert_int_eq(wp_wait_any(fs + 2, 1, 0, &idx), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_wait_any(fs + 2, 2, 0, &idx), 0);
    ck_assert_uint_eq(idx, 1);
    /* The same future twice is fine. */
    wp_future *dup[3] = { fs[0], fs[0], fs[1] };
    ck_assert_int_eq(wp_wait_any(dup, 3, -1, &idx), 0);
    ck_assert_uint_eq(idx, 2);
    for (int i = 0; i < N; i++) {
        ck_assert(no_waiters(fs[i]));
        wp_future_release(fs[i]);
    }
    ck_assert_int_eq(atomic_load(&g_frees), N);
}

typedef struct any_waiter {
    wp_future **fs;
    size_t n;
    int64_t timeout;
    atomic_int tid;
    size_t idx;
    int rc;
} any_waiter;

static void *any_waiter_main(void *arg)
{
    any_waiter *a = arg;
    a->idx = 12345;
    atomic_store(&a->tid, (int)gettid());
    a->rc = wp_wait_any(a->fs, a->n, a->timeout, &a->idx);
    return NULL;
}

WP_TEST(wait_any_woken_by_settle_from_other_thread)
{
    enum { N = 4, WAITERS = 4 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    /* Several threads wait on the same set at once (one with a duplicate). */
    wp_future *with_dup[N + 1] = { fs[0], fs[1], fs[2], fs[3], fs[2] };
    any_waiter aw[WAITERS];
    pthread_t th[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        aw[i] = (any_waiter){ .fs = i == 0 ? with_dup : fs, .n = i == 0 ? N + 1 : N,
                              .timeout = i % 2 ? -1 : 30000 };
        atomic_init(&aw[i].tid, 0);
        ck_assert_int_eq(pthread_create(&th[i], NULL, any_waiter_main, &aw[i]), 0);
    }
    /* A waiter is linked into the last future once it has linked into all
       of them; then wait until every waiter thread is blocked. */
    wait_waiter_linked(fs[N - 1]);
    for (int i = 0; i < WAITERS; i++)
        wait_thread_sleeping(&aw[i].tid);
    ck_assert_int_eq(settle_ok(fs[2], "two"), WP_SUCCEEDED);
    for (int i = 0; i < WAITERS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(aw[i].rc, 0);
        ck_assert_uint_eq(aw[i].idx, 2);
    }
    /* Every link was removed again, and later settles touch no stale
       waiter (AddressSanitizer would see the freed links). */
    for (int i = 0; i < N; i++)
        ck_assert(no_waiters(fs[i]));
    ck_assert_int_eq(settle_ok(fs[0], "zero"), WP_SUCCEEDED);
    ck_assert_int_eq(settle_ok(fs[3], "three"), WP_SUCCEEDED);
    for (int i = 0; i < N; i++)
        wp_future_release(fs[i]);
}

WP_TEST(wait_any_timeout_then_settle)
{
    wp_future *fs[3] = { new_future(), new_future(), new_future() };
    size_t idx = 5;
    ck_assert_int_eq(wp_wait_any(fs, 3, 10, &idx), WP_ETIMEDOUT);
    ck_assert_uint_eq(idx, 5);
    for (int i = 0; i < 3; i++)
        ck_assert(no_waiters(fs[i]));
    /* Nothing of the finished wait may be touched by these. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(settle_ok(fs[i], "late"), WP_SUCCEEDED);
    ck_assert_int_eq(wp_wait_any(fs, 3, 0, &idx), 0);
    ck_assert_uint_eq(idx, 0);
    for (int i = 0; i < 3; i++)
        wp_future_release(fs[i]);
}

/* --------------------------------------------------------------- wait_all */

WP_TEST(wait_all_mixed_outcomes)
{
    wp_future *fs[4] = { new_future(), new_future(), new_future(), new_future() };
    ck_assert_int_eq(wp_wait_all(fs, 4, 0), WP_ETIMEDOUT);
    ck_assert_int_eq(settle_ok(fs[0], "ok"), WP_SUCCEEDED);
    ck_assert_int_eq(wp__future_settle(fs[1], WP_ETASK, 3, "failed", NULL, 0), WP_FAILED);
    ck_assert_int_eq(wp__future_settle(fs[3], WP_ECANCELED, 0, NULL, NULL, 0), WP_CANCELLED);
    ck_assert_int_eq(wp_wait_all(fs, 4, 0), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_wait_all(fs, 4, 20), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_wait_all(fs, 2, 0), 0); /* the settled prefix */
    ck_assert_int_eq(wp__future_settle(fs[2], WP_ECRASHED, 11, "SIGSEGV", NULL, 0), WP_FAILED);
    ck_assert_int_eq(wp_wait_all(fs, 4, 0), 0);
    ck_assert_int_eq(wp_wait_all(fs, 4, -1), 0);
    ck_assert_int_eq(wp_wait_all(fs, 4, 1000), 0);
    /* The outcomes are all still what they were. */
    ck_assert_int_eq(wp_future_error(fs[0]), 0);
    ck_assert_int_eq(wp_future_error(fs[1]), WP_ETASK);
    ck_assert_int_eq(wp_future_error(fs[2]), WP_ECRASHED);
    ck_assert_int_eq(wp_future_error(fs[3]), WP_ECANCELED);
    for (int i = 0; i < 4; i++)
        wp_future_release(fs[i]);
}

WP_TEST(wait_all_invalid)
{
    wp_future *a = new_future();
    ck_assert_int_eq(settle_ok(a, "a"), WP_SUCCEEDED);
    wp_future *fs[2] = { a, NULL };
    ck_assert_int_eq(wp_wait_all(NULL, 1, 0), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(fs, 0, 0), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(fs, 2, -1), WP_EINVAL);
    wp_future_release(a);
}

typedef struct all_waiter {
    wp_future **fs;
    size_t n;
    atomic_int tid;
    atomic_int settled_count; /* how many the settler has settled */
    int rc;
    int settled_at_return;
} all_waiter;

static void *all_waiter_main(void *arg)
{
    all_waiter *a = arg;
    atomic_store(&a->tid, (int)gettid());
    a->rc = wp_wait_all(a->fs, a->n, -1);
    a->settled_at_return = atomic_load(&a->settled_count);
    return NULL;
}

WP_TEST(wait_all_returns_only_once_all_settled)
{
    enum { N = 3 };
    wp_future *fs[N] = { new_future(), new_future(), new_future() };
    all_waiter aw = { .fs = fs, .n = N, .rc = 1 };
    atomic_init(&aw.tid, 0);
    atomic_init(&aw.settled_count, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, all_waiter_main, &aw), 0);
    /* Settle one at a time, each once the waiter is blocked (again). */
    static const int order[N] = { 0, 2, 1 };
    static const int outcome[N] = { WP_ECANCELED, WP_ETASK, 0 };
    for (int j = 0; j < N; j++) {
        int k = order[j];
        wait_thread_sleeping(&aw.tid);
        atomic_fetch_add(&aw.settled_count, 1);
        ck_assert_int_ge(wp__future_settle(fs[k], outcome[k], 0, NULL, NULL, 0), WP_SUCCEEDED);
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(aw.rc, 0);
    ck_assert_int_eq(aw.settled_at_return, N);
    for (int i = 0; i < N; i++)
        wp_future_release(fs[i]);
}

/* Already-settled futures after the first pending one count as settled: a
   single settle of the pending one completes the wait. */
WP_TEST(wait_all_pending_first_then_settled)
{
    enum { N = 4 };
    wp_future *fs[N] = { new_future(), new_future(), new_future(), new_future() };
    ck_assert_int_eq(settle_ok(fs[1], "1"), WP_SUCCEEDED);
    ck_assert_int_eq(wp__future_settle(fs[3], WP_ETASK, 1, NULL, NULL, 0), WP_FAILED);
    wp_future *set[N + 1] = { fs[0], fs[1], fs[2], fs[3], fs[1] }; /* and a duplicate */
    all_waiter aw = { .fs = set, .n = N + 1, .rc = 1 };
    atomic_init(&aw.tid, 0);
    atomic_init(&aw.settled_count, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, all_waiter_main, &aw), 0);
    wait_thread_sleeping(&aw.tid);
    atomic_fetch_add(&aw.settled_count, 1);
    ck_assert_int_eq(settle_ok(fs[2], "2"), WP_SUCCEEDED);
    wait_thread_sleeping(&aw.tid);
    atomic_fetch_add(&aw.settled_count, 1);
    ck_assert_int_eq(settle_ok(fs[0], "0"), WP_SUCCEEDED);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(aw.rc, 0);
    ck_assert_int_eq(aw.settled_at_return, 2);
    for (int i = 0; i < N; i++) {
        ck_assert(no_waiters(fs[i]));
        wp_future_release(fs[i]);
    }
}

/* ---------------------------------------------------------- NULL and codes */

static void cb_never(wp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
    ck_abort_msg("callback must not run");
}

WP_TEST(null_arguments)
{
    size_t len = 5;
    ck_assert_int_eq(wp_future_state(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, 0), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, -1), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, 100), WP_EINVAL);
    ck_assert_int_eq(wp_future_error(NULL), WP_EINVAL);
    ck_assert_ptr_null(wp_future_result(NULL, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(wp_future_result(NULL, NULL));
    ck_assert_int_eq(wp_future_code(NULL), 0);
    ck_assert_ptr_nonnull(wp_future_message(NULL));
    ck_assert_str_eq(wp_future_message(NULL), "");
    ck_assert_int_eq(wp_future_cancel(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_on_done(NULL, cb_never, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_on_done(NULL, NULL, NULL), WP_EINVAL);
    wp_future_retain(NULL);
    wp_future_release(NULL);
    size_t idx = 3;
    ck_assert_int_eq(wp_wait_any(NULL, 0, 0, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_wait_any(NULL, 1, -1, &idx), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(NULL, 0, 0), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(NULL, 1, -1), WP_EINVAL);

    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_on_done(f, NULL, NULL), WP_EINVAL);
    ck_assert_int_eq(settle_ok(f, NULL), WP_SUCCEEDED); /* no callback registered */
    ck_assert_int_eq(wp_future_on_done(f, NULL, NULL), WP_EINVAL);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
}

WP_TEST(strerror_codes)
{
    static const int codes[] = { 0, WP_EINVAL, WP_ENOMEM, WP_EAGAIN, WP_ETIMEDOUT,
                                 WP_ECANCELED, WP_ESHUTDOWN, WP_ECRASHED, WP_ETASK,
                                 WP_E2BIG, WP_EPROTO, WP_ESPAWN, WP_ENOFUNC, WP_EBUSY };
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = wp_strerror(codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != '\0', "wp_strerror(%d) is empty", codes[i]);
        ck_assert_msg(strcmp(s, "unknown error") != 0, "wp_strerror(%d) unknown", codes[i]);
        for (size_t j = 0; j < i; j++) {
            ck_assert_int_ne(codes[i], codes[j]); /* codes are distinct */
            ck_assert_msg(strcmp(s, wp_strerror(codes[j])) != 0,
                          "wp_strerror(%d) == wp_strerror(%d) == \"%s\"", codes[i], codes[j], s);
        }
    }
    static const int unknown[] = { 1, 2, 100, -14, -100, INT_MIN, INT_MAX, -1000000 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(wp_strerror(unknown[i]), "unknown error");
}

/* Each test starts with fresh counters (also without CK_FORK). */
static void reset_globals(void)
{
    atomic_store(&g_frees, 0);
    atomic_store(&g_settling_calls, 0);
    atomic_store(&g_log.n, 0);
}

/* ------------------------------------------------------------------ main */

/* A test case of this suite, with its timeout; every test starts from
   reset_globals. */
int main(void)
{
    const tu_suite suite = { .name = "future", .timeout_s = 60, .setup = reset_globals };
    const tu_test tests[] = {
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
        TU_CASE("cancel", cancel_passes_owner_answer_through),
        TU_CASE("wait", wait_timeout_unsettled),
        TU_CASE("wait", wait_timeout_lower_bound),
        TU_CASE("wait", waiter_released_by_settle_from_other_thread),
        TU_CASE("wait", many_waiters_all_wake),
        TU_CASE("callbacks", callbacks_in_order_on_settling_thread),
        TU_CASE("callbacks", callback_sees_outcome),
        TU_CASE("callbacks", callback_releases_last_reference),
        TU_CASE("callbacks", callbacks_registered_during_settle_run_once),
        TU_CASE("refcount", refcount_threads_free_once),
        TU_CASE("refcount", refcount_last_release_by_any_thread),
        TU_CASE("refcount", release_order_irrelevant),
        TU_CASE("many", wait_any_invalid),
        TU_CASE("many", wait_any_lowest_settled),
        TU_CASE("many", wait_any_woken_by_settle_from_other_thread),
        TU_CASE("many", wait_any_timeout_then_settle),
        TU_CASE("many", wait_all_mixed_outcomes),
        TU_CASE("many", wait_all_invalid),
        TU_CASE("many", wait_all_returns_only_once_all_settled),
        TU_CASE("many", wait_all_pending_first_then_settled),
        TU_CASE("api", null_arguments),
        TU_CASE("api", strerror_codes),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
