/* SPDX-License-Identifier: MIT */
/*
 * check_batcher.c — the batcher's public behaviour (DESIGN §4 "Batcher"):
 * argument checks, the three reasons a batch leaves (size, the first item's
 * wait, flush/shutdown), what the batch function sees and how its results
 * and failures reach the item futures, crashes and timeouts of a batch,
 * max_in_flight, cancelling items, backpressure, the three kinds of
 * shutdown, many submitting threads, and the stats.
 *
 * Every test runs twice, under WP_START_FORKSERVER and WP_START_FORK
 * (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
 * joins threads, or polls the observed condition against a deadline.  The
 * timed waits on a clock in the time_trigger_* tests are the scenario
 * itself (items arrive at set times), and backpressure gives a submit that
 * must stay blocked 200 ms to prove it wrong.  Timing bounds are loose
 * (seconds), for loaded CI machines and sanitizers.
 *
 * Batch functions run in worker processes and cannot touch the test's
 * memory.  They report through their results and through `probe`, a
 * MAP_SHARED page the test maps before it creates the pool (so the fork
 * server and every worker inherit it): how many batches are running at
 * once, which item values they saw, and a gate the test opens to let a
 * held batch finish.
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define LONG_WAIT_MS 60000 /* a max_wait_ms no test ever reaches */
/* How late a batch may leave after its max_wait_ms on a loaded machine
   under a sanitizer; time_trigger_under_trickle needs it below its 3 s. */
#define TIMER_SLACK_MS 2000

/* ------------------------------------------------------- the shared probe */

#define PROBE_SEEN 4096

typedef struct probe {
    atomic_int entered;     /* batch function calls so far */
    atomic_int running;     /* batch functions running right now */
    atomic_int max_running; /* the most ever running at once */
    atomic_int gate;        /* OP_GATE items wait until this is non-zero */
    atomic_int nseen;       /* entries used in seen[] */
    int32_t    seen[PROBE_SEEN]; /* every item value any batch function saw */
} probe;

static probe *pr;

static void probe_map(void)
{
    if (pr == NULL) {
        void *m = mmap(NULL, sizeof *pr, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(m, MAP_FAILED);
        pr = m;
    }
    memset(pr, 0, sizeof *pr);
}

static bool probe_saw(int32_t value)
{
    int n = atomic_load(&pr->nseen);
    for (int i = 0; i < n && i < PROBE_SEEN; i++)
        if (pr->seen[i] == value)
            return true;
    return false;
}

/* ------------------------------------------------------- batch functions */

/* What bt_apply does with an item. */
enum {
    OP_VALUE,  /* result: the bresult of its value */
    OP_FAIL,   /* wp_buf_fail(its result, value, "item <value> failed") */
    OP_SLEEP,  /* sleep value ms, then as OP_VALUE */
    OP_GATE,   /* wait for probe->gate, then as OP_VALUE */
    OP_HANG,   /* the whole batch hangs */
    OP_SEGV,   /* the whole batch dies of SIGSEGV */
    OP_SEGV1,  /* the whole batch dies of SIGSEGV on its first call only */
    OP_RETURN, /* the whole batch returns value (no wp_buf_fail) */
    OP_BIG     /* its result: value bytes */
};

typedef struct bitem {
    int32_t op;
    int32_t value;
} bitem;

/* Item i's result: what the batch function made of it, and where it sat. */
typedef struct bresult {
    int32_t value;
    int32_t index; /* its place in the batch */
    int32_t n;     /* the batch's size */
    int32_t pad;
    int64_t f;     /* f(value) */
} bresult;

static int64_t f_of(int32_t v)
{
    return (int64_t)v * v + 1;
}

static void probe_enter(const wp_item *items, size_t n)
{
    atomic_fetch_add(&pr->entered, 1);
    int now = atomic_fetch_add(&pr->running, 1) + 1;
    int max = atomic_load(&pr->max_running);
    while (now > max && !atomic_compare_exchange_weak(&pr->max_running, &max, now))
        ;
    for (size_t i = 0; i < n; i++) {
        bitem it = { -1, -1 };
        if (items[i].len == sizeof it)
            memcpy(&it, items[i].data, sizeof it);
        int slot = atomic_fetch_add(&pr->nseen, 1);
        if (slot < PROBE_SEEN)
            pr->seen[slot] = it.value;
    }
}

/* Runs in a worker: each item is a bitem; see the OP_* above. */
static int bt_apply(const wp_item *items, size_t n, wp_buf *const *results)
{
    probe_enter(items, n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bitem it;
        if (items[i].len != sizeof it) {
            wp_buf_fail(results[i], 99, "not a bitem");
            continue;
        }
        memcpy(&it, items[i].data, sizeof it);
        bresult r = { it.value, (int32_t)i, (int32_t)n, 0, f_of(it.value) };
        switch (it.op) {
        case OP_FAIL: {
            char msg[64];
            snprintf(msg, sizeof msg, "item %d failed", (int)it.value);
            wp_buf_fail(results[i], it.value, msg);
            continue;
        }
        case OP_SLEEP:
            tu_sleep_ms(it.value);
            break;
        case OP_GATE:
            while (atomic_load(&pr->gate) == 0)
                tu_sleep_ms(1);
            break;
        case OP_HANG:
            for (;;)
                pause();
        case OP_SEGV1:
            if (atomic_load(&pr->entered) > 1)
                break;
            /* fall through */
        case OP_SEGV:
            /* A plain SIGSEGV death, also under AddressSanitizer (whose
               handler would turn it into exit status 1). */
            signal(SIGSEGV, SIG_DFL);
            raise(SIGSEGV);
            break;
        case OP_RETURN:
            rc = it.value;
            continue;
        case OP_BIG: {
            char *big = calloc(1, (size_t)it.value);
            if (big == NULL)
                return 12;
            int arc = wp_buf_append(results[i], big, (size_t)it.value);
            free(big);
            if (arc < 0 && arc != WP_E2BIG)
                rc = 13;
            continue;
        }
        default:
            break;
        }
        if (wp_buf_append(results[i], &r, sizeof r) < 0)
            rc = 14;
    }
    atomic_fetch_sub(&pr->running, 1);
    return rc;
}

/* Runs in a worker: result i = { uint32 i, uint32 n } then item i's bytes. */
static int bt_describe(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t where[2] = { (uint32_t)i, (uint32_t)n };
        int rc = wp_buf_append(results[i], where, sizeof where);
        if (rc == 0)
            rc = wp_buf_append(results[i], items[i].data, items[i].len);
        if (rc < 0)
            return 1;
    }
    return 0;
}

