/* SPDX-License-Identifier: MIT */
/*
 * check_control.c — the suite of controlling tasks and workers (issue #3; the header's
 * "Submitting" and "Futures"; docs/ARCHITECTURE.md, "Path of a task"): per-task deadlines, cancellation
 * (queued, running, shielded, prefetched, late), retries with doubling
 * delays, worker lifecycle (max_tasks_per_worker, worker_init, WP_ESPAWN,
 * recovery, worker_memory_limit, worker_rss_limit), the crash-loop guard,
 * concurrent stress tests where every future must settle exactly once,
 * priorities and queue deadlines, and wp_pool_resize (issue #11).
 *
 * Every test runs under each start method, WP_START_FORKSERVER,
 * WP_START_FORK and WP_START_EXEC (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
 * joins threads, or polls the observed condition against a deadline.  Sleeps
 * happen only inside task functions, as the work being measured.
 *
 * Tasks that must count their attempts, or leave a mark if they ever run,
 * append one byte per run to a file in a per-test temporary directory
 * (count_task); worker_init functions append their pid to a file the same
 * way.  Files, not memory: each attempt runs in a different process.
 *
 * Under WP_START_FORK the dispatcher forks workers from this very process,
 * and ASan's allocator is not fork-safe (TU_ASAN in testutil.h): so after
 * anything that makes the pool start a worker (creation, a crash, a kill),
 * a test first waits for it without allocating — raw waits on futures, then
 * tu_wait_workers() — and only then calls Check or allocates again.
 *
 * This file holds what the suite's files share (check_control.h) and its
 * main; the tests are in one file per concern, run in this order:
 *   check_control_deadline.c  per-task deadlines;
 *   check_control_cancel.c    cancellation: queued, running, shielded,
 *                             prefetched, late, while writing;
 *   check_control_retry.c     retries and their doubling delays;
 *   check_control_worker.c    worker lifecycle and the crash-loop guard;
 *   check_control_rss.c       recycling workers past worker_rss_limit;
 *   check_control_stress.c    the hard cases: many threads at once, huge
 *                             times, a descriptor limit, the window race;
 *   check_control_priority.c  priorities: start order, taking back
 *                             pipelined tasks, the batcher's priority;
 *   check_control_expiry.c    queue deadlines, and the line's own
 *                             corners (a retry due behind a pipelined task,
 *                             the deadline heap);
 *   check_control_resize.c    wp_pool_resize: growing and shrinking
 *                             (check_control_resize.h: what the resize
 *                             files share);
 *   check_control_resize_stress.c  resizing at random under load;
 *   check_control_resize_edges.c   its errors, 0, done-callbacks, 1024;
 *   check_control_hol.c       head-of-line: a task behind a long head goes
 *                             to the next worker with room first.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_control.h"

/* ------------------------------------------------------------- helpers */

/* Wait until every future of fs has settled, without allocating (unlike
   wp_wait_all): true if they all did within timeout_ms. */
bool quiet_wait_all(wp_future *const *fs, size_t n, int64_t timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    size_t i = 0;
    while (i < n) {
        if (wp_future_wait(fs[i], 0) == 0)
            i++;
        else if (tu_now_ms() >= deadline)
            return false;
        else
            tu_poll_pause();
    }
    return true;
}

/* The stats, once n tasks have been seen settled: their outcomes must be
   counted already (a future's outcome is counted before it is published). */
wp_pool_stats settled_stats(wp_pool *p, uint64_t n)
{
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_msg(s.succeeded + s.failed + s.cancelled >= n,
                  "%llu tasks seen settled, the stats count %llu", (unsigned long long)n,
                  (unsigned long long)(s.succeeded + s.failed + s.cancelled));
    return s;
}

void wait_pid_exited(int pid)
{
    ck_assert_msg(tu_wait_exited(pid, TU_DEADLINE_MS), "worker %d is still running", pid);
}

/* Submit a tu_report task that reports its pid and then hangs (or sleeps
   ms); returns once it runs in a worker, with that worker's pid. */
wp_future *submit_running(wp_pool *p, tu_fifo *report, int64_t ms,
                                 const wp_task_options *o, int *pid)
{
    tu_report_arg a = tu_report_arg_of(ms, report, NULL);
    wp_future *f = tu_submit(p, tu_report, &a, sizeof a, o);
    *pid = tu_fifo_read_pid(report, TU_DEADLINE_MS);
    ck_assert_int_gt(*pid, 0);
    return f;
}

