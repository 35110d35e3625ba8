/* SPDX-License-Identifier: MIT */
/*
 * check_future.h — what the files of the future suite share: the test
 * record futures are embedded in and the helpers check_future.c defines (it
 * says how the suite's tests work), and each file's part of the table.
 */
#ifndef WP_CHECK_FUTURE_H
#define WP_CHECK_FUTURE_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <stdatomic.h>

#include "future.h"
#include "testutil.h"

/* A future embedded in a record with its own future_ops (rec_ops): a
   configurable cancel answer, a free that counts in g_frees. */
typedef struct rec {
    wp_future  f;            /* first member: (rec *)f is the record */
    int        cancel_rc;    /* what ops->cancel answers */
    atomic_int cancel_calls;
} rec;

/* Records freed so far (reset before every test). */
extern atomic_int g_frees;
/* rec_ops' cancel (counts, answers cancel_rc) and free (counts, frees). */
int  rec_cancel(wp_future *f);
void rec_free(wp_future *f);
/* A new record whose cancel answers cancel_rc; new_future: its future,
   answering 0. */
rec       *new_rec(int cancel_rc);
wp_future *new_future(void);
/* A malloc'd copy of s (fails the test if out of memory). */
void *dup_bytes(const char *s);
/* Settle f succeeded with a copy of result (NULL: no result). */
int settle_ok(wp_future *f, const char *result);
/* Until the thread whose id *tid_slot gets is blocked in the kernel. */
void wait_thread_sleeping(atomic_int *tid_slot);

/* The files' own state, cleared before every test (reset_globals). */
void future_settle_reset(void);
void future_callbacks_reset(void);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn future_add_settle_tests, future_add_wait_tests, future_add_callbacks_tests,
           future_add_many_tests, future_add_api_tests;

#endif