/* ----------------------------------------------------------------- helpers */

/* The test's pool (tu_make_pool), once the probe is mapped and cleared:
   the probe must exist before the fork server and the workers do.  Under
   WP_START_FORK the dispatcher forks workers from this process: a fork
   while another of its threads holds an allocator lock that is not
   fork-safe (AddressSanitizer's is not) leaves the worker stuck forever.
   That is the documented limit of WP_START_FORK, not what these tests are
   about, so they let workers come up (tu_wait_workers) before other
   threads get busy. */
static wp_pool *probed_pool(wp_pool_options o)
{
    probe_map();
    return tu_make_pool(o);
}

static wp_batcher *make_batcher(wp_pool *p, wp_batch_fn fn, wp_batcher_options o)
{
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, fn, &o), 0);
    ck_assert_ptr_nonnull(b);
    return b;
}

static wp_batcher_stats bstats(wp_batcher *b)
{
    wp_batcher_stats s;
    ck_assert_int_eq(wp_batcher_get_stats(b, &s), 0);
    return s;
}

static wp_future *submit(wp_batcher *b, int32_t op, int32_t value)
{
    bitem it = { op, value };
    wp_future *f = NULL;
    ck_assert_int_eq(wp_batcher_submit(b, &it, sizeof it, &f), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Submit n items into fs: the one at index odd does op with value, every
   other one is OP_VALUE with its index. */
static void submit_with_odd_one(wp_batcher *b, wp_future **fs, int n, int odd, int32_t op,
                                int32_t value)
{
    for (int i = 0; i < n; i++)
        fs[i] = i == odd ? submit(b, op, value) : submit(b, OP_VALUE, i);
}

/* Wait for f and check it succeeded with the bresult of value; returns the
   result so a test can look at its place in the batch. */
static bresult expect_value(wp_future *f, int32_t value)
{
    tu_wait_settled(f);
    ck_assert_msg(wp_future_error(f) == 0, "item %d failed: %s (%s)", (int)value,
                  wp_strerror(wp_future_error(f)), wp_future_message(f));
    ck_assert_int_eq(wp_future_state(f), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_code(f), 0);
    ck_assert_str_eq(wp_future_message(f), "");
    size_t len = 0;
    const void *p = wp_future_result(f, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(len, sizeof(bresult));
    bresult r;
    memcpy(&r, p, sizeof r);
    ck_assert_int_eq(r.value, value);
    ck_assert(r.f == f_of(value));
    ck_assert_int_lt(r.index, r.n);
    return r;
}

/* Wait for f and check it settled with this outcome. */
static void expect_outcome(wp_future *f, int state, int error)
{
    tu_wait_settled(f);
    ck_assert_msg(wp_future_error(f) == error, "outcome %s (%s), expected %s",
                  wp_strerror(wp_future_error(f)), wp_future_message(f), wp_strerror(error));
    ck_assert_int_eq(wp_future_state(f), state);
    ck_assert_ptr_null(wp_future_result(f, NULL));
}

static void release_all(wp_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wp_future_release(fs[i]);
}

/* Shut down (all batches finish), check nothing is left pending or in
   flight, destroy both. */
static void finish(wp_batcher *b, wp_pool *p)
{
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.pending, 0);
    ck_assert_uint_eq(s.in_flight, 0);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

/* Block the calling thread until CLOCK_MONOTONIC reaches at_ms, with a
   timed wait on a condition variable nobody signals. */
static void wait_until_ms(int64_t at_ms)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
    struct timespec ts = { .tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1000000L };
    pthread_mutex_lock(&mu);
    while (tu_now_ms() < at_ms)
        pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}

/* --------------------------------------------------------------- arguments */

WP_TEST_BOTH(bad_arguments)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1, .max_message = 4096 });
    wp_batcher *b = (wp_batcher *)&b;
    wp_batcher_options o = { 0 };

    ck_assert_int_eq(wp_batcher_create(NULL, p, bt_apply, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_create(&b, NULL, bt_apply, NULL), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    ck_assert_int_eq(wp_batcher_create(&b, p, NULL, NULL), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .max_wait_ms = -1 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .task.flags = 1u << 7 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);
    b = (wp_batcher *)&b;
    o = (wp_batcher_options){ .task.timeout_ms = -5 };
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, &o), WP_EINVAL);
    ck_assert_ptr_null(b);

    /* NULL options = all defaults. */
    ck_assert_int_eq(wp_batcher_create(&b, p, bt_apply, NULL), 0);
    ck_assert_ptr_nonnull(b);

    wp_future *f = (wp_future *)&f;
    bitem it = { OP_VALUE, 5 };
    ck_assert_int_eq(wp_batcher_submit(NULL, &it, sizeof it, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, NULL, 5, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(b, &it, sizeof it, 1u << 9, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(NULL, &it, sizeof it, WP_TASK_NOWAIT, &f), WP_EINVAL);
    ck_assert_ptr_null(f);
    /* An item larger than the pool's max_message can never be sent. */
    static char big[4097];
    f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, big, sizeof big, &f), WP_E2BIG);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_submit(b, big, sizeof big, NULL), WP_E2BIG);
    ck_assert_uint_eq(bstats(b).items, 0);

    ck_assert_int_eq(wp_batcher_flush(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_shutdown(NULL, -1), WP_EINVAL);
    wp_batcher_stats s;
    ck_assert_int_eq(wp_batcher_get_stats(NULL, &s), WP_EINVAL);
    ck_assert_int_eq(wp_batcher_get_stats(b, NULL), WP_EINVAL);
    wp_batcher_destroy(NULL);

    /* An empty item (NULL, 0) is fine: the batch function sees len 0, and
       bt_apply fails it alone as "not a bitem". */
    ck_assert_int_eq(wp_batcher_submit(b, NULL, 0, &f), 0);
    wp_future *g = submit(b, OP_VALUE, 5);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_outcome(f, WP_FAILED, WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 99);
    ck_assert_str_eq(wp_future_message(f), "not a bitem");
    expect_value(g, 5);
    wp_future_release(f);
    wp_future_release(g);
    finish(b, p);
}

