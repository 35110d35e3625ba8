/* SPDX-License-Identifier: MIT */
/*
 * wait_any — take results in the order tasks finish, and stop early: the
 * search for a factor of N is split into chunks, one task each; wp_wait_any
 * hands back whichever has settled, and once one chunk has found the
 * factor the chunks still queued or running are cancelled.
 *
 * wp_wait_any returns the lowest index among the settled futures, and a
 * settled future stays settled, so each handled future is dropped from
 * the array (the last one moves into its place) before the next wait.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <workerpool.h>

#define P        UINT64_C(1000003)   /* N's smallest prime factor */
#define Q        UINT64_C(4000037)   /* and its other one */
#define CHUNKS   8
#define CHUNK    UINT64_C(250000)    /* candidates per task: [2, 2,000,000) in all */

struct range {
    uint64_t n, lo, hi;
};

/* Runs in a worker: the smallest divisor of n in [lo, hi) as the result,
   or an empty result if there is none. */
static int find_divisor(const void *arg, size_t len, wp_buf *result)
{
    const struct range *r = arg;   /* argument bytes are aligned for any type */
    if (len != sizeof *r)
        return wp_buf_fail(result, 1, "bad range");
    for (uint64_t d = r->lo < 2 ? 2 : r->lo; d < r->hi; d++)
        if (r->n % d == 0)
            return wp_buf_append(result, &d, sizeof d);
    return 0;
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

    wp_future *fs[CHUNKS];
    size_t live = 0;
    for (uint64_t c = 0; c < CHUNKS; c++) {
        struct range r = { P * Q, c * CHUNK, (c + 1) * CHUNK };
        rc = wp_submit(pool, find_divisor, &r, sizeof r, NULL, &fs[live]);
        if (rc != 0) {
            fprintf(stderr, "wp_submit: %s\n", wp_strerror(rc));
            break;
        }
        live++;
    }

    uint64_t found = 0;
    int ok = rc == 0;
    size_t handled = 0;
    while (live > 0 && found == 0) {
        size_t i;
        rc = wp_wait_any(fs, live, -1, &i);
        if (rc != 0) {
            fprintf(stderr, "wp_wait_any: %s\n", wp_strerror(rc));
            ok = 0;
            break;
        }
        size_t len;
        const void *d = wp_future_result(fs[i], &len);
        if (d == NULL) {
            fprintf(stderr, "a chunk failed: %s\n", wp_future_message(fs[i]));
            ok = 0;
        } else if (len == sizeof found) {
            found = *(const uint64_t *)d;   /* aligned for any type */
        }
        wp_future_release(fs[i]);
        fs[i] = fs[--live];                 /* drop it from the set */
        handled++;
    }

    /* The rest are not needed: a queued task never runs, a running one has
       its worker killed.  WP_EINVAL: it had settled meanwhile. */
    for (size_t i = 0; i < live; i++)
        wp_future_cancel(fs[i]);
    if (live > 0 && (rc = wp_wait_all(fs, live, -1)) != 0) {
        fprintf(stderr, "wp_wait_all: %s\n", wp_strerror(rc));
        ok = 0;
    }
    size_t cancelled = 0;
    for (size_t i = 0; i < live; i++) {
        cancelled += wp_future_error(fs[i]) == WP_ECANCELED;
        wp_future_release(fs[i]);
    }
    wp_pool_destroy(pool);

    printf("%" PRIu64 " = %" PRIu64 " x %" PRIu64 ": found after %zu of %d chunks, "
           "%zu cancelled\n", P * Q, found, found ? P * Q / found : 0, handled, CHUNKS,
           cancelled);
    return ok && found == P ? EXIT_SUCCESS : EXIT_FAILURE;
}
