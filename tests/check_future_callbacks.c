/* SPDX-License-Identifier: MIT */
/*
 * check_future_callbacks.c — a future's done-callbacks and references
 * (check_future.c says how the suite's tests work): callbacks run in order
 * on the settling thread and see the outcome, may release the last
 * reference, run once even when registered during the settle; threads
 * releasing references free the future exactly once, in any order.
 */
#define _GNU_SOURCE
#include "check_future.h"

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

/* Forget the callbacks recorded (reset_globals calls it). */
void future_callbacks_reset(void)
{
    atomic_store(&g_log.n, 0);
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

/* ---------------------------------------------------------- its tests */

TU_PART(future_add_callbacks_tests,
        TU_CASE("callbacks", callbacks_in_order_on_settling_thread),
        TU_CASE("callbacks", callback_sees_outcome),
        TU_CASE("callbacks", callback_releases_last_reference),
        TU_CASE("callbacks", callbacks_registered_during_settle_run_once),
        TU_CASE("refcount", refcount_threads_free_once),
        TU_CASE("refcount", refcount_last_release_by_any_thread),
        TU_CASE("refcount", release_order_irrelevant))
