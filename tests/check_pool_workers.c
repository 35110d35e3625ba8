/* SPDX-License-Identifier: MIT */
/*
 * check_pool_workers.c — the workers a pool starts (check_pool.c says how
 * the suite's tests work): they inherit none of the program's descriptors,
 * and the documented maximum of 1024 of them starts and runs tasks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "check_pool.h"

/* ------------------------------------------------------------ descriptors */

WP_TEST_BOTH(workers_inherit_no_descriptors)
{
    /* 20 descriptors without O_CLOEXEC, open while the pool starts. */
    int fds[20];
    for (int i = 0; i < 16; i += 2)
        ck_assert_int_eq(pipe(&fds[i]), 0);
    for (int i = 16; i < 20; i++) {
        fds[i] = open("/dev/null", O_RDWR);
        ck_assert_int_ge(fds[i], 0);
    }
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    enum { N = 8 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(wp_submit(p, tu_count_fds, NULL, 0, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, N, -1), 0);
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        const void *r = wp_future_result(fs[i], &len);
        ck_assert_int_eq(wp_future_error(fs[i]), 0);
        ck_assert_uint_eq(len, sizeof(int));
        int n;
        memcpy(&n, r, sizeof n);
        ck_assert_msg(n == 2, "a worker has %d descriptors open above stderr, not 2", n);
        wp_future_release(fs[i]);
    }
    /* Descriptors opened after the pool started are not seen either. */
    int late[2];
    ck_assert_int_eq(pipe(late), 0);
    wp_future *f = tu_run(p, tu_count_fds, NULL, 0, NULL);
    int n;
    memcpy(&n, wp_future_result(f, NULL), sizeof n);
    ck_assert_int_eq(n, 2);
    wp_future_release(f);
    wp_pool_destroy(p);
    close(late[0]);
    close(late[1]);
    for (int i = 0; i < 20; i++)
        close(fds[i]);
}

/* The documented maximum of 1024 workers starts, and tasks submitted at
   once do not fail on a transient EAGAIN (the fork server's socket fills
   with start requests): they wait and run. */
WP_TEST_BOTH(thousand_workers)
{
    enum { MOST = 1024, EXEC_TSAN = 128, TASKS_PER_WORKER = 2 };
    /* An exec'd worker is a whole new process of this program: under
       ThreadSanitizer each costs about 50 ms and 14 MB of shadow memory to
       start, so 1024 of them would take minutes and most of the machine. */
    const unsigned WORKERS = TU_TSAN && tu_method == WP_START_EXEC ? EXEC_TSAN : MOST;
    const int TASKS = (int)WORKERS * TASKS_PER_WORKER;
    wp_pool *p = NULL;
    ck_assert_int_eq(wp_pool_create(&p, &(wp_pool_options){ .workers = WORKERS,
                                                            .start_method = tu_method }), 0);
    wp_future **fs = calloc((size_t)TASKS, sizeof *fs);
    ck_assert_ptr_nonnull(fs);
    for (int i = 0; i < TASKS; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, TASKS, 120000), 0);
    for (int i = 0; i < TASKS; i++) {
        tu_check_echo(fs[i], &i, sizeof i);
        wp_future_release(fs[i]);
    }
    free(fs);
    tu_wait_workers(p, WORKERS, WORKERS);
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(pool_add_workers_tests,
        TU_TEST(workers_inherit_no_descriptors),
        TU_TEST(thousand_workers))