/* The contract: wp_batcher_create on a pool that is shutting down fails
   with WP_ESHUTDOWN. */
WP_TEST_BOTH(create_on_shut_down_pool)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_batcher *b = (wp_batcher *)&b;
    int rc = wp_batcher_create(&b, p, bt_apply, NULL);
    if (rc == 0) {
        /* Clean up before failing, so the report names the real problem. */
        wp_future *f = submit(b, OP_VALUE, 1);
        wp_batcher_destroy(b);
        tu_wait_settled(f);
        int err = wp_future_error(f);
        wp_future_release(f);
        wp_pool_destroy(p);
        ck_abort_msg("wp_batcher_create on a shut-down pool returned 0, not WP_ESHUTDOWN "
                     "(an item submitted to it then settled with %s)", wp_strerror(err));
    }
    ck_assert_int_eq(rc, WP_ESHUTDOWN);
    ck_assert_ptr_null(b);
    wp_pool_destroy(p);
}

/* ----------------------------------------------------- when batches leave */

WP_TEST_BOTH(size_trigger)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 8, .max_wait_ms = 10000 });
    wp_future *fs[8];
    for (int i = 0; i < 8; i++)
        fs[i] = submit(b, OP_VALUE, i);
    /* A generous deadline: what proves the size sent it is wait_us_max
       below, not how fast it came back. */
    ck_assert_int_eq(wp_wait_all(fs, 8, 30000), 0);
    for (int i = 0; i < 8; i++) {
        bresult r = expect_value(fs[i], i);
        ck_assert_int_eq(r.n, 8);
        ck_assert_int_eq(r.index, i);
    }
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items, 8);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.items_batched, 8);
    ck_assert(s.mean_batch_size == 8.0);
    ck_assert_msg(s.wait_us_max < 10000000, "the batch waited %llu us: it left on time, not size",
                  (unsigned long long)s.wait_us_max);
    release_all(fs, 8);

    /* A ninth item waits for company (10 s): it has not left yet. */
    wp_future *f = submit(b, OP_VALUE, 9);
    s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.pending, 1);
    ck_assert_int_eq(wp_future_state(f), WP_PENDING);
    /* Shutdown sends it. */
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(expect_value(f, 9).n, 1);
    ck_assert_uint_eq(bstats(b).batches, 2);
    wp_future_release(f);
    finish(b, p);
}

