/* SPDX-License-Identifier: MIT */
/*
 * future.h — the settle-once result of a task (the futures section of
 * include/workerpool.h; locks: docs/ARCHITECTURE.md, "Threads and locks").
 *
 * A future is embedded in its owner's record (a pool task, a batcher item):
 * the owner supplies how to cancel it and how to free the record when the
 * last reference goes.  Every state change happens under the future's mutex;
 * settling broadcasts its condition variable, wakes wp_wait_any() waiters and
 * runs the done-callbacks outside the lock, on the settling thread.
 */
#ifndef WP_FUTURE_H
#define WP_FUTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "list.h"
#include "util.h"

typedef struct future_ops {
    /* Called under f->mu while f is unsettled and no cancel was requested
       yet: 0 (it will settle cancelled), WP_EBUSY or WP_EINVAL. */
    int  (*cancel)(wp_future *f);
    /* Frees the record the future is embedded in (after the last release). */
    void (*free)(wp_future *f);
    /* Optional: told the final state and error under f->mu just before the
       outcome is published, so counts are right by the time anyone wakes. */
    void (*settling)(wp_future *f, int state, int error);
} future_ops;

struct wp_future {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    atomic_int      refs;
    atomic_int      state;      /* WP_PENDING ... WP_CANCELLED */
    bool            cancel_requested;
    int             error;      /* outcome, once settled */
    int             code;
    char           *message;
    void           *result;
    size_t          result_len;
    wp_list         callbacks;  /* done-callbacks to run, in registration order */
    wp_list         waiters;    /* links of wp_wait_any / wp_wait_all callers */
    const future_ops *ops;
};

/* One reference, held by the caller of init.  0, or WP_ENOMEM (its lock
   could not be made: nothing to release). */
int  wp__future_init(wp_future *f, const future_ops *ops) WP_INTERNAL;

static inline bool wp__future_is_settled(int state)
{
    return state >= WP_SUCCEEDED;
}

/* PENDING -> RUNNING; false (and no change) if it was cancelled. */
bool wp__future_start(wp_future *f) WP_INTERNAL;
/* RUNNING -> PENDING, for a retry; false if it was cancelled. */
bool wp__future_requeue(wp_future *f) WP_INTERNAL;

/* Settle once.  error 0 = succeeded with result (ownership taken, may be
   NULL); WP_ECANCELED = cancelled; anything else = failed with code and
   message (copied; NULL = ""). A cancel request turns any outcome into
   WP_ECANCELED.  Returns the state it settled in, or WP_EINVAL if it had
   already settled (result is then freed), as wp_future_cancel says of a
   settled future. */
int  wp__future_settle(wp_future *f, int error, int code, const char *message,
                       void *result, size_t result_len) WP_INTERNAL;

#endif
