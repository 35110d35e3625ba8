/* SPDX-License-Identifier: MIT */
/*
 * chaos_race.c — races of the pool's own calls (part of check_chaos):
 * wp_pool_destroy while another thread is inside wp_pool_shutdown(-1); a
 * batcher shutting down while its pool shuts down; done-callbacks that
 * submit follow-up work into a full queue.  Each is a test case of its own,
 * so a known failure of one shows apart from the others.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chaos.h"

#define PAUSE_DEADLINE_MS TU_DEADLINE_MS
/* No record handed out for this long: the dispatcher is stuck. */
#define CB_STUCK_MS       TU_DEADLINE_MS

/* ------------------------------------------------ destroy inside shutdown */

#define DS_ROUNDS 40

typedef struct ds_round {
    tu_fifo    *gate;
    int         main_tid;
    atomic_int  destroying;
    pthread_t   releaser;
} ds_round;

/* Open the gate once the main thread is blocked inside wp_pool_destroy. */
static void *ds_releaser(void *arg)
{
    ds_round *d = arg;
    chaos_linger(&d->destroying);
    (void)tu_wait_state(d->main_tid, 'S', TU_DEADLINE_MS); /* or open it anyway */
    ssize_t n;
    do
        n = write(d->gate->fd, "x", 1);
    while (n < 0 && errno == EINTR);
    return NULL;
}

/*
 * One thread waits in wp_pool_shutdown(pool, -1) behind a running task;
 * the main thread calls wp_pool_destroy meanwhile; the task ends.  Both
 * return; the waiting one must not touch the pool the other freed.  (Known
 * use-after-free, being fixed: ASan reports it here.)
 */
WP_TEST_BOTH(race_destroy_in_shutdown)
{
    unsigned rounds = tu_scaled(DS_ROUNDS);
    for (unsigned r = 0; r < rounds; r++) {
        tu_hold h;
        tu_hold_open(&h);
        ds_round d = { .gate = &h.gate, .main_tid = (int)gettid() };
        atomic_init(&d.destroying, 0);
        wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
        wp_future *blocker = tu_submit_held(p, &h, NULL, NULL);
        chaos_shutter sh = { .pool = p, .grace = -1 };
        chaos_shutdown_start(&sh);
        /* Refused work shows the other thread is inside wp_pool_shutdown. */
        int64_t deadline = tu_now_ms() + PAUSE_DEADLINE_MS;
        for (;;) {
            wp_future *f = NULL;
            int rc = wp_submit(p, tu_empty, NULL, 0, NULL, &f);
            wp_future_release(f);
            if (rc == WP_ESHUTDOWN || tu_now_ms() >= deadline)
                break;
            tu_poll_pause();
        }
        ck_assert_int_eq(pthread_create(&d.releaser, NULL, ds_releaser, &d), 0);
        atomic_store(&d.destroying, 1);
        wp_pool_destroy(p);
        chaos_shutdown_join(&sh, 0, "race_destroy_in_shutdown");
        pthread_join(d.releaser, NULL);
        ck_assert_int_eq(wp_future_state(blocker), WP_SUCCEEDED);
        wp_future_release(blocker);
        tu_hold_close(&h);
    }
}

/* ---------------------------------------------- batcher vs. pool shutdown */

#define BR_ROUNDS     20
#define BR_SUBMITTERS 2
#define BR_ITEMS      400       /* per submitter */
#define BR_MAX_BATCH  32

typedef struct br_item {
    wp_future *f;
    uint32_t   value;
    atomic_int callbacks;
} br_item;

typedef struct br_thread {
    wp_batcher *b;
    br_item    *items;
    atomic_uint *submitted;
    atomic_int *start;
    int         error;
    pthread_t   thread;
} br_thread;

static int br_echo(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++)
        if (wp_buf_append(results[i], items[i].data, items[i].len) != 0)
            return 1;
    return 0;
}

static void br_done(wp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add(&((br_item *)ctx)->callbacks, 1);
}

static void *br_submitter(void *arg)
{
    br_thread *t = arg;
    chaos_linger(t->start);
    for (unsigned i = 0; i < BR_ITEMS && t->error == 0; i++) {
        br_item *it = &t->items[i];
        int rc = wp_batcher_submit(t->b, &it->value, sizeof it->value, &it->f);
        if (rc == WP_ESHUTDOWN)
            break;
        if (rc == 0)
            rc = wp_future_on_done(it->f, br_done, it);
        t->error = rc;
        atomic_fetch_add(t->submitted, 1);
    }
    return NULL;
}