WP_TEST_BOTH(time_trigger_from_first_item)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = 200 });
    int64_t a0 = tu_now_ms();
    wp_future *fa = submit(b, OP_VALUE, 1);
    int64_t a1 = tu_now_ms();
    wait_until_ms(a0 + 150);
    int64_t b0 = tu_now_ms();
    wp_future *fb = submit(b, OP_VALUE, 2);
    int64_t b1 = tu_now_ms();
    tu_wait_settled(fa);
    int64_t a_done = tu_now_ms();
    tu_wait_settled(fb);
    expect_value(fa, 1);
    expect_value(fb, 2);

    ck_assert_msg(a_done - a0 >= 200, "A settled %lld ms after its submit, before max_wait_ms",
                  (long long)(a_done - a0));
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items_batched, 2);
    /* The longest wait is A's: at least max_wait_ms, and nowhere near what
       timing from B (350 ms) plus any scheduling slack would give. */
    ck_assert_msg(s.wait_us_max >= 200000, "A waited only %llu us",
                  (unsigned long long)s.wait_us_max);
    ck_assert_msg(s.wait_us_max <= (200 + TIMER_SLACK_MS) * 1000, "A waited %llu us",
                  (unsigned long long)s.wait_us_max);
    if (b1 < a0 + 195) {
        /* B arrived while A still waited: they left together, and B waited
           150 ms (as this thread measured it) less than A did. */
        ck_assert_uint_eq(s.batches, 1);
        uint64_t wait_a = s.wait_us_max, wait_b = s.wait_us_total - s.wait_us_max;
        ck_assert_uint_le(wait_b, wait_a);
        ck_assert_msg(wait_a - wait_b >= (uint64_t)(b0 - a1) * 1000 - 1000,
                      "A waited %llu us and B %llu us, but B came %lld ms later",
                      (unsigned long long)wait_a, (unsigned long long)wait_b,
                      (long long)(b0 - a1));
        ck_assert_int_eq(expect_value(fa, 1).n, 2);
    }
    wp_future_release(fa);
    wp_future_release(fb);
    finish(b, p);
}

/* Items that keep trickling in, one every 100 ms for 3 s, never hold back
   the first of them: max_wait_ms counts from each batch's first item.
   Timed from the last arrival, the first item would wait 3.2 s: more than
   max_wait_ms and all the slack a loaded machine may add. */
WP_TEST_BOTH(time_trigger_under_trickle)
{
    enum { EVERY_MS = 100, ITEMS = 31 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 1024, .max_wait_ms = 200 });
    wp_future *fs[ITEMS];
    int64_t t0 = tu_now_ms();
    for (int i = 0; i < ITEMS; i++) {
        wait_until_ms(t0 + (int64_t)i * EVERY_MS);
        fs[i] = submit(b, OP_VALUE, i);
    }
    for (int i = 0; i < ITEMS; i++)
        expect_value(fs[i], i);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items_batched, ITEMS);
    ck_assert_uint_ge(s.batches, 2);
    ck_assert_msg(s.wait_us_max >= 200000 && s.wait_us_max <= (200 + TIMER_SLACK_MS) * 1000,
                  "the longest wait was %llu us with max_wait_ms 200 (timed from the last "
                  "arrival, the first item would wait 3.2 s)", (unsigned long long)s.wait_us_max);
    release_all(fs, ITEMS);
    finish(b, p);
}

WP_TEST_BOTH(flush_sends_partial_batch)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(b, OP_VALUE, 10 + i);
    ck_assert_uint_eq(bstats(b).pending, 3);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    ck_assert_int_eq(wp_wait_all(fs, 3, TU_DEADLINE_MS), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(expect_value(fs[i], 10 + i).n, 3);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.items_batched, 3);
    ck_assert(s.mean_batch_size == 3.0);
    ck_assert_uint_eq(s.pending, 0);
    /* A flush with nothing waiting sends nothing. */
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 3);
    finish(b, p);
}

/* --------------------------------------------------- what the batch sees */

WP_TEST_BOTH(batch_sees_items_in_order)
{
    static const struct { const char *bytes; size_t len; } in[] = {
        { "alpha", 5 },
        { "", 0 },
        { "with\0a zero byte", 16 },
        { "z", 1 },
        { NULL, 300 }, /* a pattern */
    };
    enum { N = sizeof in / sizeof in[0] };
    char pattern[300];
    tu_pattern(pattern, sizeof pattern, 3);
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_describe, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        const void *bytes = in[i].bytes != NULL ? in[i].bytes : pattern;
        ck_assert_int_eq(wp_batcher_submit(b, bytes, in[i].len, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        tu_wait_settled(fs[i]);
        ck_assert_int_eq(wp_future_error(fs[i]), 0);
        size_t len;
        const char *r = wp_future_result(fs[i], &len);
        uint32_t where[2];
        ck_assert_uint_eq(len, sizeof where + in[i].len);
        memcpy(where, r, sizeof where);
        ck_assert_uint_eq(where[0], (unsigned)i);
        ck_assert_uint_eq(where[1], N);
        const void *bytes = in[i].bytes != NULL ? in[i].bytes : pattern;
        ck_assert_int_eq(memcmp(r + sizeof where, bytes, in[i].len), 0);
    }
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(per_item_results)
{
    enum { N = 200 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 16, .max_wait_ms = 5 });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, i * 37 - 1000);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_le(expect_value(fs[i], i * 37 - 1000).n, 16);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.items, N);
    ck_assert_uint_eq(s.items_batched, N);
    ck_assert_uint_ge(s.batches, N / 16);
    ck_assert(s.mean_batch_size <= 16.0);
    release_all(fs, N);
    finish(b, p);
}

/* ------------------------------------------------------------- failures */

WP_TEST_BOTH(per_item_failure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 5, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[5];
    submit_with_odd_one(b, fs, 5, 2, OP_FAIL, 42);
    expect_outcome(fs[2], WP_FAILED, WP_ETASK);
    ck_assert_int_eq(wp_future_code(fs[2]), 42);
    ck_assert_str_eq(wp_future_message(fs[2]), "item 42 failed");
    for (int i = 0; i < 5; i++)
        if (i != 2)
            ck_assert_int_eq(expect_value(fs[i], i).n, 5);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 5);
    finish(b, p);
}

