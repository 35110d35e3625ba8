/* SPDX-License-Identifier: MIT */
/*
 * submit_many — many tiny tasks in one call, results in the order they
 * come: wp_submit_many queues a thousand items (each its own task and
 * future; the pool carries them to workers together, so there is no chunk
 * size to tune), and a completion queue (wp_cq_*) hands back each future
 * as it settles, exactly once, in O(1) each.
 *
 * The completion queue holds a reference of its own to every future
 * added, so the submitter releases its references right away; wp_cq_next
 * passes the queue's reference to the caller and answers WP_EAGAIN once
 * every added future has been delivered.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <workerpool.h>

#define ITEMS 1000

/* Runs in a worker: the square of one uint32_t. */
static int square(const void *arg, size_t len, wp_buf *result)
{
    uint32_t x;
    if (len != sizeof x)
        return wp_buf_fail(result, 1, "bad argument");
    memcpy(&x, arg, sizeof x);
    uint64_t sq = (uint64_t)x * x;
    return wp_buf_append(result, &sq, sizeof sq);
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
    wp_cq *cq;
    rc = wp_cq_create(&cq);
    if (rc != 0) {
        fprintf(stderr, "wp_cq_create: %s\n", wp_strerror(rc));
        wp_pool_destroy(pool);
        return EXIT_FAILURE;
    }

    static uint32_t values[ITEMS];
    static wp_item items[ITEMS];
    static wp_future *fs[ITEMS];
    uint64_t expected = 0;
    for (uint32_t i = 0; i < ITEMS; i++) {
        values[i] = i;
        items[i] = (wp_item){ &values[i], sizeof values[i] };  /* copied by the call */
        expected += (uint64_t)i * i;
    }
    size_t queued;
    int ok = 1;
    rc = wp_submit_many(pool, square, items, ITEMS, NULL, fs, &queued);
    if (rc != 0) {  /* items [0, queued) are queued all the same */
        fprintf(stderr, "wp_submit_many: %s after %zu items\n", wp_strerror(rc), queued);
        ok = 0;
    }
    for (size_t i = 0; i < queued; i++) {
        rc = wp_cq_add(cq, fs[i]);
        if (rc != 0) {
            fprintf(stderr, "wp_cq_add: %s\n", wp_strerror(rc));
            ok = 0;
        }
        wp_future_release(fs[i]);       /* the cq holds its own reference */
    }

    uint64_t sum = 0;
    size_t delivered = 0;
    wp_future *f;
    while ((rc = wp_cq_next(cq, -1, &f)) == 0) {   /* in settle order */
        size_t len;
        const uint64_t *sq = wp_future_result(f, &len);
        if (sq != NULL && len == sizeof *sq) {
            sum += *sq;
        } else {
            fprintf(stderr, "a task failed: %s\n", wp_future_message(f));
            ok = 0;
        }
        wp_future_release(f);
        delivered++;
    }
    if (rc != WP_EAGAIN) {  /* WP_EAGAIN: every added future was delivered */
        fprintf(stderr, "wp_cq_next: %s\n", wp_strerror(rc));
        ok = 0;
    }
    wp_cq_destroy(cq);
    wp_pool_destroy(pool);

    printf("%zu results, sum of squares %" PRIu64 " (expected %" PRIu64 ")\n", delivered,
           sum, expected);
    return ok && delivered == ITEMS && sum == expected ? EXIT_SUCCESS : EXIT_FAILURE;
}
