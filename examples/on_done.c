/* SPDX-License-Identifier: MIT */
/*
 * on_done — fire and forget with done-callbacks: each task gets a callback
 * (wp_future_on_done) that stores its result, and the submitter drops its
 * reference at once; the main thread only waits, on its own condition
 * variable, until the last callback has run.
 *
 * A callback runs exactly once, on the pool's dispatcher thread (or at
 * once in the registering thread if the future has already settled).  It
 * must not block: every other future of the pool waits behind it.  Taking
 * a mutex that is only ever held for a few instructions, as here, is fine;
 * waiting on futures, shutting a pool down or submitting without
 * WP_TASK_NOWAIT is not.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <workerpool.h>

#define TASKS 64

struct results {
    pthread_mutex_t mu;
    pthread_cond_t  all_done;
    long            square[TASKS];
    int             done, failed;
};

struct job {
    long             x;
    struct results  *out;   /* where the callback puts the answer */
};

/* Runs in a worker. */
static int square(const void *arg, size_t len, wp_buf *result)
{
    long x;
    if (len != sizeof x)
        return wp_buf_fail(result, 1, "bad argument");
    memcpy(&x, arg, sizeof x);
    x *= x;
    return wp_buf_append(result, &x, sizeof x);
}

/* Runs on the dispatcher thread when the task settles: short, no waits. */
static void store(wp_future *f, void *ctx)
{
    struct job *j = ctx;
    struct results *out = j->out;
    size_t len;
    const long *r = wp_future_result(f, &len);

    pthread_mutex_lock(&out->mu);
    if (r != NULL && len == sizeof *r)
        out->square[j->x] = *r;
    else
        out->failed++;
    if (++out->done == TASKS)
        pthread_cond_signal(&out->all_done);
    pthread_mutex_unlock(&out->mu);
}

int main(void)
{
    wp_pool *pool;
    int rc = wp_pool_create(&pool, NULL);   /* NULL: all defaults */
    if (rc != 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return EXIT_FAILURE;
    }

    static struct results res = { .mu = PTHREAD_MUTEX_INITIALIZER,
                                  .all_done = PTHREAD_COND_INITIALIZER };
    static struct job jobs[TASKS];          /* valid until every callback ran */
    for (long i = 0; i < TASKS; i++) {
        jobs[i] = (struct job){ i, &res };
        wp_future *f;
        rc = wp_submit(pool, square, &jobs[i].x, sizeof jobs[i].x, NULL, &f);
        if (rc == 0) {
            rc = wp_future_on_done(f, store, &jobs[i]);
            wp_future_release(f);           /* the pool keeps its own reference */
        }
        if (rc != 0) {                      /* this one's callback never runs */
            fprintf(stderr, "task %ld: %s\n", i, wp_strerror(rc));
            pthread_mutex_lock(&res.mu);
            res.failed++;
            res.done++;
            pthread_mutex_unlock(&res.mu);
        }
    }

    pthread_mutex_lock(&res.mu);
    while (res.done < TASKS)
        pthread_cond_wait(&res.all_done, &res.mu);
    pthread_mutex_unlock(&res.mu);
    wp_pool_destroy(pool);

    int ok = res.failed == 0;
    for (long i = 0; i < TASKS; i++)
        ok &= res.square[i] == i * i;
    printf("%d tasks done, %d failed; %ld squared is %ld\n", res.done, res.failed,
           (long)TASKS - 1, res.square[TASKS - 1]);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