WP_TEST_BOTH(whole_batch_failure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 4, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[4];
    submit_with_odd_one(b, fs, 4, 1, OP_RETURN, 7);
    for (int i = 0; i < 4; i++) {
        expect_outcome(fs[i], WP_FAILED, WP_ETASK);
        ck_assert_int_eq(wp_future_code(fs[i]), 7);
    }
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 4);
    finish(b, p);
}

/* Submit a batch of n items, one of which does `op`; every item must fail
   with `error`; then the batcher must go on serving. */
static void whole_batch_dies(wp_pool *p, wp_batcher *b, int32_t op, int error, int code,
                             const char *text)
{
    uint64_t started = tu_pool_stats(p).workers_started;
    enum { N = 3 };
    wp_future *fs[N];
    submit_with_odd_one(b, fs, N, 1, op, 0);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        expect_outcome(fs[i], WP_FAILED, error);
        ck_assert_int_eq(wp_future_code(fs[i]), code);
        if (text != NULL)
            ck_assert_msg(strstr(wp_future_message(fs[i]), text) != NULL,
                          "message \"%s\" lacks \"%s\"", wp_future_message(fs[i]), text);
    }
    release_all(fs, N);
    /* The pool replaces the worker; the batcher keeps working. */
    tu_wait_workers(p, 2, started + 1);
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, 100 + i);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        expect_value(fs[i], 100 + i);
    release_all(fs, N);
}

WP_TEST_BOTH(crashing_batch)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    whole_batch_dies(p, b, OP_SEGV, WP_ECRASHED, 11, "SIGSEGV");
    whole_batch_dies(p, b, OP_SEGV, WP_ECRASHED, 11, "SIGSEGV");
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* its counters are final */
    wp_pool_stats ps = tu_pool_stats(p);
    ck_assert_uint_eq(ps.crashed, 2);
    finish(b, p);
}

WP_TEST_BOTH(batch_timeout)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS,
                              .task.timeout_ms = 1000 });
    whole_batch_dies(p, b, OP_HANG, WP_ETIMEDOUT, 0, NULL);
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* its counters are final */
    wp_pool_stats ps = tu_pool_stats(p);
    ck_assert_uint_eq(ps.timed_out, 1);
    finish(b, p);
}

/* The contract: a non-zero return fails every item with WP_ETASK and that
   code, whatever the code.  WP_E2BIG's value is what a batch function
   returns when it passes on a failed wp_buf_append. */
WP_TEST_BOTH(whole_batch_failure_any_code)
{
    static const int32_t codes[] = { -1, WP_E2BIG, 1 << 20 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = LONG_WAIT_MS });
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        wp_future *fs[2] = { submit(b, OP_VALUE, 1), submit(b, OP_RETURN, codes[k]) };
        for (int i = 0; i < 2; i++) {
            tu_wait_settled(fs[i]);
            ck_assert_msg(wp_future_error(fs[i]) == WP_ETASK && wp_future_code(fs[i]) == codes[k],
                          "batch function returned %d: item %d settled with %s, code %d (%s)",
                          (int)codes[k], i, wp_strerror(wp_future_error(fs[i])),
                          wp_future_code(fs[i]), wp_future_message(fs[i]));
        }
        release_all(fs, 2);
    }
    finish(b, p);
}

/* task.retries applies to batches: a batch that crashes once runs again
   and its items succeed. */
WP_TEST_BOTH(batch_retries)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 3, .max_wait_ms = LONG_WAIT_MS, .task.retries = 1 });
    wp_future *fs[3] = { submit(b, OP_VALUE, 1), submit(b, OP_SEGV1, 2), submit(b, OP_VALUE, 3) };
    for (int i = 0; i < 3; i++)
        expect_value(fs[i], i + 1);
    ck_assert_int_eq(atomic_load(&pr->entered), 2);
    ck_assert_uint_eq(bstats(b).batches, 1);
    release_all(fs, 3);
    finish(b, p);
}

/* An item result over max_message fails that item alone with WP_E2BIG. */
WP_TEST_BOTH(item_result_too_big)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2, .max_message = 4096 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 3, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[3] = { submit(b, OP_VALUE, 1), submit(b, OP_BIG, 5000), submit(b, OP_VALUE, 3) };
    expect_outcome(fs[1], WP_FAILED, WP_E2BIG);
    expect_value(fs[0], 1);
    expect_value(fs[2], 3);
    release_all(fs, 3);
    finish(b, p);
}

/* Items that do not fit one message together leave in several batches. */
WP_TEST_BOTH(batches_split_by_message_size)
{
    enum { N = 3, LEN = 1500 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2, .max_message = 4096 });
    wp_batcher *b = make_batcher(
        p, bt_describe, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    char items[N][LEN];
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        tu_pattern(items[i], LEN, (unsigned)i);
        ck_assert_int_eq(wp_batcher_submit(b, items[i], LEN, &fs[i]), 0);
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++) {
        tu_wait_settled(fs[i]);
        ck_assert_msg(wp_future_error(fs[i]) == 0, "item %d: %s (%s)", i,
                      wp_strerror(wp_future_error(fs[i])), wp_future_message(fs[i]));
        size_t len;
        const char *r = wp_future_result(fs[i], &len);
        ck_assert_uint_eq(len, 8 + LEN);
        ck_assert(tu_pattern_ok(r + 8, LEN, (unsigned)i));
    }
    ck_assert_uint_ge(bstats(b).batches, 2);
    release_all(fs, N);
    finish(b, p);
}

