/* SPDX-License-Identifier: MIT */
/*
 * check_batcher.h — what the files of the batcher suite share: the probe
 * batch functions report through, the items and results of bt_apply, the
 * helpers check_batcher.c defines (it says how the suite's tests work), and
 * the function each test file adds its tests with.
 */
#ifndef WP_CHECK_BATCHER_H
#define WP_CHECK_BATCHER_H

#include <stdatomic.h>

#include "testutil.h"

#define LONG_WAIT_MS 60000 /* a max_wait_ms no test ever reaches */

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

/* The probe, in memory every worker shares (mapped by probed_pool). */
extern probe *pr;
/* Map the probe (once) and clear it. */
void probe_map(void);
/* Did any batch function see an item of this value? */
bool probe_saw(int32_t value);

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

/* The f a bresult carries: f(value). */
int64_t f_of(int32_t v);
/* Runs in a worker: each item is a bitem; see the OP_* above. */
int bt_apply(const wp_item *items, size_t n, wp_buf *const *results);
/* Runs in a worker: result i = { uint32 i, uint32 n } then item i's bytes. */
int bt_describe(const wp_item *items, size_t n, wp_buf *const *results);

/* ----------------------------------------------------------------- helpers */

/* The test's pool (tu_make_pool), once the probe is mapped and cleared. */
wp_pool *probed_pool(wp_pool_options o);
wp_batcher *make_batcher(wp_pool *p, wp_batch_fn fn, wp_batcher_options o);
/* The batcher's stats; fails the test if they cannot be read. */
wp_batcher_stats bstats(wp_batcher *b);
/* Submit the bitem { op, value }; fails the test if the submit does. */
wp_future *submit(wp_batcher *b, int32_t op, int32_t value);
/* Wait for f and check it succeeded with the bresult of value; returns the
   result so a test can look at its place in the batch. */
bresult expect_value(wp_future *f, int32_t value);
/* Wait for f and check it settled with this outcome. */
void expect_outcome(wp_future *f, int state, int error);
void release_all(wp_future **fs, size_t n);
/* Shut down (all batches finish), check nothing is left pending or in
   flight, destroy both. */
void finish(wp_batcher *b, wp_pool *p);

enum { MAX_PENDING = 4 };
/* A batcher of bt_apply on p that is full: the one batch it may have in
   flight is held at the gate (*held, item value 0), and MAX_PENDING items
   wait behind it (fs, values 1 ..), submitted with WP_TASK_NOWAIT. */
wp_batcher *full_batcher(wp_pool *p, wp_future **held, wp_future *fs[MAX_PENDING]);

/* ------------------------------ isolation (check_batcher_isolate.c defines) */

/* The batch of the issue: one poison item in 64. */
enum { ISOLATE_BATCH = 64 };
/* True where a test whose workers die under isolation cannot run: under
   ASan with WP_START_FORK (check_batcher_isolate.c says why). */
bool fork_unsafe(void);
/* Options of an isolating batcher whose batches leave when full. */
wp_batcher_options isolating(size_t batch);
/* On p, an isolating batcher of bt_apply (batches of two, one in flight,
   its tasks' flags task_flags) whose first batch, fs = { OP_GATE 0,
   OP_SEGV1 1 }, the batch function holds at the gate: once it opens, that
   batch dies of SIGSEGV, and the same items run again do not. */
wp_batcher *gated_pair(wp_pool *p, unsigned task_flags, wp_future *fs[2]);
/* Wait for f and check it failed alone with this death (text: part of its
   message, or NULL). */
void expect_death(wp_future *f, int error, int code, const char *text);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn batcher_add_batches_tests, batcher_add_failures_tests, batcher_add_flow_tests,
           batcher_add_shutdown_tests, batcher_add_edges_tests, batcher_add_isolate_tests,
           batcher_add_isolate_cancel_tests;

#endif
