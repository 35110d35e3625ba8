/* SPDX-License-Identifier: MIT */
/*
 * check_future_many.c — waiting for many futures (check_future.c says how
 * the suite's tests work): wp_wait_any's bad arguments, the lowest settled
 * index, wakeups by a settle on another thread, a timeout then a settle;
 * wp_wait_all with mixed outcomes, bad arguments, returning only once all
 * have settled.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>

#include "check_future.h"

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

/* ---------------------------------------------------------- its tests */

TU_PART(future_add_many_tests,
        TU_CASE("many", wait_any_invalid),
        TU_CASE("many", wait_any_lowest_settled),
        TU_CASE("many", wait_any_woken_by_settle_from_other_thread),
        TU_CASE("many", wait_any_timeout_then_settle),
        TU_CASE("many", wait_all_mixed_outcomes),
        TU_CASE("many", wait_all_invalid),
        TU_CASE("many", wait_all_returns_only_once_all_settled),
        TU_CASE("many", wait_all_pending_first_then_settled))