/* Each item settles once: echoed, cancelled, or refused by the closed pool. */
static void br_check(br_item *items, unsigned n, uint64_t seed)
{
    for (unsigned i = 0; i < n; i++) {
        br_item *it = &items[i];
        if (it->f == NULL)
            continue;
        int st = wp_future_state(it->f), err = wp_future_error(it->f);
        size_t len = 0;
        const void *res = wp_future_result(it->f, &len);
        bool echoed = st == WP_SUCCEEDED && len == sizeof it->value && memcmp(res, &it->value, len) == 0;
        ck_assert_msg(echoed || (st == WP_CANCELLED && err == WP_ECANCELED) ||
                          (st == WP_FAILED && err == WP_ESHUTDOWN),
                      "seed %llu: item %u: state %d, %s, \"%s\"", (unsigned long long)seed, i, st,
                      wp_strerror(err), wp_future_message(it->f));
        ck_assert_msg(atomic_load(&it->callbacks) == 1, "seed %llu: item %u: %d done-callbacks",
                      (unsigned long long)seed, i, atomic_load(&it->callbacks));
        wp_future_release(it->f);
    }
}

static void batcher_round(uint64_t seed, uint64_t *rng)
{
    static const int64_t graces[] = { -1, 0, 1, 5 };
    enum { NGRACES = sizeof graces / sizeof graces[0] };
    tu_fds fds;
    tu_fds_snapshot(&fds);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_batcher_options bo = { .max_batch_size = 1 + tu_rand_below(rng, BR_MAX_BATCH), .max_wait_ms = 1 };
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, br_echo, &bo), 0);
    br_item *items = calloc(BR_SUBMITTERS * BR_ITEMS, sizeof *items);
    ck_assert_ptr_nonnull(items);
    atomic_int start = 0;
    atomic_uint submitted = 0;
    br_thread th[BR_SUBMITTERS];
    for (unsigned i = 0; i < BR_SUBMITTERS; i++) {
        th[i] = (br_thread){ .b = b, .items = items + i * BR_ITEMS, .submitted = &submitted,
                             .start = &start };
        for (unsigned k = 0; k < BR_ITEMS; k++)
            th[i].items[k].value = (uint32_t)(i * BR_ITEMS + k);
        ck_assert_int_eq(pthread_create(&th[i].thread, NULL, br_submitter, &th[i]), 0);
    }
    chaos_shutter sh[2] = {
        { .batcher = b, .grace = graces[tu_rand_below(rng, NGRACES)], .start = &start },
        { .pool = p, .grace = graces[tu_rand_below(rng, NGRACES)], .start = &start },
    };
    atomic_store(&start, 1);
    unsigned when = (unsigned)tu_rand_below(rng, BR_SUBMITTERS * BR_ITEMS);
    int64_t deadline = tu_now_ms() + PAUSE_DEADLINE_MS;
    while (atomic_load(&submitted) < when && tu_now_ms() < deadline)
        tu_poll_pause();
    for (unsigned i = 0; i < 2; i++)
        chaos_shutdown_start(&sh[i]);
    for (unsigned i = 0; i < 2; i++)
        chaos_shutdown_join(&sh[i], seed, "race_batcher_shutdown");
    for (unsigned i = 0; i < BR_SUBMITTERS; i++) {
        pthread_join(th[i].thread, NULL);
        ck_assert_msg(th[i].error == 0, "seed %llu: submitter %u: %s", (unsigned long long)seed, i,
                      wp_strerror(th[i].error));
    }
    wp_batcher_destroy(b); /* before the pool */
    wp_pool_destroy(p);
    br_check(items, BR_SUBMITTERS * BR_ITEMS, seed);
    free(items);
    int child, fd;
    char target[TU_FD_TARGET] = "";
    ck_assert_uint_eq(tu_children((int)getpid(), &child, 1), 0);
    ck_assert_msg(tu_fds_new(&fds, &fd, target, sizeof target) == 0, "descriptor %d (%s) left open",
                  fd, target);
}

WP_TEST_BOTH(race_batcher_shutdown)
{
    /* The batcher's thread allocates while the dispatcher forks
       replacements: WP_START_FORK is documented unsafe with threads that
       allocate, and ASan's allocator is such a case (TU_ASAN). */
    if (TU_ASAN && tu_method == WP_START_FORK)
        return;
    uint64_t seed = chaos_seed("race_batcher_shutdown"), rng = seed;
    unsigned rounds = tu_scaled(BR_ROUNDS);
    for (unsigned r = 0; r < rounds; r++)
        batcher_round(seed, &rng);
}

/* ------------------------------------------- done-callbacks that submit */

#define CB_RECORDS  3000
#define CB_QUEUE    2
#define CB_WORKERS  2
#define CB_PAYLOAD  16
#define CB_SEED     9u

static struct {
    wp_pool    *pool;
    chaos_rec  *recs;
    unsigned    n;
    char        pattern[CB_PAYLOAD];
    atomic_uint next;                /* records handed out */
    atomic_uint eagain, eshutdown, other;
    atomic_int  other_rc, shutdown_rc;
    pthread_t   main;
} cb;

/* Runs on the dispatcher thread: count, then submit a follow-up into what
   is probably a full queue (blocking on even records, WP_TASK_NOWAIT on
   odd ones); it must never block. */
