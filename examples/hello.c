/* SPDX-License-Identifier: MIT */
/*
 * hello — the smallest complete use of workerpool: create a pool, submit
 * one task, wait for its future, read the result, clean up.
 *
 * The task runs in a worker process: it gets a private copy of the
 * argument bytes and appends its result with wp_buf_append().  Every call
 * that can fail returns 0 or a negative WP_E* code, which wp_strerror()
 * names.
 *
 * Build: cc -o hello hello.c $(pkg-config --cflags --libs workerpool)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <workerpool.h>

#define GREETING "hello, world"
#define EXPECTED "HELLO, WORLD"

/* Runs in a worker: the argument in upper case (ASCII letters only). */
static int shout(const void *arg, size_t len, wp_buf *result)
{
    const char *in = arg;
    char out[64];

    if (len > sizeof out)
        return wp_buf_fail(result, 1, "argument too long");
    for (size_t i = 0; i < len; i++)
        out[i] = in[i] >= 'a' && in[i] <= 'z' ? (char)(in[i] - 'a' + 'A') : in[i];
    return wp_buf_append(result, out, len); /* 0, or the task fails */
}

int main(void)
{
    /* Create pools first, before the program starts threads of its own. */
    wp_pool_options opts = { .workers = 1 };   /* zero fields: the defaults */
    wp_pool *pool;
    int rc = wp_pool_create(&pool, &opts);
    if (rc != 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return EXIT_FAILURE;
    }

    wp_future *f;
    rc = wp_submit(pool, shout, GREETING, strlen(GREETING), NULL, &f);
    if (rc != 0) {
        fprintf(stderr, "wp_submit: %s\n", wp_strerror(rc));
        wp_pool_destroy(pool);
        return EXIT_FAILURE;
    }

    int status = EXIT_FAILURE;
    rc = wp_future_wait(f, -1);                /* -1: no time limit */
    if (rc != 0) {
        fprintf(stderr, "wp_future_wait: %s\n", wp_strerror(rc));
    } else if (wp_future_error(f) != 0) {      /* settled, but not a success */
        fprintf(stderr, "task failed: %s: %s\n", wp_strerror(wp_future_error(f)),
                wp_future_message(f));
    } else {
        size_t n;
        const char *r = wp_future_result(f, &n); /* owned by the future */
        printf("%.*s\n", (int)n, r);
        if (n == strlen(EXPECTED) && memcmp(r, EXPECTED, n) == 0)
            status = EXIT_SUCCESS;
        else
            fprintf(stderr, "unexpected result\n");
    }
    wp_future_release(f);                      /* r is invalid from here on */

    wp_pool_destroy(pool);                     /* waits for tasks, reaps workers */
    return status;
}
