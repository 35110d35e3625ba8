/* SPDX-License-Identifier: MIT */
/*
 * check_worker.c — the worker's side of lib/: which function pointers it
 * agrees to call.  A function is callable when it is code of an object in
 * the worker's own image: a library the owner loads after the worker's
 * image was forked is not (WP_ENOFUNC under the fork server, and in fork
 * workers that predate the dlopen), one loaded before is, and neither is a
 * pointer into data.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifndef TULATE_PATH
#error "TULATE_PATH: the path of tests/.libs/libtulate.so"
#endif

/* The test library, and its task function. */
typedef struct tulate {
    void      *handle;
    wp_task_fn triple;
} tulate;

static tulate tulate_open(void)
{
    tulate t;
    t.handle = dlopen(TULATE_PATH, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(t.handle != NULL, "dlopen: %s", dlerror());
    void *sym = dlsym(t.handle, "tulate_triple");
    ck_assert_ptr_nonnull(sym);
    memcpy(&t.triple, &sym, sizeof t.triple); /* POSIX: dlsym's object pointer is the function */
    return t;
}

/* Run fn on 14: 0 and the result checked if it ran, else the error. */
static int run_triple(wp_pool *p, wp_task_fn fn)
{
    int arg = 14;
    wp_future *f = tu_run(p, fn, &arg, sizeof arg, NULL);
    int err = wp_future_error(f);
    if (err == 0) {
        size_t len;
        const void *res = wp_future_result(f, &len);
        int v;
        ck_assert_uint_eq(len, sizeof v);
        memcpy(&v, res, sizeof v);
        ck_assert_int_eq(v, 3 * arg);
    } else if (err == WP_ENOFUNC) {
        ck_assert_ptr_nonnull(strstr(wp_future_message(f), "not in the worker's image"));
    }
    wp_future_release(f);
    return err;
}

/* Loaded after the pool was created: not in a worker forked before, nor in
   any the fork server forks; a fork worker forked after it has it. */
WP_TEST_BOTH(loaded_after_the_pool)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = 1 });
    tulate t = tulate_open();
    ck_assert_int_eq(run_triple(p, t.triple), WP_ENOFUNC);
    /* That worker has done its one task; its replacement starts now. */
    tu_wait_workers(p, 1, 2);
    ck_assert_int_eq(run_triple(p, t.triple), tu_method == WP_START_FORK ? 0 : WP_ENOFUNC);
    wp_pool_destroy(p);
    dlclose(t.handle);
}

/* Loaded before: every worker has it. */
WP_TEST_BOTH(loaded_before_the_pool)
{
    tulate t = tulate_open();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = 1 });
    ck_assert_int_eq(run_triple(p, t.triple), 0);
    tu_wait_workers(p, 1, 2);
    ck_assert_int_eq(run_triple(p, t.triple), 0);
    wp_pool_destroy(p);
    dlclose(t.handle);
}

static const unsigned char not_code[64] = { 0xC3 }; /* read-only data, whatever its bytes */

/* Pointers into data are refused before the worker jumps there. */
WP_TEST_BOTH(data_is_not_code)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    void *heap = malloc(64);
    ck_assert_ptr_nonnull(heap);
    const void *places[] = { not_code, heap, &p };
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        wp_task_fn fn;
        memcpy(&fn, &places[i], sizeof fn);
        wp_future *f = tu_run(p, fn, NULL, 0, NULL);
        ck_assert_msg(wp_future_error(f) == WP_ENOFUNC, "place %zu: %s (%s)", i,
                      wp_strerror(wp_future_error(f)), wp_future_message(f));
        wp_future_release(f);
    }
    free(heap);
    /* The worker is still there, and real code still runs. */
    wp_future *f = tu_run(p, tu_echo, "ok", 2, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    ck_assert_uint_eq(tu_pool_stats(p).workers_started, 1);
    wp_pool_destroy(p);
}

int main(void)
{
    const tu_suite suite = { .name = "worker", .timeout_s = 60 };
    const tu_test tests[] = {
        TU_TEST(loaded_after_the_pool),
        TU_TEST(loaded_before_the_pool),
        TU_TEST(data_is_not_code),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
