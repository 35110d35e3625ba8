/* SPDX-License-Identifier: MIT */
/*
 * consumer.c — a program built the way a user builds one against an
 * installed workerpool (pkg-config, CMake, or fully static), run by
 * tests/install/check-installed.sh: it runs tasks in workers under both
 * start methods and checks that the library it runs against is the one its
 * header describes.  Exits 0 when all is well.
 */
#include <stdio.h>
#include <string.h>

#include <workerpool.h>

enum { TASKS = 16 };

static int triple(const void *arg, size_t len, wp_buf *out)
{
    int v = 0;
    if (len != sizeof v)
        return wp_buf_fail(out, 1, "expected an int");
    memcpy(&v, arg, sizeof v);
    v *= 3;
    return wp_buf_append(out, &v, sizeof v);
}

static int run(int method)
{
    wp_pool_options o = { .workers = 2, .start_method = method };
    wp_pool *pool;
    int rc = wp_pool_create(&pool, &o);
    if (rc < 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return 1;
    }
    wp_future *f[TASKS];
    int bad = 0;
    for (int i = 0; i < TASKS; i++)
        if ((rc = wp_submit(pool, triple, &i, sizeof i, NULL, &f[i])) < 0) {
            fprintf(stderr, "wp_submit: %s\n", wp_strerror(rc));
            f[i] = NULL;
            bad++;
        }
    for (int i = 0; i < TASKS; i++) {
        if (f[i] == NULL)
            continue;
        size_t len = 0;
        const void *res = wp_future_wait(f[i], -1) == 0 ? wp_future_result(f[i], &len) : NULL;
        int v = -1;
        if (res != NULL && len == sizeof v)
            memcpy(&v, res, sizeof v);
        if (v != 3 * i) {
            fprintf(stderr, "task %d: %s\n", i, wp_strerror(wp_future_error(f[i])));
            bad++;
        }
        wp_future_release(f[i]);
    }
    wp_pool_destroy(pool);
    return bad;
}

int main(void)
{
    if (wp_version() != WP_VERSION_HEX) {
        fprintf(stderr, "library %s (0x%06x), header 0x%06x\n", wp_version_string(),
                wp_version(), (unsigned)WP_VERSION_HEX);
        return 1;
    }
    int bad = run(WP_START_FORKSERVER) + run(WP_START_FORK);
    printf("workerpool %s: %s\n", wp_version_string(), bad ? "FAILED" : "tasks ran");
    return bad ? 1 : 0;
}