static void cb_follow_up(wp_future *f, void *ctx)
{
    chaos_count_done(f, ctx);
    /* Registered on a settled future, a callback runs at once in the
       registering (main) thread; elsewhere it is on the dispatcher. */
    if (!pthread_equal(pthread_self(), cb.main))
        atomic_store(&cb.shutdown_rc, wp_pool_shutdown(cb.pool, 0));
    unsigned i = atomic_fetch_add(&cb.next, 1);
    if (i >= cb.n)
        return;
    wp_task_options o = { .flags = i % 2 ? WP_TASK_NOWAIT : 0 };
    int rc = chaos_submit_with(cb.pool, &cb.recs[i], i, cb.pattern, CB_SEED, CB_PAYLOAD, CB_PAYLOAD,
                               0, &o, cb_follow_up);
    if (rc == WP_EAGAIN)
        atomic_fetch_add(&cb.eagain, 1);
    else if (rc == WP_ESHUTDOWN)
        atomic_fetch_add(&cb.eshutdown, 1);
    else if (rc != 0) {
        atomic_fetch_add(&cb.other, 1);
        atomic_store(&cb.other_rc, rc);
    }
}

/*
 * The main thread keeps a two-slot queue full while every settled task's
 * done-callback submits another.  wp_submit on the dispatcher thread must
 * answer WP_EAGAIN where it would block (known: it blocks, and the pool
 * deadlocks — being fixed).  A stuck dispatcher shows as records no longer
 * being handed out; the test then fails rather than hangs.
 */
WP_TEST_BOTH(race_callback_submit)
{
    uint64_t seed = chaos_seed("race_callback_submit");
    chaos_shared_open();
    memset(&cb, 0, sizeof cb);
    cb.main = pthread_self();
    cb.n = tu_scaled(CB_RECORDS);
    cb.recs = calloc(cb.n, sizeof *cb.recs);
    ck_assert_ptr_nonnull(cb.recs);
    tu_pattern(cb.pattern, sizeof cb.pattern, CB_SEED);
    wp_pool_options o = chaos_pool_options(CB_WORKERS, false);
    o.queue_capacity = CB_QUEUE;
    cb.pool = tu_pool_started(o);
    int64_t deadline = tu_now_ms() + CB_STUCK_MS;
    unsigned last = 0;
    wp_task_options nowait = { .flags = WP_TASK_NOWAIT };
    for (;;) {
        unsigned i = atomic_load(&cb.next);
        if (i != last)
            deadline = tu_now_ms() + CB_STUCK_MS, last = i;
        if (i >= cb.n || tu_now_ms() >= deadline)
            break;
        if (!atomic_compare_exchange_strong(&cb.next, &i, i + 1))
            continue;
        int rc;
        while ((rc = chaos_submit_with(cb.pool, &cb.recs[i], i, cb.pattern, CB_SEED, CB_PAYLOAD,
                                       CB_PAYLOAD, 0, &nowait, cb_follow_up)) == WP_EAGAIN &&
               tu_now_ms() < deadline)
            tu_poll_pause();
        ck_assert_msg(rc == 0, "seed %llu: the dispatcher seems stuck (%u of %u records handed out; "
                      "a done-callback's wp_submit blocked?): %s", (unsigned long long)seed,
                      atomic_load(&cb.next), cb.n, wp_strerror(rc));
    }
    ck_assert_msg(atomic_load(&cb.next) >= cb.n, "seed %llu: the dispatcher seems stuck: %u of %u "
                  "records handed out, none for %d s (a done-callback's wp_submit blocked?)",
                  (unsigned long long)seed, atomic_load(&cb.next), cb.n, CB_STUCK_MS / 1000);
    ck_assert_int_eq(wp_pool_shutdown(cb.pool, -1), 0);
    ck_assert_int_eq(atomic_load(&cb.shutdown_rc), WP_EBUSY);
    ck_assert_msg(atomic_load(&cb.other) == 0, "wp_submit from a done-callback: %s",
                  wp_strerror(atomic_load(&cb.other_rc)));
    fprintf(stderr, "check_chaos: race_callback_submit: %u records, %u WP_EAGAIN, %u WP_ESHUTDOWN\n",
            cb.n, atomic_load(&cb.eagain), atomic_load(&cb.eshutdown));
    chaos_finish(cb.pool, cb.recs, cb.n, CHAOS_ALLOW(CHAOS_SUCCEEDED), 0, seed,
                 "race_callback_submit");
    free(cb.recs);
}

void chaos_add_race_tests(Suite *s, const tu_suite *def)
{
    const tu_test tests[] = {
        TU_TEST(race_destroy_in_shutdown),
        TU_TEST(race_batcher_shutdown),
        TU_TEST(race_callback_submit),
    };
    tu_add_tests(s, def, tests, TU_COUNT(tests));
}