void check_cancelled(wp_future *f)
{
    size_t len = 12345;
    ck_assert_int_eq(wp_future_state(f), WP_CANCELLED);
    ck_assert_int_eq(wp_future_error(f), WP_ECANCELED);
    ck_assert_ptr_null(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
}

/* Cancel f, a task that has not reached a worker or waits behind another:
   the cancel returns 0 and f settles at once (within TU_PROMPT_MS). */
void cancel_promptly(wp_future *f)
{
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_future_cancel(f), 0);
    tu_wait_settled(f);
    int64_t took = tu_now_ms() - t0;
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
}

/* Busy-wait for us microseconds: jitter for races, not a wait for events. */
void spin_us(unsigned us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < (long)us);
}

void count_done(wp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

/* ---------------------------------------------------- temporary files */

long file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return (long)st.st_size;
}

/* Append len bytes to path; the file's size afterwards, or -1. */
long file_append(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    struct stat st;
    long size = -1;
    if (write(fd, data, len) == (ssize_t)len && fstat(fd, &st) == 0)
        size = (long)st.st_size;
    close(fd);
    return size;
}

/* ------------------------------------------- count_task (check_control.h) */

/* A count_task argument whose file is `name` in the test's directory. */
count_arg count_arg_of(const char *name, int ok_at, int mode)
{
    count_arg a;
    memset(&a, 0, sizeof a);
    tu_tmp_path(a.path, sizeof a.path, name);
    a.ok_at = ok_at;
    a.mode = mode;
    return a;
}

int count_task(const void *arg, size_t len, wp_buf *out)
{
    count_arg a;
    TU_TASK_ARG(a, arg, len, out);
    a.path[sizeof a.path - 1] = '\0';
    long n = file_append(a.path, "x", 1);
    if (n < 0)
        return wp_buf_fail(out, 5, "count_task: cannot append");
    if (n >= a.ok_at) {
        int v = (int)n;
        return wp_buf_append(out, &v, sizeof v);
    }
    if (a.mode == CT_SEGV)
        raise(SIGSEGV);
    if (a.mode == CT_HANG)
        for (;;)
            pause();
    char msg[64];
    snprintf(msg, sizeof msg, "attempt %ld fails", n);
    return wp_buf_fail(out, 100 + (int)n, msg);
}

/* ------------------------------------------ order_task (check_control.h) */

order_arg order_arg_of(int index)
{
    order_arg a = { .index = index };
    tu_tmp_path(a.path, sizeof a.path, "order");
    return a;
}

int order_task(const void *arg, size_t len, wp_buf *out)
{
    order_arg a;
    TU_TASK_ARG(a, arg, len, out);
    a.path[sizeof a.path - 1] = '\0';
    a.fail_path[sizeof a.fail_path - 1] = '\0';
    if (file_append(a.path, &a.index, sizeof a.index) < 0)
        return wp_buf_fail(out, 2, "order_task: cannot append");
    if (a.fail_path[0] != '\0' && file_append(a.fail_path, "x", 1) == 1)
        return wp_buf_fail(out, 3, "order_task: the first attempt fails");
    if (a.sleep_us > 0)
        tu_sleep_us((uint64_t)a.sleep_us);
    return wp_buf_append(out, &a.index, sizeof a.index);
}

size_t read_order(int *out, size_t max)
{
    order_arg a = order_arg_of(0);
    int fd = open(a.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, out, max * sizeof *out);
    close(fd);
    ck_assert_int_ge(n, 0);
    return (size_t)n / sizeof *out;
}

wp_future *submit_order_for(wp_pool *p, int index, int priority, int64_t queue_ms, int sleep_us)
{
    order_arg a = order_arg_of(index);
    a.sleep_us = sleep_us;
    wp_task_options o = { .priority = priority, .queue_timeout_ms = queue_ms };
    return tu_submit(p, order_task, &a, sizeof a, &o);
}

wp_future *submit_order(wp_pool *p, int index, int priority, int64_t queue_ms)
{
    return submit_order_for(p, index, priority, queue_ms, 0);
}

void wait_queued(wp_pool *p, unsigned queued)
{
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    wp_pool_stats s;
    while ((s = tu_pool_stats(p)).queued != queued && tu_now_ms() < deadline)
        tu_poll_pause();
    ck_assert_msg(s.queued == queued, "%u tasks wait for a worker, not %u (%u running)", s.queued,
                  queued, s.running);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        control_add_deadline_tests, control_add_cancel_tests, control_add_retry_tests,
        control_add_worker_tests, control_add_rss_tests, control_add_stress_tests,
        control_add_priority_tests, control_add_expiry_tests, control_add_resize_tests,
        control_add_resize_stress_tests,
        control_add_resize_edge_tests, control_add_hol_tests,
    };
    const tu_suite suite = { .name = "control", .timeout_s = 120, .fork = CK_FORK };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