/* ------------------------------------------------------------ in flight */

WP_TEST_BOTH(max_in_flight_one)
{
    enum { N = 10 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = 1, .max_in_flight = 1 });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_SLEEP, 50); /* 100 ms per batch of 2 */
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        expect_value(fs[i], 50);
    ck_assert_int_eq(atomic_load(&pr->max_running), 1);
    ck_assert_int_ge(atomic_load(&pr->entered), N / 2);
    release_all(fs, N);
    finish(b, p);
}

/* ----------------------------------------------------------- cancelling */

WP_TEST_BOTH(cancel_pending_item)
{
    enum { N = 5, VICTIM = 2 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(b, OP_VALUE, 1000 + i);
    ck_assert_int_eq(wp_future_cancel(fs[VICTIM]), 0);
    /* It settles at once, without waiting for a batch. */
    expect_outcome(fs[VICTIM], WP_CANCELLED, WP_ECANCELED);
    ck_assert_int_eq(wp_future_cancel(fs[VICTIM]), WP_EINVAL);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.pending, N - 1);
    ck_assert_uint_eq(s.batches, 0);

    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < N; i++)
        if (i != VICTIM) {
            bresult r = expect_value(fs[i], 1000 + i);
            ck_assert_int_eq(r.n, N - 1);
            ck_assert_int_eq(r.index, i < VICTIM ? i : i - 1);
        }
    ck_assert_int_eq(atomic_load(&pr->nseen), N - 1);
    ck_assert_msg(!probe_saw(1000 + VICTIM), "the batch function saw the cancelled item");
    for (int i = 0; i < N; i++)
        ck_assert(i == VICTIM || probe_saw(1000 + i));
    s = bstats(b);
    ck_assert_uint_eq(s.items, N);
    ck_assert_uint_eq(s.items_batched, N - 1);
    ck_assert_uint_eq(s.batches, 1);
    release_all(fs, N);
    finish(b, p);
}

WP_TEST_BOTH(cancel_sent_item_is_busy)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = LONG_WAIT_MS });
    wp_future *f = submit(b, OP_GATE, 1);
    wp_future *g = submit(b, OP_VALUE, 2);
    /* Both are in a batch, held by the gate in the batch function. */
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_cancel(g), WP_EBUSY);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    atomic_store(&pr->gate, 1);
    expect_value(f, 1);
    expect_value(g, 2);
    ck_assert_int_eq(wp_future_cancel(f), WP_EINVAL); /* settled */
    wp_future_release(f);
    wp_future_release(g);
    finish(b, p);
}

/* --------------------------------------------------------- backpressure */

typedef struct blocked_submit {
    wp_batcher     *b;
    wp_future      *f;
    int             rc;
    bool            returned;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
} blocked_submit;

static void *blocked_submit_main(void *arg)
{
    blocked_submit *bs = arg;
    bitem it = { OP_VALUE, 77 };
    int rc = wp_batcher_submit(bs->b, &it, sizeof it, &bs->f);
    pthread_mutex_lock(&bs->mu);
    bs->rc = rc;
    bs->returned = true;
    pthread_cond_broadcast(&bs->cv);
    pthread_mutex_unlock(&bs->mu);
    return NULL;
}

enum { MAX_PENDING = 4 };

/* A batcher of bt_apply on p that is full: the one batch it may have in
   flight is held at the gate (*held, item value 0), and MAX_PENDING items
   wait behind it (fs, values 1 ..), submitted with WP_TASK_NOWAIT. */
static wp_batcher *full_batcher(wp_pool *p, wp_future **held, wp_future *fs[MAX_PENDING])
{
    wp_batcher *b = make_batcher(
        p, bt_apply,
        (wp_batcher_options){ .max_batch_size = 2, .max_wait_ms = 1, .max_in_flight = 1,
                              .max_pending = MAX_PENDING });
    *held = submit(b, OP_GATE, 0);
    TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
    for (int i = 0; i < MAX_PENDING; i++) {
        bitem it = { OP_VALUE, i + 1 };
        ck_assert_int_eq(wp_batcher_submit_opts(b, &it, sizeof it, WP_TASK_NOWAIT, &fs[i]), 0);
    }
    return b;
}

