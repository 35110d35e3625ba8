/* SPDX-License-Identifier: MIT */
/*
 * check_batcher.c — the batcher's public behaviour (include/workerpool.h, "Batcher";
 * docs/ARCHITECTURE.md):
 * argument checks, the three reasons a batch leaves (size, the first item's
 * wait, flush/shutdown), what the batch function sees and how its results
 * and failures reach the item futures, crashes and timeouts of a batch,
 * max_in_flight, cancelling items, backpressure, the three kinds of
 * shutdown, many submitting threads, and the stats.
 *
 * Every test runs under WP_START_FORKSERVER and WP_START_FORK (WP_TEST_BOTH;
 * not WP_START_EXEC: the probes are memory shared with workers through fork;
 * check_exec.c runs the batcher under WP_START_EXEC).  No test sleeps to let things happen: it waits on futures,
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
 *
 * This file holds what the suite's files share (check_batcher.h: the
 * probe, the batch functions, the helpers) and its main; the tests are in
 * one file per concern, run in this order:
 *   check_batcher_batches.c   arguments, when a batch leaves, what it sees;
 *   check_batcher_failures.c  a batch's failures, crashes and timeouts;
 *   check_batcher_flow.c      max_in_flight, cancelling items, backpressure;
 *   check_batcher_shutdown.c  the kinds of shutdown, and destroy;
 *   check_batcher_edges.c     calls from its own callbacks, races, extremes,
 *                             many submitting threads;
 *   check_batcher_isolate.c   isolate: poison items split out of their batch;
 *   check_batcher_isolate_cancel.c  cancelling items and shutting down while
 *                             a batch is split.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check_batcher.h"

/* ------------------------------------------------------- the shared probe */

probe *pr;

void probe_map(void)
{
    if (pr == NULL) {
        void *m = mmap(NULL, sizeof *pr, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(m, MAP_FAILED);
        pr = m;
    }
    memset(pr, 0, sizeof *pr);
}

bool probe_saw(int32_t value)
{
    int n = atomic_load(&pr->nseen);
    for (int i = 0; i < n && i < PROBE_SEEN; i++)
        if (pr->seen[i] == value)
            return true;
    return false;
}

/* ------------------------------------------------------- batch functions */

int64_t f_of(int32_t v)
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
int bt_apply(const wp_item *items, size_t n, wp_buf *const *results)
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
int bt_describe(const wp_item *items, size_t n, wp_buf *const *results)
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
wp_pool *probed_pool(wp_pool_options o)
{
    probe_map();
    return tu_make_pool(o);
}

wp_batcher *make_batcher(wp_pool *p, wp_batch_fn fn, wp_batcher_options o)
{
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, fn, &o), 0);
    ck_assert_ptr_nonnull(b);
    return b;
}

wp_batcher_stats bstats(wp_batcher *b)
{
    wp_batcher_stats s;
    ck_assert_int_eq(wp_batcher_get_stats(b, &s), 0);
    return s;
}

wp_future *submit(wp_batcher *b, int32_t op, int32_t value)
{
    bitem it = { op, value };
    wp_future *f = NULL;
    ck_assert_int_eq(wp_batcher_submit(b, &it, sizeof it, &f), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Wait for f and check it succeeded with the bresult of value; returns the
   result so a test can look at its place in the batch. */
bresult expect_value(wp_future *f, int32_t value)
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
void expect_outcome(wp_future *f, int state, int error)
{
    tu_wait_settled(f);
    ck_assert_msg(wp_future_error(f) == error, "outcome %s (%s), expected %s",
                  wp_strerror(wp_future_error(f)), wp_future_message(f), wp_strerror(error));
    ck_assert_int_eq(wp_future_state(f), state);
    ck_assert_ptr_null(wp_future_result(f, NULL));
}

void release_all(wp_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wp_future_release(fs[i]);
}

/* Shut down (all batches finish), check nothing is left pending or in
   flight, destroy both. */
void finish(wp_batcher *b, wp_pool *p)
{
    ck_assert_int_eq(wp_batcher_shutdown(b, -1), 0);
    wp_batcher_stats s = bstats(b);
    ck_assert_uint_eq(s.pending, 0);
    ck_assert_uint_eq(s.in_flight, 0);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

/* ------------------------------------------------- a full batcher */

/* A batcher of bt_apply on p that is full: the one batch it may have in
   flight is held at the gate (*held, item value 0), and MAX_PENDING items
   wait behind it (fs, values 1 ..), submitted with WP_TASK_NOWAIT. */
wp_batcher *full_batcher(wp_pool *p, wp_future **held, wp_future *fs[MAX_PENDING])
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

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        batcher_add_batches_tests, batcher_add_failures_tests, batcher_add_flow_tests,
        batcher_add_shutdown_tests, batcher_add_edges_tests, batcher_add_isolate_tests,
        batcher_add_isolate_cancel_tests,
    };
    const tu_suite suite = { .name = "batcher", .timeout_s = 120, .fork_only = true };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
