/* SPDX-License-Identifier: MIT */
/*
 * deadline_cancel — the three ways a task ends without a result, and how
 * to read each outcome: a deadline (timeout_ms) that kills a stuck task,
 * wp_future_cancel() on a task nobody wants any more, and a task that
 * reports its own failure with a code and a message.
 *
 * wp_future_error() gives the outcome (WP_ETIMEDOUT, WP_ECANCELED,
 * WP_ETASK, ...), wp_future_code() the task's own code (or the signal that
 * killed its worker), wp_future_message() an explanation for people.
 * Note the two meanings of WP_ETIMEDOUT: from wp_future_wait() it says
 * only that this wait ran out; as an outcome, the task ran past its
 * deadline.
 */
#define _POSIX_C_SOURCE 200809L /* pause() */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <workerpool.h>

#define DEADLINE_MS   100  /* run-time limit of the stuck task */
#define LOOK_MS       20   /* how long we wait before giving up on the other */
#define BAD_INPUT     42   /* the failing task's own code */

/* Runs in a worker and never returns: only a kill ends it. */
static int stuck(const void *arg, size_t len, wp_buf *result)
{
    (void)arg;
    (void)len;
    (void)result;
    for (;;)
        pause();    /* workers catch no signal: it never returns */
    return 0;       /* not reached */
}

/* Runs in a worker and fails on purpose, saying why. */
static int refuse(const void *arg, size_t len, wp_buf *result)
{
    (void)arg;
    (void)len;
    return wp_buf_fail(result, BAD_INPUT, "input rejected");
}

/* Print how the settled future f ended; 1 if that is what we expect. */
static int check(const char *what, const wp_future *f, int state, int error)
{
    printf("%-9s outcome \"%s\", code %d, message \"%s\"\n", what,
           wp_strerror(wp_future_error(f)), wp_future_code(f), wp_future_message(f));
    return wp_future_state(f) == state && wp_future_error(f) == error;
}

int main(void)
{
    wp_pool_options opts = { .workers = 2 };
    wp_pool *pool;
    int rc = wp_pool_create(&pool, &opts);
    if (rc != 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return EXIT_FAILURE;
    }

    wp_task_options deadline = { .timeout_ms = DEADLINE_MS };
    wp_future *late = NULL, *unwanted = NULL, *failed = NULL;
    rc = wp_submit(pool, stuck, NULL, 0, &deadline, &late);
    if (rc == 0)
        rc = wp_submit(pool, stuck, NULL, 0, NULL, &unwanted); /* no deadline */
    if (rc == 0)
        rc = wp_submit(pool, refuse, NULL, 0, NULL, &failed);
    if (rc != 0) {
        fprintf(stderr, "wp_submit: %s\n", wp_strerror(rc));
        wp_pool_shutdown(pool, 0);  /* grace 0: cancel what is queued or running */
        wp_pool_destroy(pool);
        wp_future_release(late);    /* NULL is allowed */
        wp_future_release(unwanted);
        return EXIT_FAILURE;
    }

    int ok = 1;
    /* A bounded wait that runs out is not the task's outcome. */
    if (wp_future_wait(unwanted, LOOK_MS) != WP_ETIMEDOUT) {
        fprintf(stderr, "a task that never returns has settled\n");
        ok = 0;
    }
    /* Queued: it never runs; running: its worker is killed.  0 means it
       will settle as cancelled, promptly. */
    rc = wp_future_cancel(unwanted);
    if (rc != 0) {
        fprintf(stderr, "wp_future_cancel: %s\n", wp_strerror(rc));
        ok = 0;
    }

    wp_future *all[] = { late, unwanted, failed };
    rc = wp_wait_all(all, sizeof all / sizeof all[0], -1);
    if (rc != 0) {
        fprintf(stderr, "wp_wait_all: %s\n", wp_strerror(rc));
        ok = 0;
    }
    ok &= check("deadline", late, WP_FAILED, WP_ETIMEDOUT);
    ok &= check("cancelled", unwanted, WP_CANCELLED, WP_ECANCELED);
    ok &= check("failed", failed, WP_FAILED, WP_ETASK);
    ok &= wp_future_code(failed) == BAD_INPUT;

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        wp_future_release(all[i]);
    wp_pool_shutdown(pool, 0);      /* nothing is left to cancel, unless a call failed */
    wp_pool_destroy(pool);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
