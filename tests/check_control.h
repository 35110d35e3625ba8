/* SPDX-License-Identifier: MIT */
/*
 * check_control.h — what the files of the control suite share: the helpers
 * and the task function check_control.c defines (it says how the suite's
 * tests work), and the function each test file adds its tests with.
 */
#ifndef WP_CHECK_CONTROL_H
#define WP_CHECK_CONTROL_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

/* Wait until every future of fs has settled, without allocating (unlike
   wp_wait_all): true if they all did within timeout_ms. */
bool quiet_wait_all(wp_future *const *fs, size_t n, int64_t timeout_ms);
/* The stats, once n tasks have been seen settled (their outcomes counted). */
wp_pool_stats settled_stats(wp_pool *p, uint64_t n);
/* Fails the test unless worker pid exits within TU_DEADLINE_MS. */
void wait_pid_exited(int pid);
/* Submit a tu_report task that reports its pid and then hangs (or sleeps
   ms); returns once it runs in a worker, with that worker's pid. */
wp_future *submit_running(wp_pool *p, tu_fifo *report, int64_t ms,
                          const wp_task_options *o, int *pid);
/* f settled cancelled: WP_ECANCELED, no result. */
void check_cancelled(wp_future *f);
/* Cancel f, a task that has not reached a worker or waits behind another:
   the cancel returns 0 and f settles within TU_PROMPT_MS. */
void cancel_promptly(wp_future *f);
/* Busy-wait for us microseconds: jitter for races, not a wait for events. */
void spin_us(unsigned us);
/* A done-callback adding 1 to the atomic_int ctx points to. */
void count_done(wp_future *f, void *ctx);

/* The size of the file at path (0 if there is none). */
long file_size(const char *path);
/* Append len bytes to path; the file's size afterwards, or -1. */
long file_append(const char *path, const void *data, size_t len);

/*
 * count_task: each run appends one byte to path, then: if the file now
 * holds at least ok_at bytes it succeeds with that count (an int);
 * otherwise it fails (CT_FAIL: wp_buf_fail with code 100 + count), dies
 * of SIGSEGV (CT_SEGV) or hangs (CT_HANG).  So attempt n of a task sees
 * count n.
 */
enum { CT_FAIL, CT_SEGV, CT_HANG };
typedef struct count_arg {
    char path[200];
    int  ok_at;
    int  mode;
} count_arg;
/* A count_task argument whose file is `name` in the test's directory. */
count_arg count_arg_of(const char *name, int ok_at, int mode);
int count_task(const void *arg, size_t len, wp_buf *out);

/*
 * order_task: appends its index to the test's order file with one
 * O_APPEND write as it starts, so the file holds the start order; then,
 * if fail_path is set, fails the first time it runs (one byte appended
 * there per run); then runs sleep_us and echoes its index.
 */
#define ORDER_MAX      256 /* most indices a test reads back */
#define SHORT_QUEUE_MS 50  /* a queue deadline that passes during the test */
typedef struct order_arg {
    char path[128];
    char fail_path[128];
    int  index;
    int  sleep_us;
} order_arg;
order_arg order_arg_of(int index);
int order_task(const void *arg, size_t len, wp_buf *out);
/* The indices written so far, in start order: how many. */
size_t read_order(int *out, size_t max);
wp_future *submit_order_for(wp_pool *p, int index, int priority, int64_t queue_ms, int sleep_us);
wp_future *submit_order(wp_pool *p, int index, int priority, int64_t queue_ms);
/* Wait until exactly `queued` tasks wait for a worker (in the queue or
   the line: not in a window). */
void wait_queued(wp_pool *p, unsigned queued);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn control_add_deadline_tests, control_add_cancel_tests, control_add_retry_tests,
           control_add_worker_tests, control_add_rss_tests, control_add_stress_tests,
           control_add_priority_tests, control_add_expiry_tests, control_add_resize_tests,
           control_add_resize_stress_tests, control_add_resize_edge_tests, control_add_hol_tests;

#endif