WP_TEST_BOTH(backpressure)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_future *held, *fs[MAX_PENDING];
    wp_batcher *b = full_batcher(p, &held, fs);
    ck_assert_uint_eq(bstats(b).pending, MAX_PENDING);
    bitem extra = { OP_VALUE, 99 };
    wp_future *f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit_opts(b, &extra, sizeof extra, WP_TASK_NOWAIT, &f), WP_EAGAIN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_submit_opts(b, &extra, sizeof extra, WP_TASK_NOWAIT, NULL),
                     WP_EAGAIN);
    ck_assert_uint_eq(bstats(b).items, 1 + MAX_PENDING);

    /* A submit without NOWAIT blocks until there is room. */
    blocked_submit bs = { .b = b, .mu = PTHREAD_MUTEX_INITIALIZER };
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bs.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, blocked_submit_main, &bs), 0);
    /* It must still be blocked 200 ms later (a deadline on its condition,
       which must not come true while the gate is shut). */
    int64_t until = tu_now_ms() + 200;
    struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L };
    pthread_mutex_lock(&bs.mu);
    while (!bs.returned && tu_now_ms() < until)
        pthread_cond_timedwait(&bs.cv, &bs.mu, &ts);
    bool returned_early = bs.returned;
    pthread_mutex_unlock(&bs.mu);
    ck_assert_msg(!returned_early, "a submit past max_pending did not block");

    atomic_store(&pr->gate, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(bs.rc, 0);
    ck_assert_ptr_nonnull(bs.f);
    expect_value(held, 0);
    for (int i = 0; i < MAX_PENDING; i++)
        expect_value(fs[i], i + 1);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(bs.f, 77);
    ck_assert_int_eq(atomic_load(&pr->max_running), 1);
    ck_assert_uint_eq(bstats(b).items, 2 + MAX_PENDING);
    wp_future_release(held);
    wp_future_release(bs.f);
    release_all(fs, MAX_PENDING);
    pthread_cond_destroy(&bs.cv);
    finish(b, p);
}

/* ------------------------------------------------------------- shutdown */

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

static atomic_int callback_rc[2];

static void shutdown_from_callback(wp_future *f, void *ctx)
{
    int which = wp_future_state(f) == WP_CANCELLED ? 1 : 0;
    atomic_store(&callback_rc[which], wp_batcher_shutdown(ctx, 0));
}

/* Item done-callbacks run on the dispatcher (batch results) or on the
   batcher thread (cancelled items); a shutdown from either must refuse
   with WP_EBUSY rather than deadlock. */
WP_TEST_BOTH(shutdown_from_done_callback)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(
        p, bt_apply, (wp_batcher_options){ .max_batch_size = 64, .max_wait_ms = LONG_WAIT_MS });
    atomic_store(&callback_rc[0], 1);
    atomic_store(&callback_rc[1], 1);
    wp_future *ok = submit(b, OP_VALUE, 1);
    wp_future *gone = submit(b, OP_VALUE, 2);
    ck_assert_int_eq(wp_future_on_done(ok, shutdown_from_callback, b), 0);
    ck_assert_int_eq(wp_future_on_done(gone, shutdown_from_callback, b), 0);
    ck_assert_int_eq(wp_future_cancel(gone), 0);
    TU_POLL_UNTIL(atomic_load(&callback_rc[1]) != 1);
    ck_assert_int_eq(atomic_load(&callback_rc[1]), WP_EBUSY);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    TU_POLL_UNTIL(atomic_load(&callback_rc[0]) != 1);
    ck_assert_int_eq(atomic_load(&callback_rc[0]), WP_EBUSY);
    expect_value(ok, 1);
    /* The refused shutdowns did not close the batcher. */
    wp_future *more = submit(b, OP_VALUE, 3);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(more, 3);
    wp_future_release(ok);
    wp_future_release(gone);
    wp_future_release(more);
    finish(b, p);
}

/* An item's done-callback runs on the dispatcher: a wp_batcher_submit
   there must not wait for room (the room comes only once the callback has
   returned), it answers WP_EAGAIN. */
static wp_batcher *cb_batcher;
static atomic_int cb_submit_rc = 1; /* 1: not run yet */

static void submit_from_callback(wp_future *f, void *ctx)
{
    (void)f; (void)ctx;
    bitem it = { OP_VALUE, 5 };
    atomic_store(&cb_submit_rc, wp_batcher_submit(cb_batcher, &it, sizeof it, NULL));
}

WP_TEST_BOTH(submit_from_item_callback_full)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_future *held, *fs[MAX_PENDING];
    atomic_store(&cb_submit_rc, 1);
    wp_batcher *b = full_batcher(p, &held, fs);
    cb_batcher = b;
    ck_assert_int_eq(wp_future_on_done(held, submit_from_callback, NULL), 0);
    atomic_store(&pr->gate, 1);
    TU_POLL_UNTIL(atomic_load(&cb_submit_rc) != 1);
    ck_assert_int_eq(atomic_load(&cb_submit_rc), WP_EAGAIN);
    expect_value(held, 0);
    for (int i = 0; i < MAX_PENDING; i++)
        expect_value(fs[i], i + 1);
    wp_future_release(held);
    release_all(fs, MAX_PENDING);
    finish(b, p);
}

static int batcher_shutdown_blocking(void *b)
{
    return wp_batcher_shutdown(b, -1);
}

/* wp_batcher_destroy while other threads wait in wp_batcher_shutdown(-1):
   they all return 0, and destroy frees only after they have left. */
WP_TEST_BOTH(destroy_races_shutdown)
{
    enum { ROUNDS = 10, WAITERS = 4 };
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    for (int round = 0; round < ROUNDS; round++) {
        atomic_store(&pr->gate, 0);
        atomic_store(&pr->entered, 0);
        wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ .max_wait_ms = 1 });
        wp_future *held = submit(b, OP_GATE, round);
        TU_POLL_UNTIL(atomic_load(&pr->entered) == 1);
        tu_blocker w[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            tu_blocker_start(&w[i], batcher_shutdown_blocking, b);
        atomic_store(&pr->gate, 1);
        wp_batcher_destroy(b); /* the waiters may still be inside */
        for (int i = 0; i < WAITERS; i++)
            ck_assert_int_eq(tu_blocker_join(&w[i]), 0);
        expect_value(held, round);
        wp_future_release(held);
    }
    wp_pool_destroy(p);
}

