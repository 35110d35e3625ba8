/* SPDX-License-Identifier: MIT */
/*
 * static_consumer.c — a program linked fully statically (`make check`
 * builds it with -all-static against the library's archive, where the C
 * library allows): its workers must recognise task functions in a static
 * image, under every start method (exec'd ones find them in a fresh static
 * image).  Plain C, no test framework: it exits 0
 * when every task gave the right answer.
 */
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#include "workerpool.h"

enum { WORKERS = 2, TASKS = 8, REFUSED_CODE = 7 };

static int square(const void *arg, size_t len, wp_buf *out)
{
    int v = 0;
    if (len >= sizeof v)
        memcpy(&v, arg, sizeof v);
    v *= v;
    return wp_buf_append(out, &v, sizeof v);
}

static int refuse(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    return wp_buf_fail(out, REFUSED_CODE, "refused");
}

/* No program interpreter: the test means nothing for a dynamic program. */
static int linked_statically(void)
{
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    size_t n = (size_t)getauxval(AT_PHNUM);
    for (size_t i = 0; i < n; i++)
        if (ph[i].p_type == PT_INTERP)
            return 0;
    return ph != NULL && n > 0;
}

/* 0 if every task under this start method settled as it should. */
static int run_method(int method, const char *name)
{
    wp_pool *pool = NULL;
    wp_pool_options o = { .workers = WORKERS, .start_method = method };
    int rc = wp_pool_create(&pool, &o);
    if (rc != 0) {
        fprintf(stderr, "%s: wp_pool_create: %s\n", name, wp_strerror(rc));
        return 1;
    }
    wp_future *f[TASKS + 1] = { NULL };
    int bad = 0;
    for (int i = 0; i < TASKS && !bad; i++)
        bad = wp_submit(pool, square, &i, sizeof i, NULL, &f[i]) != 0;
    bad = bad || wp_submit(pool, refuse, NULL, 0, NULL, &f[TASKS]) != 0;
    bad = bad || wp_wait_all(f, TASKS + 1, -1) != 0;
    for (int i = 0; i < TASKS && !bad; i++) {
        size_t len = 0;
        const void *res = wp_future_result(f[i], &len);
        int v = -1;
        if (res != NULL && len == sizeof v)
            memcpy(&v, res, sizeof v);
        if (v != i * i) {
            fprintf(stderr, "%s: task %d: %s (%s)\n", name, i, wp_strerror(wp_future_error(f[i])),
                    wp_future_message(f[i]));
            bad = 1;
        }
    }
    if (!bad && (wp_future_error(f[TASKS]) != WP_ETASK || wp_future_code(f[TASKS]) != REFUSED_CODE)) {
        fprintf(stderr, "%s: failing task: %s (%s)\n", name, wp_strerror(wp_future_error(f[TASKS])),
                wp_future_message(f[TASKS]));
        bad = 1;
    }
    for (int i = 0; i <= TASKS; i++)
        if (f[i] != NULL)
            wp_future_release(f[i]);
    wp_pool_destroy(pool);
    return bad;
}

int main(void)
{
    if (!linked_statically()) {
        fprintf(stderr, "static_consumer: not a statically linked program\n");
        return 1;
    }
    int bad = run_method(WP_START_FORKSERVER, "fork server");
    bad |= run_method(WP_START_FORK, "fork");
    bad |= run_method(WP_START_EXEC, "exec"); /* a fresh static image: one object, no loader */
    if (bad)
        return 1;
    printf("static consumer: %d tasks under each start method, all right\n", TASKS + 1);
    return 0;
}
