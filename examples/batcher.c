/* SPDX-License-Identifier: MIT */
/*
 * batcher — single items in, batches out: a batcher groups the items
 * submitted to it into batches (up to max_batch_size items, or whatever
 * has waited max_wait_ms), runs each batch as one task of the pool, and
 * settles one future per item with that item's own result.
 *
 * The batch function fills results[i] for items[i]; wp_buf_fail on
 * results[i] fails that item alone, while a non-zero return would fail the
 * whole batch.  Item bytes are not aligned: memcpy them out before reading
 * anything wider than a byte.  wp_batcher_flush sends what is waiting
 * without waiting for max_wait_ms; wp_batcher_get_stats shows how well the
 * items were grouped.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <workerpool.h>

#define EMPTY_WORD 1   /* the batch function's code for an empty item */

/* Runs in a worker: the length of each word; an empty word fails alone. */
static int measure_all(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t len = (uint32_t)items[i].len;
        if (len == 0)
            wp_buf_fail(results[i], EMPTY_WORD, "empty word");
        else if (wp_buf_append(results[i], &len, sizeof len) != 0)
            return 2;   /* out of memory: fail the whole batch */
    }
    return 0;
}

int main(void)
{
    static const char *const words[] = { "alpha", "bravo", "charlie", "", "delta", "echo",
                                         "foxtrot", "golf", "hotel", "india", "juliett" };
    enum { WORDS = sizeof words / sizeof words[0] };

    wp_pool_options popts = { .workers = 2 };
    wp_pool *pool;
    int rc = wp_pool_create(&pool, &popts);
    if (rc != 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return EXIT_FAILURE;
    }
    wp_batcher_options bopts = { .max_batch_size = 4 };
    wp_batcher *b;
    rc = wp_batcher_create(&b, pool, measure_all, &bopts);
    if (rc != 0) {
        fprintf(stderr, "wp_batcher_create: %s\n", wp_strerror(rc));
        wp_pool_destroy(pool);
        return EXIT_FAILURE;
    }

    wp_future *fs[WORDS];
    int ok = 1;
    for (size_t i = 0; i < WORDS; i++) {
        rc = wp_batcher_submit(b, words[i], strlen(words[i]), &fs[i]); /* NULL on failure */
        if (rc != 0) {
            fprintf(stderr, "wp_batcher_submit: %s\n", wp_strerror(rc));
            ok = 0;
        }
    }
    rc = wp_batcher_flush(b);   /* no more items: do not wait for max_wait_ms */
    if (rc != 0) {
        fprintf(stderr, "wp_batcher_flush: %s\n", wp_strerror(rc));
        ok = 0;
    }

    for (size_t i = 0; i < WORDS; i++) {
        if (fs[i] == NULL)
            continue;
        wp_future_wait(fs[i], -1);  /* 0 on a valid future: no limit */
        size_t len;
        const uint32_t *r = wp_future_result(fs[i], &len);  /* results are aligned */
        if (r != NULL && len == sizeof *r)
            printf("%-8s %" PRIu32 " letters\n", words[i], *r);
        else
            printf("%-8s failed: %s (code %d)\n", words[i], wp_future_message(fs[i]),
                   wp_future_code(fs[i]));
        if (words[i][0] == '\0')
            ok &= wp_future_error(fs[i]) == WP_ETASK && wp_future_code(fs[i]) == EMPTY_WORD;
        else
            ok &= r != NULL && len == sizeof *r && *r == strlen(words[i]);
        wp_future_release(fs[i]);
    }

    wp_batcher_stats st;
    rc = wp_batcher_get_stats(b, &st);
    if (rc == 0)
        printf("%" PRIu64 " items in %" PRIu64 " batches, %.1f per batch\n",
               st.items_batched, st.batches, st.mean_batch_size);
    ok &= rc == 0 && st.items == WORDS && st.items_batched == WORDS && st.batches >= 1;

    wp_batcher_destroy(b);      /* before the pool it runs on */
    wp_pool_destroy(pool);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