/* max_wait_ms up to INT64_MAX means "that long": the item waits for its
   batch to fill or a flush, never leaves at once through an overflow. */
WP_TEST_BOTH(huge_max_wait)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply,
                                 (wp_batcher_options){ .max_batch_size = 8, .max_wait_ms = INT64_MAX });
    wp_future *f = submit(b, OP_VALUE, 7);
    /* A window in which the batch must not leave (it would at once). */
    int64_t until = tu_now_ms() + 100;
    while (tu_now_ms() < until) {
        ck_assert_uint_eq(bstats(b).batches, 0);
        tu_poll_pause();
    }
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_value(f, 7);
    wp_future_release(f);
    ck_assert_int_eq(wp_batcher_shutdown(b, INT64_MAX), 0);
    finish(b, p);
}

/* The pool shut down under a batcher: submits answer WP_ESHUTDOWN, and an
   item still pending settles cancelled, as the pool's own queued tasks. */
WP_TEST_BOTH(pool_shut_down_first)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 1 });
    wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ .max_wait_ms = LONG_WAIT_MS });
    wp_future *pending = submit(b, OP_VALUE, 1);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    bitem it = { OP_VALUE, 2 };
    wp_future *f = (wp_future *)&f;
    ck_assert_int_eq(wp_batcher_submit(b, &it, sizeof it, &f), WP_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    expect_outcome(pending, WP_CANCELLED, WP_ECANCELED);
    wp_future_release(pending);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

/* --------------------------------------------------- many submitters */

enum { SUBMITTERS = 8, PER_SUBMITTER = 2000 };

/* Item i of thread t: the value t * PER_SUBMITTER + i. */
static int submit_value(void *b, unsigned t, unsigned i, wp_future **out)
{
    bitem it = { OP_VALUE, (int32_t)(t * PER_SUBMITTER + i) };
    return wp_batcher_submit(b, &it, sizeof it, out);
}

static bool got_value(void *b, unsigned t, unsigned i, wp_future *f)
{
    (void)b;
    size_t len;
    const void *p = wp_future_result(f, &len);
    bresult r;
    if (p == NULL || len != sizeof r)
        return false;
    memcpy(&r, p, sizeof r);
    return r.value == (int32_t)(t * PER_SUBMITTER + i) && r.f == f_of(r.value);
}

WP_TEST_BOTH(many_submitting_threads)
{
    wp_pool *p = probed_pool((wp_pool_options){ .workers = 2 });
    wp_batcher *b = make_batcher(p, bt_apply, (wp_batcher_options){ 0 });
    tu_run_crowd(&(tu_crowd){ .threads = SUBMITTERS, .per_thread = PER_SUBMITTER,
                              .submit = submit_value, .ok = got_value, .ctx = b });
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    wp_batcher_stats st = bstats(b);
    ck_assert_uint_eq(st.items, SUBMITTERS * PER_SUBMITTER);
    ck_assert_uint_eq(st.items_batched, SUBMITTERS * PER_SUBMITTER);
    ck_assert_uint_ge(st.batches, SUBMITTERS * PER_SUBMITTER / 64);
    ck_assert(st.mean_batch_size > 0.0 && st.mean_batch_size <= 64.0);
    ck_assert(st.mean_wait_us >= 0.0 && st.mean_wait_us <= (double)st.wait_us_max);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    /* The pool counts a batch task as settled after its done-callback has
       settled the items: read its stats once it has stopped. */
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    tu_assert_stats(tu_pool_stats(p), .submitted = TU_EQ(st.batches),
                    .succeeded = TU_EQ(st.batches));
    finish(b, p);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "batcher", .timeout_s = 120 };
    const tu_test tests[] = {
        TU_TEST(bad_arguments),
        TU_TEST(create_on_shut_down_pool),
        TU_TEST(size_trigger),
        TU_TEST(time_trigger_from_first_item),
        TU_TEST(time_trigger_under_trickle),
        TU_TEST(flush_sends_partial_batch),
        TU_TEST(batch_sees_items_in_order),
        TU_TEST(per_item_results),
        TU_TEST(per_item_failure),
        TU_TEST(whole_batch_failure),
        TU_TEST(whole_batch_failure_any_code),
        TU_TEST(crashing_batch),
        TU_TEST(batch_timeout),
        TU_TEST(batch_retries),
        TU_TEST(item_result_too_big),
        TU_TEST(batches_split_by_message_size),
        TU_TEST(max_in_flight_one),
        TU_TEST(cancel_pending_item),
        TU_TEST(cancel_sent_item_is_busy),
        TU_TEST(backpressure),
        TU_TEST(graceful_shutdown),
        TU_TEST(forced_shutdown),
        TU_TEST(shutdown_with_grace),
        TU_TEST(shutdown_past_grace_does_not_spin),
        TU_TEST(shutdown_idempotent_and_shortened),
        TU_TEST(submit_after_shutdown),
        TU_TEST(destroy_settles_items),
        TU_TEST(shutdown_from_done_callback),
        TU_TEST(submit_from_item_callback_full),
        TU_TEST(destroy_races_shutdown),
        TU_TEST(huge_max_wait),
        TU_TEST(pool_shut_down_first),
        TU_TEST(many_submitting_threads),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
