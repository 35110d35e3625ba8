/* SPDX-License-Identifier: MIT */
/*
 * check_control.c — controlling tasks and workers (issue #3; DESIGN §1 step
 * 5, §2, §4 "Submitting", "Futures"): per-task deadlines, cancellation
 * (queued, running, shielded, prefetched, late), retries with doubling
 * delays, worker lifecycle (max_tasks_per_worker, worker_init, WP_ESPAWN,
 * recovery, worker_memory_limit), the crash-loop guard, and a concurrent
 * stress test where every future must settle exactly once.
 *
 * Every test runs twice, under WP_START_FORKSERVER and WP_START_FORK
 * (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
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
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* Wait until every future of fs has settled, without allocating (unlike
   wp_wait_all): true if they all did within timeout_ms. */
static bool quiet_wait_all(wp_future *const *fs, size_t n, int64_t timeout_ms)
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

/* A pool with the test's start method whose workers may never start (so
   it does not wait for them, as tu_make_pool does). */
static wp_pool *create_pool(wp_pool_options o)
{
    o.start_method = tu_method;
    return tu_pool_create(o);
}

/* The stats, once n tasks have been seen settled: their outcomes must be
   counted already (a future's outcome is counted before it is published). */
static wp_pool_stats settled_stats(wp_pool *p, uint64_t n)
{
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_msg(s.succeeded + s.failed + s.cancelled >= n,
                  "%llu tasks seen settled, the stats count %llu", (unsigned long long)n,
                  (unsigned long long)(s.succeeded + s.failed + s.cancelled));
    return s;
}

static void wait_pid_exited(int pid)
{
    ck_assert_msg(tu_wait_exited(pid, TU_DEADLINE_MS), "worker %d is still running", pid);
}

/* Submit a tu_report task that reports its pid and then hangs (or sleeps
   ms); returns once it runs in a worker, with that worker's pid. */
static wp_future *submit_running(wp_pool *p, tu_fifo *report, int64_t ms,
                                 const wp_task_options *o, int *pid)
{
    tu_report_arg a = tu_report_arg_of(ms, report, NULL);
    wp_future *f = tu_submit(p, tu_report, &a, sizeof a, o);
    *pid = tu_fifo_read_pid(report, TU_DEADLINE_MS);
    ck_assert_int_gt(*pid, 0);
    return f;
}

/* f succeeded with the int pid as its result. */
static void check_echo_pid(wp_future *f, int pid)
{
    tu_check_echo(f, &pid, sizeof pid);
}

static void check_cancelled(wp_future *f)
{
    size_t len = 12345;
    ck_assert_int_eq(wp_future_state(f), WP_CANCELLED);
    ck_assert_int_eq(wp_future_error(f), WP_ECANCELED);
    ck_assert_ptr_null(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
}

/* Cancel f, a task that has not reached a worker or waits behind another:
   the cancel returns 0 and f settles at once (within TU_PROMPT_MS). */
static void cancel_promptly(wp_future *f)
{
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(wp_future_cancel(f), 0);
    tu_wait_settled(f);
    int64_t took = tu_now_ms() - t0;
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
}

/* The same for a running task, whose worker is killed and replaced: then
   waits for the pool to have `alive` workers, `started` ever, and checks
   the task settled within TU_PROMPT_MS of the cancel. */
static void cancel_kill(wp_pool *p, wp_future *f, unsigned alive, uint64_t started)
{
    int64_t t0 = tu_now_ms();
    int rc = wp_future_cancel(f);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    tu_wait_workers(p, alive, started);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(w == 0, "a cancelled task did not settle in %d ms", TU_DEADLINE_MS);
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
}

/* Busy-wait for us microseconds: jitter for races, not a wait for events. */
static void spin_us(unsigned us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < (long)us);
}

static void count_done(wp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

/* ---------------------------------------------------- temporary files */

static long file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return (long)st.st_size;
}

/* Append len bytes to path; the file's size afterwards, or -1. */
static long file_append(const char *path, const void *data, size_t len)
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

/* ------------------------------------------------------ task functions */

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
static count_arg count_arg_of(const char *name, int ok_at, int mode)
{
    count_arg a;
    memset(&a, 0, sizeof a);
    tu_tmp_path(a.path, sizeof a.path, name);
    a.ok_at = ok_at;
    a.mode = mode;
    return a;
}

static int count_task(const void *arg, size_t len, wp_buf *out)
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

/* f, a count_task, succeeded on attempt n (its result is the attempt
   number). */
static void check_succeeded_on_attempt(wp_future *f, int n)
{
    tu_check_echo(f, &n, sizeof n);
}

/* alloc_task: tu_alloc through an opaque pointer to malloc.  (clang -O1
   removes tu_alloc's malloc/memset/free as unobservable, so there the
   allocation "succeeds" whatever the limit.)  Fails WP_ETASK with code 12
   when malloc returns NULL. */
static void *(*volatile opaque_malloc)(size_t) = malloc;

static int alloc_task(const void *arg, size_t len, wp_buf *out)
{
    size_t n = 0;
    if (len >= sizeof n)
        memcpy(&n, arg, sizeof n);
    unsigned char *p = opaque_malloc(n);
    if (p == NULL)
        return wp_buf_fail(out, 12, "allocation failed");
    memset(p, 1, n);
    int rc = wp_buf_append(out, &p[n / 2], 1);
    free(p);
    return rc;
}

/* worker_init: appends the worker's pid to the file ctx names; fails after
   that if fail_first > 0 and this is one of the first fail_first calls
   (fail_first < 0: always fails). */
typedef struct init_ctx {
    char path[200];
    int  fail_first;
} init_ctx;

static int init_count(void *ctx)
{
    const init_ctx *c = ctx;
    int pid = (int)getpid();
    long n = file_append(c->path, &pid, sizeof pid);
    if (n < 0)
        return 1;
    long calls = n / (long)sizeof pid;
    if (c->fail_first < 0 || calls <= c->fail_first)
        return 1;
    return 0;
}

/* A worker_init context whose file is `name` in the test's directory. */
static init_ctx init_ctx_of(const char *name, int fail_first)
{
    init_ctx c;
    memset(&c, 0, sizeof c);
    tu_tmp_path(c.path, sizeof c.path, name);
    c.fail_first = fail_first;
    return c;
}

/* ==================================================== 1. deadlines */

/* The deadline counts from the start of the attempt: a task that waited
   longer than its timeout behind another one still succeeds. */
WP_TEST_BOTH(deadline_counts_from_start)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int64_t t0 = tu_now_ms();
    int64_t ms_a = 300, ms_b = 20; /* b waits longer than its limit, runs far less */
    wp_future *a = tu_submit(p, tu_sleep, &ms_a, sizeof ms_a, NULL);
    wp_task_options o = { .timeout_ms = 200 };
    wp_future *b = tu_submit(p, tu_sleep, &ms_b, sizeof ms_b, &o);
    tu_check_echo(b, &ms_b, sizeof ms_b);
    ck_assert_int_ge(tu_now_ms() - t0, ms_a + ms_b); /* it did wait behind a */
    tu_check_echo(a, &ms_a, sizeof ms_a);
    wp_pool_stats s = settled_stats(p, 2);
    tu_assert_stats(s, .timed_out = TU_EQ(0), .succeeded = TU_EQ(2));
    wp_future_release(a);
    wp_future_release(b);
    wp_pool_destroy(p);
}

/* Past its deadline the worker is killed, the task fails WP_ETIMEDOUT with
   the limit in its message, and a replacement serves the next task. */
WP_TEST_BOTH(deadline_kills_worker)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    wp_task_options o = { .timeout_ms = 200 };
    int64_t t0 = tu_now_ms();
    int pid;
    wp_future *f = submit_running(p, &report, 5000, &o, &pid);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    tu_wait_workers(p, 1, 2); /* the replacement */
    ck_assert_int_eq(w, 0);
    ck_assert_int_ge(took, 200);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETIMEDOUT);
    ck_assert_ptr_null(wp_future_result(f, NULL));
    ck_assert_msg(strstr(wp_future_message(f), "200 ms") != NULL,
                  "message \"%s\" does not name the limit", wp_future_message(f));
    wait_pid_exited(pid);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .timed_out = TU_EQ(1), .failed = TU_EQ(1), .crashed = TU_EQ(0));

    wp_future *g = tu_run(p, tu_pid, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_state(g), WP_SUCCEEDED);
    int pid2;
    memcpy(&pid2, wp_future_result(g, NULL), sizeof pid2);
    ck_assert_int_ne(pid2, pid);
    wp_future_release(f);
    wp_future_release(g);
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(deadline_on_hang)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_task_options o = { .timeout_ms = 100 };
    wp_future *f[3];
    for (int i = 0; i < 3; i++)
        f[i] = tu_submit(p, tu_hang, NULL, 0, &o);
    bool all = quiet_wait_all(f, 3, TU_DEADLINE_MS);
    tu_wait_workers(p, 2, 2 + 3); /* one replacement per kill */
    ck_assert(all);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(wp_future_state(f[i]), WP_FAILED);
        ck_assert_int_eq(wp_future_error(f[i]), WP_ETIMEDOUT);
        ck_assert_ptr_nonnull(strstr(wp_future_message(f[i]), "100 ms"));
        wp_future_release(f[i]);
    }
    const char msg[] = "after the hangs";
    wp_future *g = tu_run(p, tu_echo, msg, sizeof msg, NULL);
    tu_check_echo(g, msg, sizeof msg);
    wp_future_release(g);
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .timed_out = TU_EQ(3), .crashed = TU_EQ(0), .workers_started = TU_EQ(2 + 3));
    wp_pool_destroy(p);
}

/* Tasks that finish right around their deadline: each settles exactly
   once, either way. */
WP_TEST_BOTH(deadline_race_settles_once)
{
    enum { N = 48 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 4 });
    wp_future *f[N];
    int64_t ms[N];
    atomic_int calls[N];
    for (int i = 0; i < N; i++) {
        int64_t t = 20 + (i % 4) * 10;
        ms[i] = t + ((i % 3) - 1) * 2;
        atomic_init(&calls[i], 0);
        wp_task_options o = { .timeout_ms = t };
        f[i] = tu_submit(p, tu_sleep, &ms[i], sizeof ms[i], &o);
        ck_assert_int_eq(wp_future_on_done(f[i], count_done, &calls[i]), 0);
    }
    bool all = quiet_wait_all(f, N, 60000);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* callbacks have all run */
    ck_assert(all);
    unsigned ok = 0, late = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&calls[i]), 1);
        int st = wp_future_state(f[i]);
        if (st == WP_SUCCEEDED) {
            tu_check_echo(f[i], &ms[i], sizeof ms[i]);
            ok++;
        } else {
            ck_assert_int_eq(st, WP_FAILED);
            ck_assert_int_eq(wp_future_error(f[i]), WP_ETIMEDOUT);
            late++;
        }
        wp_future_release(f[i]);
    }
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(N), .succeeded = TU_EQ(ok), .failed = TU_EQ(late),
                       .timed_out = TU_EQ(late), .cancelled = TU_EQ(0), .crashed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* ================================================== 2. cancellation */

/* A queued task (with these flags) cancelled behind a busy worker settles
   at once and never runs; the hang ahead of it does not notice, and its
   own cancel takes its worker; the replacement runs what comes next. */
static void cancel_behind_hang(unsigned flags)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    int pid;
    wp_future *h = submit_running(p, &report, -1, NULL, &pid);
    count_arg a = count_arg_of("mark", 1, CT_FAIL);
    wp_task_options o = { .flags = flags };
    wp_future *q = tu_submit(p, count_task, &a, sizeof a, &o);
    ck_assert_int_ne(wp_future_state(q), WP_RUNNING);
    cancel_promptly(q);
    check_cancelled(q);
    ck_assert_int_eq(wp_future_cancel(q), WP_EINVAL);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .cancelled = TU_EQ(1), .succeeded = TU_EQ(0));
    ck_assert_int_eq(wp_future_state(h), WP_RUNNING); /* the hang did not notice */

    cancel_kill(p, h, 1, 2);
    check_cancelled(h);
    wait_pid_exited(pid);
    wp_future *g = tu_run(p, tu_echo, "y", 1, NULL);
    tu_check_echo(g, "y", 1);
    wp_pool_destroy(p);
    ck_assert_int_eq(file_size(a.path), 0); /* the cancelled one never ran */
    wp_future_release(h);
    wp_future_release(q);
    wp_future_release(g);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(cancel_queued)
{
    cancel_behind_hang(0);
}

/* A task cancelled while it waits in the queue behind a busy worker never
   runs, even when that worker then finishes normally (rather than being
   killed, as above) and goes on to the next task.  Every other round the
   cancelled task is shielded (the shield only counts once it runs). */
WP_TEST_BOTH(cancel_queued_worker_finishes)
{
    enum { ROUNDS = 20 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold hold;
    tu_hold_open(&hold);
    for (int i = 0; i < ROUNDS; i++) {
        wp_future *h = tu_submit_held(p, &hold, NULL, NULL); /* h runs */
        count_arg a = count_arg_of("mark", 1, CT_FAIL);
        wp_task_options o = { .flags = i % 2 ? WP_TASK_SHIELD : 0 };
        wp_future *q = tu_submit(p, count_task, &a, sizeof a, &o);
        ck_assert_int_eq(wp_future_cancel(q), 0);
        tu_wait_settled(q);
        check_cancelled(q);
        tu_fifo_release(&hold.gate, 1); /* h finishes; the worker takes what is next */
        tu_wait_settled(h);
        ck_assert_int_eq(wp_future_state(h), WP_SUCCEEDED);
        wp_future *x = tu_run(p, tu_echo, &i, sizeof i, NULL);
        tu_check_echo(x, &i, sizeof i);
        ck_assert_msg(file_size(a.path) == 0, "round %d: a task cancelled in the queue ran", i);
        wp_future_release(h);
        wp_future_release(q);
        wp_future_release(x);
    }
    wp_pool_stats s = settled_stats(p, 3 * ROUNDS);
    tu_assert_stats(s, .cancelled = TU_EQ(ROUNDS), .succeeded = TU_EQ(2 * ROUNDS),
                       .workers_started = TU_EQ(1));
    wp_pool_destroy(p);
    tu_hold_close(&hold);
}

/* Cancelling a running task kills its worker, promptly. */
WP_TEST_BOTH(cancel_running)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_fifo report;
    tu_fifo_open(&report);
    for (int round = 0; round < 3; round++) {
        int pid;
        wp_future *h = submit_running(p, &report, -1, NULL, &pid);
        ck_assert_int_eq(wp_future_state(h), WP_RUNNING);
        cancel_kill(p, h, 1, (uint64_t)round + 2);
        check_cancelled(h);
        ck_assert_int_eq(wp_future_cancel(h), WP_EINVAL);
        wait_pid_exited(pid);
        wp_future_release(h);
    }
    const char msg[] = "still serving";
    wp_future *g = tu_run(p, tu_echo, msg, sizeof msg, NULL);
    tu_check_echo(g, msg, sizeof msg);
    wp_future_release(g);
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .cancelled = TU_EQ(3), .crashed = TU_EQ(0), .succeeded = TU_EQ(1),
                       .workers_started = TU_EQ(4));
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}

WP_TEST_BOTH(cancel_settled)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int code = 4;
    wp_future *ok = tu_run(p, tu_echo, "x", 1, NULL);
    wp_future *bad = tu_run(p, tu_fail, &code, sizeof code, NULL);
    wp_future *crash = tu_run_crash(p, tu_segv, NULL, 0, NULL, 1, 2);
    ck_assert_int_eq(wp_future_cancel(ok), WP_EINVAL);
    ck_assert_int_eq(wp_future_cancel(bad), WP_EINVAL);
    ck_assert_int_eq(wp_future_cancel(crash), WP_EINVAL);
    ck_assert_int_eq(wp_future_state(ok), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_error(bad), WP_ETASK);
    ck_assert_int_eq(wp_future_code(bad), 4);
    ck_assert_int_eq(wp_future_error(crash), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(crash), SIGSEGV);
    wp_pool_stats s = settled_stats(p, 3);
    ck_assert_uint_eq(s.cancelled, 0);
    wp_future_release(ok);
    wp_future_release(bad);
    wp_future_release(crash);
    wp_pool_destroy(p);
}

/* A shielded running task cannot be cancelled: WP_EBUSY, and it completes. */
WP_TEST_BOTH(shield_running)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    tu_report_arg a = tu_report_arg_of(0, &h.report, &h.gate);
    wp_task_options o = { .flags = WP_TASK_SHIELD };
    wp_future *f = tu_submit(p, tu_report, &a, sizeof a, &o);
    int pid = tu_fifo_read_pid(&h.report, TU_DEADLINE_MS);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_cancel(f), WP_EBUSY);
    ck_assert_int_eq(wp_future_state(f), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    tu_check_echo(f, &pid, sizeof pid);
    ck_assert_int_eq(wp_future_cancel(f), WP_EINVAL);
    ck_assert(tu_pid_alive(pid)); /* the worker was not killed */
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .cancelled = TU_EQ(0), .succeeded = TU_EQ(1), .workers_started = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

static int shutdown_no_grace(void *pool)
{
    return wp_pool_shutdown(pool, 0);
}

/* Shutdown with no grace cancels what it can, but a shielded running task
   runs to its end (as the batcher's shielded batches do): shutdown waits. */
WP_TEST_BOTH(shield_survives_shutdown)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    const wp_task_options shield = { .flags = WP_TASK_SHIELD };
    int pid;
    wp_future *held = tu_submit_held(p, &h, &shield, &pid);
    wp_future *queued = tu_submit(p, tu_echo, "q", 1, NULL);
    tu_blocker w;
    tu_blocker_start(&w, shutdown_no_grace, p);
    tu_wait_settled(queued); /* cancelled at once */
    check_cancelled(queued);
    ck_assert_int_eq(wp_future_state(held), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(tu_blocker_join(&w), 0);
    check_echo_pid(held, pid);
    wp_future_release(held);
    wp_future_release(queued);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* A shielded task can still be cancelled while queued: it never runs. */
WP_TEST_BOTH(shield_queued)
{
    cancel_behind_hang(WP_TASK_SHIELD);
}

/* A cancel that arrives as its task completes never hits the task after it
   on the same worker. */
WP_TEST_BOTH(late_cancel_spares_next)
{
    enum { ROUNDS = 200 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    unsigned seed = 12345u + (unsigned)tu_method;
    unsigned won = 0, lost = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int64_t ms = 1;
        wp_future *a = tu_submit(p, tu_sleep, &ms, sizeof ms, NULL);
        wp_future *b = tu_submit(p, tu_echo, &i, sizeof i, NULL);
        spin_us((unsigned)rand_r(&seed) % 2500);
        int rc = wp_future_cancel(a);
        /* b settles after a replacement for a killed worker has started:
           no allocation before that (see the top of the file). */
        int wb = wp_future_wait(b, TU_DEADLINE_MS);
        int wa = wp_future_wait(a, TU_DEADLINE_MS);
        ck_assert_int_eq(wb, 0);
        ck_assert_int_eq(wa, 0);
        if (rc == 0) {
            ck_assert_msg(wp_future_state(a) == WP_CANCELLED,
                          "round %d: cancel returned 0 but the task ended %d (%s)", i,
                          wp_future_state(a), wp_future_message(a));
            won++;
        } else {
            ck_assert_int_eq(rc, WP_EINVAL);
            tu_check_echo(a, &ms, sizeof ms);
            lost++;
        }
        /* The next task is never disturbed. */
        ck_assert_msg(wp_future_state(b) == WP_SUCCEEDED, "round %d: next task ended %d (%s)", i,
                      wp_future_state(b), wp_future_message(b));
        tu_check_echo(b, &i, sizeof i);
        wp_future_release(a);
        wp_future_release(b);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(2 * ROUNDS), .cancelled = TU_EQ(won),
                       .succeeded = TU_EQ(ROUNDS + lost), .failed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* Cancel a task prefetched behind a busy worker's hanging task: it settles
   promptly and never runs; the other prefetched task runs once a worker
   frees. */
WP_TEST_BOTH(cancel_prefetched)
{
    /* tu_make_pool waits for both workers, so each hang gets a worker of its
       own (a hang sent behind the other one and then taken back by a worker
       that became idle would keep its first worker from taking a task
       behind its hang until the "skipped" reply, which never comes). */
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    tu_fifo report;
    tu_fifo_open(&report);
    int pid[2];
    wp_future *h[2];
    h[0] = submit_running(p, &report, -1, NULL, &pid[0]);
    h[1] = submit_running(p, &report, -1, NULL, &pid[1]);
    ck_assert_int_ne(pid[0], pid[1]);

    count_arg a = count_arg_of("mark", 1, CT_FAIL);
    wp_future *q1 = tu_submit(p, count_task, &a, sizeof a, NULL);
    const char msg[] = "q2";
    wp_future *q2 = tu_submit(p, tu_echo, msg, sizeof msg, NULL);
    /* Both leave the queue: each sits behind one of the hangs. */
    TU_POLL_UNTIL(tu_pool_stats(p).queued == 0);
    ck_assert_int_eq(wp_future_state(q1), WP_PENDING);
    ck_assert_int_eq(wp_future_state(q2), WP_PENDING);

    cancel_promptly(q1);
    check_cancelled(q1);
    ck_assert_int_eq(wp_future_wait(q2, 0), WP_ETIMEDOUT); /* no worker is free */
    ck_assert_int_eq(wp_future_state(h[0]), WP_RUNNING);
    ck_assert_int_eq(wp_future_state(h[1]), WP_RUNNING);

    /* Free one worker: q2 runs, whichever hang it was behind. */
    int64_t t0 = tu_now_ms();
    int rc = wp_future_cancel(h[0]);
    int w0 = wp_future_wait(h[0], TU_DEADLINE_MS);
    int64_t took = tu_now_ms() - t0;
    int w2 = wp_future_wait(q2, TU_DEADLINE_MS);
    tu_wait_workers(p, 2, 3);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(w0, 0);
    ck_assert_int_eq(w2, 0);
    ck_assert_msg(took < TU_PROMPT_MS, "cancel took %lld ms", (long long)took);
    check_cancelled(h[0]);
    tu_check_echo(q2, msg, sizeof msg);
    ck_assert_int_eq(wp_future_state(h[1]), WP_RUNNING);
    cancel_kill(p, h[1], 2, 4);
    check_cancelled(h[1]);
    wait_pid_exited(pid[0]);
    wait_pid_exited(pid[1]);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert_int_eq(file_size(a.path), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .cancelled = TU_EQ(3), .succeeded = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(h[0]);
    wp_future_release(h[1]);
    wp_future_release(q1);
    wp_future_release(q2);
    wp_pool_destroy(p);
    tu_fifo_close(&report);
}


/* A task whose large argument is still being written behind a busy worker
   is cancelled and released: the rest of its frame still goes out (the
   worker skips it), no freed memory is read, and the healthy worker is
   neither killed nor replaced. */
WP_TEST_BOTH(cancel_while_writing)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    int pid;
    wp_future *busy = tu_submit_held(p, &h, NULL, &pid);

    size_t big_len = (size_t)8 << 20; /* far more than a pipe holds */
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', big_len);
    wp_future *f = tu_submit(p, tu_empty, big, big_len, NULL);
    free(big);
    TU_POLL_UNTIL(tu_pool_stats(p).queued == 0); /* written behind the busy task */
    ck_assert_int_eq(wp_future_cancel(f), 0);
    tu_wait_settled(f);
    check_cancelled(f);
    wp_future_release(f);

    tu_fifo_release(&h.gate, 1);
    check_echo_pid(busy, pid);
    wp_future *after = tu_submit(p, tu_pid, NULL, 0, NULL);
    check_echo_pid(after, pid);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .workers_started = TU_EQ(1), .crashed = TU_EQ(0));
    wp_future_release(busy);
    wp_future_release(after);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* ======================================================= 3. retries */

WP_TEST_BOTH(retry_until_success)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 3, CT_FAIL);
    wp_task_options o = { .retries = 3 };
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    check_succeeded_on_attempt(f, 3);
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .succeeded = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(retries_exhausted)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 100, CT_FAIL);
    wp_task_options o = { .retries = 2 };
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 103); /* the third attempt's own code */
    ck_assert_str_eq(wp_future_message(f), "attempt 3 fails");
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .failed = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(retry_after_crash)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 2, CT_SEGV);
    wp_task_options o = { .retries = 1 };
    wp_future *f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 2);
    check_succeeded_on_attempt(f, 2);
    ck_assert_int_eq(file_size(a.path), 2);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(1), .crashed = TU_EQ(0) /* only outcomes count */,
                       .workers_started = TU_EQ(2));

    /* Crashing on every attempt: the last crash is the outcome. */
    a = count_arg_of("count2", 100, CT_SEGV);
    o.retries = 2;
    wp_future *g = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 2 + 3);
    ck_assert_int_eq(wp_future_error(g), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(g), SIGSEGV);
    ck_assert_int_eq(file_size(a.path), 3);
    s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(3), .crashed = TU_EQ(1));
    wp_future_release(f);
    wp_future_release(g);
    wp_pool_destroy(p);
}

/* The deadline is per attempt: a first attempt that hangs is killed at
   its deadline, and the retry, with a deadline of its own, succeeds. */
WP_TEST_BOTH(retry_after_timeout)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 3, CT_HANG);
    wp_task_options o = { .timeout_ms = 150, .retries = 2 };
    int64_t t0 = tu_now_ms();
    wp_future *f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 1 + 2);
    int64_t took = tu_now_ms() - t0;
    check_succeeded_on_attempt(f, 3);
    ck_assert_int_ge(took, 2 * 150);
    ck_assert_int_eq(file_size(a.path), 3);
    wp_pool_stats s = settled_stats(p, 1);
    tu_assert_stats(s, .retried = TU_EQ(2), .timed_out = TU_EQ(0) /* only outcomes count */,
                       .succeeded = TU_EQ(1));
    wp_future_release(f);

    /* Every attempt hangs: the last timeout is the outcome. */
    a = count_arg_of("count2", 100, CT_HANG);
    o = (wp_task_options){ .timeout_ms = 100, .retries = 1 };
    f = tu_run_crash(p, count_task, &a, sizeof a, &o, 1, 3 + 2);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(wp_future_message(f), "100 ms"));
    ck_assert_int_eq(file_size(a.path), 2);
    s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(3), .timed_out = TU_EQ(1));
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* retry_delay_ms before the first retry, doubled before each next one. */
WP_TEST_BOTH(retry_delay_doubles)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 3, CT_FAIL);
    wp_task_options o = { .retries = 2, .retry_delay_ms = 100 };
    int64_t t0 = tu_now_ms();
    wp_future *f = tu_run(p, count_task, &a, sizeof a, &o);
    int64_t took = tu_now_ms() - t0;
    check_succeeded_on_attempt(f, 3);
    ck_assert_msg(took >= 300, "two retries after 100 + 200 ms took only %lld ms", (long long)took);
    ck_assert_uint_eq(tu_pool_stats(p).retried, 2);
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* A task waiting out its retry delay holds up nothing: quick tasks run on
   the only worker meanwhile.  The delay is far longer than they take, even
   on a loaded machine under a sanitizer (RETRY_HOLD_MS times the build's
   slowdown), so they are all done before it ends. */
#define RETRY_HOLD_MS 1500
WP_TEST_BOTH(retry_delay_does_not_block)
{
    const int64_t delay = RETRY_HOLD_MS * (int64_t)tu_slowdown();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    count_arg a = count_arg_of("count", 2, CT_FAIL);
    wp_task_options o = { .retries = 1, .retry_delay_ms = delay };
    int64_t t0 = tu_now_ms();
    wp_future *r = tu_submit(p, count_task, &a, sizeof a, &o);
    TU_POLL_UNTIL(tu_pool_stats(p).retried >= 1); /* the first attempt failed: it waits */
    enum { N = 20 };
    wp_future *f[N];
    int v[N];
    for (int i = 0; i < N; i++) {
        v[i] = i * 31;
        f[i] = tu_submit(p, tu_echo, &v[i], sizeof v[i], NULL);
    }
    ck_assert_int_eq(wp_wait_all(f, N, TU_DEADLINE_MS), 0);
    int64_t others_done = tu_now_ms() - t0;
    ck_assert_msg(wp_future_wait(r, 0) == WP_ETIMEDOUT,
                  "the retry did not wait %lld ms (the others took %lld ms)", (long long)delay,
                  (long long)others_done);
    ck_assert_int_eq(wp_future_state(r), WP_PENDING); /* between attempts */
    ck_assert_int_eq(file_size(a.path), 1);
    for (int i = 0; i < N; i++) {
        tu_check_echo(f[i], &v[i], sizeof v[i]);
        wp_future_release(f[i]);
    }
    tu_wait_settled(r);
    check_succeeded_on_attempt(r, 2);
    ck_assert_int_ge(tu_now_ms() - t0, delay);
    wp_future_release(r);
    wp_pool_destroy(p);
}

/* Cancelled during its retry delay: settles at once, no attempt follows. */
WP_TEST_BOTH(cancel_during_retry_delay)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    count_arg a = count_arg_of("count", 100, CT_FAIL);
    wp_task_options o = { .retries = 5, .retry_delay_ms = 300 };
    wp_future *r = tu_submit(p, count_task, &a, sizeof a, &o);
    TU_POLL_UNTIL(tu_pool_stats(p).retried >= 1); /* the first attempt failed */
    cancel_promptly(r);
    check_cancelled(r);
    long attempts = file_size(a.path);
    ck_assert_int_ge(attempts, 1);
    uint64_t retried = tu_pool_stats(p).retried;
    /* While a 900 ms task keeps one worker busy, the other stays free for a
       retry that would be due after 300 ms (and 600 ms more): none comes. */
    int64_t ms = 900;
    wp_future *w = tu_run(p, tu_sleep, &ms, sizeof ms, NULL);
    tu_check_echo(w, &ms, sizeof ms);
    ck_assert_int_eq(file_size(a.path), attempts);
    wp_pool_stats s = settled_stats(p, 2);
    tu_assert_stats(s, .retried = TU_EQ(retried), .cancelled = TU_EQ(1), .failed = TU_EQ(0));
    wp_future_release(w);
    wp_future_release(r);
    wp_pool_destroy(p);
}

/* ============================================== 4. worker lifecycle */

/* Run N tu_pid tasks on a pool, all submitted at once; their pids in pids[]
   (fails unless all succeed).  Shuts the pool down before any Check call,
   so no worker is being started meanwhile (see the top of the file). */
static void run_pids(wp_pool *p, int *pids, int n)
{
    wp_future *f[16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++)
        f[i] = tu_submit(p, tu_pid, NULL, 0, NULL);
    bool all = quiet_wait_all(f, (size_t)n, 60000);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    ck_assert(all);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(wp_future_state(f[i]) == WP_SUCCEEDED, "task %d ended %d (%s)", i,
                      wp_future_state(f[i]), wp_future_message(f[i]));
        size_t len;
        const void *r = wp_future_result(f[i], &len);
        ck_assert_uint_eq(len, sizeof(int));
        memcpy(&pids[i], r, sizeof(int));
        wp_future_release(f[i]);
    }
}

static int uses_of(const int *pids, int n, int pid)
{
    int uses = 0;
    for (int j = 0; j < n; j++)
        uses += pids[j] == pid;
    return uses;
}

WP_TEST_BOTH(max_tasks_per_worker)
{
    enum { N = 10 };
    int pids[N];

    /* Two workers: tasks spread, prefetched and taken back as they come. */
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2, .max_tasks_per_worker = 3 });
    run_pids(p, pids, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(uses_of(pids, N, pids[i]) <= 3, "worker %d ran %d tasks", pids[i],
                      uses_of(pids, N, pids[i]));
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_ge(s.workers_started, 4);
    tu_assert_stats(s, .submitted = TU_EQ(N), .succeeded = TU_EQ(N));
    ck_assert_uint_eq(s.failed + s.cancelled + s.crashed, 0);
    wp_pool_destroy(p);

    /* One worker: exactly 3 + 3 + 3 + 1, four workers. */
    p = tu_make_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = 3 });
    run_pids(p, pids, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(pids[i] == pids[i / 3 * 3], "task %d ran on %d, task %d on %d", i, pids[i],
                      i / 3 * 3, pids[i / 3 * 3]);
    for (int k = 3; k < N; k += 3)
        ck_assert_int_ne(pids[k], pids[k - 3]);
    s = tu_pool_stats(p);
    tu_assert_stats(s, .workers_started = TU_EQ(4), .succeeded = TU_EQ(N));
    wp_pool_destroy(p);

    /* One task per worker: every task in a fresh process. */
    p = tu_make_pool((wp_pool_options){ .workers = 2, .max_tasks_per_worker = 1 });
    run_pids(p, pids, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(uses_of(pids, 6, pids[i]), 1);
    s = tu_pool_stats(p);
    ck_assert_uint_ge(s.workers_started, 6);
    ck_assert_uint_eq(s.succeeded, 6);
    wp_pool_destroy(p);
}

/* worker_init runs once in each new worker, in that worker: one worker
   retired every 2 tasks, then crashed twice, so 1 + 4 + 2 workers. */
WP_TEST_BOTH(worker_init_once_per_worker)
{
    init_ctx c = init_ctx_of("inits", 0);
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = 1, .max_tasks_per_worker = 2, .worker_init = init_count, .worker_init_ctx = &c });
    enum { N = 8 };
    int task_pids[N];
    for (int i = 0; i < N; i++) {
        wp_future *f = tu_submit(p, tu_pid, NULL, 0, NULL);
        int w = wp_future_wait(f, TU_DEADLINE_MS);
        tu_wait_workers(p, 1, 1 + (uint64_t)(i + 1) / 2); /* a retired one's replacement */
        ck_assert_int_eq(w, 0);
        ck_assert_int_eq(wp_future_state(f), WP_SUCCEEDED);
        memcpy(&task_pids[i], wp_future_result(f, NULL), sizeof(int));
        wp_future_release(f);
    }
    for (int i = 0; i < 2; i++) { /* crashes make replacements too */
        wp_future *f = tu_run_crash(p, tu_segv, NULL, 0, NULL, 1, 1 + N / 2 + (uint64_t)i + 1);
        ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
        wp_future_release(f);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.workers_started, 1 + N / 2 + 2);
    long n = file_size(c.path) / (long)sizeof(int);
    ck_assert_msg(n == (long)s.workers_started, "worker_init ran %ld times for %llu workers", n,
                  (unsigned long long)s.workers_started);
    /* Each init ran in its own process, and every task's worker ran it. */
    int inits[16];
    FILE *fp = fopen(c.path, "re");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fread(inits, sizeof(int), (size_t)n, fp), (size_t)n);
    fclose(fp);
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++)
            ck_assert_int_ne(inits[i], inits[j]);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(task_pids[i], inits[i / 2]); /* in the order they started */
        ck_assert_int_eq(task_pids[i], task_pids[i / 2 * 2]);
    }
    wp_pool_destroy(p);
}

/* A worker_init that always fails: no worker can start, and tasks fail
   with WP_ESPAWN in bounded time instead of waiting forever.  (Such a
   worker exits before it allocates: no care for TU_ASAN is needed.) */
WP_TEST_BOTH(worker_init_fails_espawn)
{
    init_ctx c = init_ctx_of("inits", -1);
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 2, .worker_init = init_count, .worker_init_ctx = &c });
    wp_future *f = tu_submit(p, tu_echo, "a", 1, NULL);
    tu_wait_settled(f); /* bounded: no WP_ESPAWN would leave it waiting forever */
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    ck_assert_str_ne(wp_future_message(f), "");
    /* Later submits fail the same way. */
    for (int i = 0; i < 3; i++) {
        wp_future *g = tu_submit(p, tu_echo, "b", 1, NULL);
        tu_wait_settled(g);
        ck_assert_int_eq(wp_future_error(g), WP_ESPAWN);
        wp_future_release(g);
    }
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .workers_started = TU_EQ(0), .workers_alive = TU_EQ(0), .failed = TU_EQ(4));
    ck_assert_int_ge(file_size(c.path), 3 * (long)sizeof(int));
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* A worker_init that fails its first 5 calls, then works: the pool
   recovers and tasks succeed (one submitted while nothing could start may
   fail with WP_ESPAWN first). */
/* worker_init that never returns: past start_timeout_ms the worker is
   killed and counts as a failed start: backoff, then WP_ESPAWN for the
   waiting tasks, saying why. */
static int init_hang(void *ctx)
{
    (void)ctx;
    for (;;)
        pause();
    return 0;
}

WP_TEST_BOTH(worker_init_hangs)
{
    wp_pool *q = NULL;
    ck_assert_int_eq(wp_pool_create(&q, &(wp_pool_options){ .start_method = tu_method,
                                                            .start_timeout_ms = -1 }),
                     WP_EINVAL);
    ck_assert_ptr_null(q);
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 2, .worker_init = init_hang, .start_timeout_ms = 150 });
    wp_future *f = tu_submit(p, tu_echo, "a", 1, NULL);
    tu_wait_settled(f);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    ck_assert_msg(strstr(wp_future_message(f), "not ready within 150 ms") != NULL,
                  "message: %s", wp_future_message(f));
    wp_pool_stats st = settled_stats(p, 1);
    tu_assert_stats(st, .workers_started = TU_EQ(0), .workers_alive = TU_EQ(0));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(worker_init_recovers)
{
    init_ctx c = init_ctx_of("inits", 5);
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 1, .worker_init = init_count, .worker_init_ctx = &c });
    wp_future *f = tu_submit(p, tu_echo, "r", 1, NULL);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    tu_wait_workers(p, 1, 1); /* it did recover */
    ck_assert_int_eq(w, 0);
    unsigned espawn = 0;
    if (wp_future_state(f) == WP_SUCCEEDED) {
        tu_check_echo(f, "r", 1);
    } else {
        ck_assert_msg(wp_future_error(f) == WP_ESPAWN, "failed with %d (%s)", wp_future_error(f),
                      wp_future_message(f));
        espawn++;
    }
    wp_future_release(f);
    for (int i = 0; i < 5; i++) {
        wp_future *g = tu_run(p, tu_echo, &i, sizeof i, NULL);
        tu_check_echo(g, &i, sizeof i);
        wp_future_release(g);
    }
    ck_assert_int_eq(file_size(c.path), 6 * (long)sizeof(int));
    wp_pool_stats s = settled_stats(p, 1 + 5);
    tu_assert_stats(s, .workers_started = TU_EQ(1), .failed = TU_EQ(espawn),
                       .succeeded = TU_EQ(6 - espawn));
    wp_pool_destroy(p);
}

/* An allocation past worker_memory_limit fails in the task alone. */
WP_TEST_BOTH(memory_limit)
{
    /* It cannot work under ASan/TSan: their shadow memory already exceeds
       any sane RLIMIT_AS, so every allocation would fail. */
    if (TU_ASAN || TU_TSAN)
        return;
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = 1, .worker_memory_limit = (size_t)256 << 20 });
    wp_future *g = tu_run(p, tu_pid, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_state(g), WP_SUCCEEDED);
    int pid;
    memcpy(&pid, wp_future_result(g, NULL), sizeof pid);
    size_t big = (size_t)1 << 30, small = (size_t)16 << 20;
    wp_future *f = tu_run(p, alloc_task, &big, sizeof big, NULL);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 12);
    wp_future *h = tu_run(p, alloc_task, &small, sizeof small, NULL);
    tu_check_echo(h, "\1", 1);
    wp_future *k = tu_run(p, tu_pid, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_state(k), WP_SUCCEEDED);
    int pid2;
    memcpy(&pid2, wp_future_result(k, NULL), sizeof pid2);
    ck_assert_int_eq(pid2, pid); /* the same worker carried on */
    wp_pool_stats s = settled_stats(p, 4);
    tu_assert_stats(s, .crashed = TU_EQ(0), .failed = TU_EQ(1), .workers_started = TU_EQ(1));
    wp_future_release(f);
    wp_future_release(g);
    wp_future_release(h);
    wp_future_release(k);
    wp_pool_destroy(p);
}

/* ============================================= 5. crash-loop guard */

/* With a worker_init that always fails, the pool backs off instead of
   forking in a tight loop: in a second, two slots fork a bounded number of
   workers (a tight loop would fork thousands). */
WP_TEST_BOTH(crash_loop_backoff)
{
    init_ctx c = init_ctx_of("inits", -1);
    int64_t t0 = tu_now_ms();
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 2, .worker_init = init_count, .worker_init_ctx = &c });
    long n = 0;
    while (tu_now_ms() - t0 < 1000) { /* watch for one second */
        n = file_size(c.path) / (long)sizeof(int);
        ck_assert_msg(n < 100, "%ld workers forked in %lld ms", n, (long long)(tu_now_ms() - t0));
        tu_poll_pause();
    }
    ck_assert_int_ge(n, 2); /* it did try */
    ck_assert_uint_eq(tu_pool_stats(p).workers_started, 0);
    wp_pool_destroy(p);
    n = file_size(c.path) / (long)sizeof(int);
    ck_assert_msg(n < 100, "%ld workers forked", n);
}

/* ==================================================== 6. stress */

enum { ST_THREADS = 4, ST_TASKS = 1500, ST_N = ST_THREADS * ST_TASKS };
enum { K_ECHO, K_SEGV, K_EXIT, K_FAIL, K_HANG };
#define NOT_CANCELLED 1

typedef struct stress_rec {
    wp_future *f;
    int        kind;
    int        value;      /* echo: the argument; fail: the code */
    int        cancel_rc;  /* NOT_CANCELLED, or what wp_future_cancel said */
    atomic_int calls;
} stress_rec;

typedef struct stress_thread {
    wp_pool    *pool;
    stress_rec *recs;      /* ST_TASKS of them */
    unsigned    seed;
    int         error;     /* a submit or on_done failure */
} stress_thread;

static void stress_cancel(stress_rec *r)
{
    if (r->cancel_rc == NOT_CANCELLED)
        r->cancel_rc = wp_future_cancel(r->f);
}

static void *stress_main(void *arg)
{
    stress_thread *t = arg;
    struct { int index, due; } later[ST_TASKS];
    int nlater = 0;
    for (int k = 0; k < ST_TASKS; k++) {
        stress_rec *r = &t->recs[k];
        int x = rand_r(&t->seed) % 100;
        r->kind = x < 2 ? K_HANG : x < 7 ? K_SEGV : x < 12 ? K_EXIT : x < 22 ? K_FAIL : K_ECHO;
        r->value = r->kind == K_FAIL ? 40 + k % 7 : r->kind == K_EXIT ? 3 : k;
        r->cancel_rc = NOT_CANCELLED;
        atomic_init(&r->calls, 0);
        wp_task_options o = { .timeout_ms = r->kind == K_HANG ? 100 : 0 };
        static const wp_task_fn fns[] = { tu_echo, tu_segv, tu_exit, tu_fail, tu_hang };
        int rc = wp_submit(t->pool, fns[r->kind], &r->value, sizeof r->value, &o, &r->f);
        if (rc == 0)
            rc = wp_future_on_done(r->f, count_done, &r->calls);
        if (rc != 0) {
            t->error = rc;
            return NULL;
        }
        int c = rand_r(&t->seed) % 30;
        if (c == 0) {                       /* right after submit */
            stress_cancel(r);
        } else if (c == 1) {                /* a few submits later */
            later[nlater].index = k;
            later[nlater].due = k + 1 + rand_r(&t->seed) % 8;
            nlater++;
        } else if (c == 2) {                /* after a short random wait */
            wp_future_wait(r->f, rand_r(&t->seed) % 3);
            stress_cancel(r);
        }
        for (int i = 0; i < nlater;)
            if (later[i].due <= k) {
                stress_cancel(&t->recs[later[i].index]);
                later[i] = later[--nlater];
            } else {
                i++;
            }
    }
    for (int i = 0; i < nlater; i++)
        stress_cancel(&t->recs[later[i].index]);
    return NULL;
}

/* Why rec r's outcome is wrong, or NULL. */
static const char *stress_wrong(const stress_rec *r)
{
    if (atomic_load(&r->calls) != 1)
        return "done-callbacks did not run exactly once";
    int st = wp_future_state(r->f), err = wp_future_error(r->f), code = wp_future_code(r->f);
    if (r->cancel_rc != NOT_CANCELLED && r->cancel_rc != 0 && r->cancel_rc != WP_EINVAL)
        return "wp_future_cancel returned something else than 0 or WP_EINVAL";
    if (r->cancel_rc == 0)
        return st == WP_CANCELLED && err == WP_ECANCELED ? NULL
                                                         : "cancel returned 0, not cancelled";
    if (st == WP_CANCELLED)
        return "cancelled, but cancel was not called or said WP_EINVAL";
    switch (r->kind) {
    case K_ECHO: {
        size_t len;
        const void *res = wp_future_result(r->f, &len);
        if (st != WP_SUCCEEDED || res == NULL || len != sizeof r->value ||
            memcmp(res, &r->value, len) != 0)
            return "echo did not echo";
        return NULL;
    }
    case K_SEGV:
        return st == WP_FAILED && err == WP_ECRASHED && code == SIGSEGV ? NULL
                                                                         : "segv did not crash";
    case K_EXIT:
        return st == WP_FAILED && err == WP_ECRASHED && code == 256 + 3 ? NULL
                                                                         : "exit(3) did not crash";
    case K_FAIL:
        return st == WP_FAILED && err == WP_ETASK && code == r->value ? NULL
                                                                       : "fail did not fail";
    default:
        return st == WP_FAILED && err == WP_ETIMEDOUT ? NULL : "hang did not time out";
    }
}

WP_TEST_BOTH(stress_mixed)
{
    /* Four threads allocate all the time while the dispatcher forks:
       WP_START_FORK is documented unsafe then, and ASan's allocator is
       such a case (TU_ASAN in testutil.h).  The fork server is not. */
    if (TU_ASAN && tu_method == WP_START_FORK)
        return;
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 4 });
    stress_rec *recs = calloc(ST_N, sizeof *recs);
    wp_future **fs = calloc(ST_N, sizeof *fs);
    ck_assert_ptr_nonnull(recs);
    ck_assert_ptr_nonnull(fs);
    stress_thread th[ST_THREADS];
    pthread_t tid[ST_THREADS];
    for (int i = 0; i < ST_THREADS; i++) {
        th[i] = (stress_thread){ .pool = p, .recs = recs + i * ST_TASKS,
                                 .seed = 777u * (unsigned)(i + 1) + (unsigned)tu_method };
        ck_assert_int_eq(pthread_create(&tid[i], NULL, stress_main, &th[i]), 0);
    }
    for (int i = 0; i < ST_THREADS; i++) {
        pthread_join(tid[i], NULL);
        ck_assert_msg(th[i].error == 0, "thread %d: submit failed with %d", i, th[i].error);
    }
    for (int i = 0; i < ST_N; i++)
        fs[i] = recs[i].f;
    bool all = quiet_wait_all(fs, ST_N, 100000);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0); /* every callback has run */
    ck_assert_msg(all, "not every future settled");

    uint64_t n_ok = 0, n_failed = 0, n_cancelled = 0, n_crashed = 0, n_timed_out = 0;
    int wrong = 0, first_wrong = -1;
    const char *why = NULL;
    for (int i = 0; i < ST_N; i++) {
        const stress_rec *r = &recs[i];
        const char *w = stress_wrong(r);
        if (w != NULL && wrong++ == 0) {
            first_wrong = i;
            why = w;
        }
        int st = wp_future_state(r->f), err = wp_future_error(r->f);
        n_ok += st == WP_SUCCEEDED;
        n_failed += st == WP_FAILED;
        n_cancelled += st == WP_CANCELLED;
        n_crashed += st == WP_FAILED && err == WP_ECRASHED;
        n_timed_out += st == WP_FAILED && err == WP_ETIMEDOUT;
    }
    ck_assert_msg(wrong == 0, "%d futures wrong; first: task %d (kind %d, cancel %d): %s "
                  "[state %d, error %d, code %d, \"%s\"]", wrong, first_wrong,
                  first_wrong >= 0 ? recs[first_wrong].kind : -1,
                  first_wrong >= 0 ? recs[first_wrong].cancel_rc : 0, why,
                  first_wrong >= 0 ? wp_future_state(recs[first_wrong].f) : 0,
                  first_wrong >= 0 ? wp_future_error(recs[first_wrong].f) : 0,
                  first_wrong >= 0 ? wp_future_code(recs[first_wrong].f) : 0,
                  first_wrong >= 0 ? wp_future_message(recs[first_wrong].f) : "");
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, ST_N);
    tu_assert_stats(s, .submitted = TU_EQ(s.succeeded + s.failed + s.cancelled),
                       .succeeded = TU_EQ(n_ok), .failed = TU_EQ(n_failed),
                       .cancelled = TU_EQ(n_cancelled), .crashed = TU_EQ(n_crashed),
                       .timed_out = TU_EQ(n_timed_out), .retried = TU_EQ(0), .queued = TU_EQ(0),
                       .running = TU_EQ(0), .workers_alive = TU_EQ(0));
    for (int i = 0; i < ST_N; i++)
        wp_future_release(recs[i].f);
    free(fs);
    free(recs);
    wp_pool_destroy(p);
}

/* ======================================================= huge times */

static int shutdown_huge_grace(void *pool)
{
    return wp_pool_shutdown(pool, INT64_MAX - 1);
}

/* Times saturate: a deadline, a wait or a grace up to INT64_MAX means
   "that long", never an overflow (a task killed at once, a dispatcher
   spinning on a deadline in the past). */
WP_TEST_BOTH(huge_times_saturate)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    const int64_t huge[] = { INT64_MAX, INT64_MAX / 1000 + 1, (int64_t)9300000000000000 };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        wp_task_options o = { .timeout_ms = huge[i] };
        int64_t ms = 20;
        wp_future *f = tu_submit(p, tu_sleep, &ms, sizeof ms, &o);
        ck_assert_int_eq(wp_future_wait(f, INT64_MAX), 0);
        tu_check_echo(f, &ms, sizeof ms);
        ck_assert_int_eq(wp_wait_all(&f, 1, INT64_MAX), 0);
        size_t at = 99;
        ck_assert_int_eq(wp_wait_any(&f, 1, INT64_MAX, &at), 0);
        ck_assert_uint_eq(at, 0);
        wp_future_release(f);
    }

    /* A wait that must really wait: INT64_MAX is not "already past". */
    tu_hold h;
    tu_hold_open(&h);
    wp_future *held = tu_submit_held(p, &h, NULL, NULL);
    tu_blocker w;
    tu_blocker_start(&w, shutdown_huge_grace, p);
    /* While shutdown waits out its grace the dispatcher sleeps. */
    tu_assert_not_spinning("waiting out a huge grace");
    ck_assert_int_eq(wp_future_state(held), WP_RUNNING);
    tu_fifo_release(&h.gate, 1);
    ck_assert_int_eq(tu_blocker_join(&w), 0);
    tu_wait_settled(held);
    ck_assert_int_eq(wp_future_error(held), 0);
    wp_future_release(held);
    wp_pool_destroy(p);
    tu_hold_close(&h);
}

/* The descriptor limit: a pool that cannot have the descriptors it needs
   is refused at create (WP_EINVAL); one whose limit is lowered under it
   fails its tasks with WP_ESPAWN, saying why, without spinning, and
   recovers once the limit is back. */
WP_TEST_BOTH(fd_limit)
{
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 4 });
    wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);

    tu_start_symbolizer();
    struct rlimit low = { .rlim_cur = 4, .rlim_max = saved.rlim_max };
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    f = tu_submit(p, tu_empty, NULL, 0, NULL);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    if (w == 0)
        tu_assert_not_spinning("a pool that cannot poll");
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ck_assert_int_eq(w, 0);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    ck_assert_msg(strstr(wp_future_message(f), "ppoll") != NULL, "message: %s",
                  wp_future_message(f));
    wp_future_release(f);
    /* The limit is back: the pool starts workers again and runs tasks. */
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    for (;;) {
        f = tu_submit(p, tu_empty, NULL, 0, NULL);
        tu_wait_settled(f);
        int err = wp_future_error(f);
        wp_future_release(f);
        if (err == 0)
            break;
        ck_assert_int_eq(err, WP_ESPAWN);
        ck_assert_msg(tu_now_ms() < deadline, "the pool never recovered");
        tu_poll_pause();
    }
    wp_pool_destroy(p);

    /* Too low a hard limit: refused at create. */
    struct rlimit tight = { .rlim_cur = 40, .rlim_max = 40 };
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    wp_pool *q = (wp_pool *)&q;
    ck_assert_int_eq(wp_pool_create(&q, &(wp_pool_options){ .workers = 64, .start_method = tu_method }),
                     WP_EINVAL);
    ck_assert_ptr_null(q);
}

/* ============================================ the window's claim race */

/* Runs of each task, counted in memory shared with every worker. */
enum { RACE_TASKS = 6000 };
static atomic_int *race_runs;

static int race_task(const void *arg, size_t len, wp_buf *out)
{
    int i;
    TU_TASK_ARG(i, arg, len, out);
    atomic_fetch_add(&race_runs[i], 1);
    if (i % 500 == 7) /* now and then a long one: windows shrink, tasks get stolen */
        spin_us(3000);
    return wp_buf_append(out, &i, sizeof i);
}

typedef struct race_canceller {
    wp_future **fs;
    unsigned    seed;
    atomic_int *cancelled; /* per task: the cancel returned 0 */
    atomic_int  submitted; /* tasks submitted so far */
} race_canceller;

/* Cancels aim just behind the newest task: the tasks still waiting in a
   window or about to be claimed. */
static void *race_cancel_main(void *arg)
{
    race_canceller *c = arg;
    while (atomic_load(&c->submitted) < RACE_TASKS) {
        int i = atomic_load(&c->submitted) - 1 - (int)(rand_r(&c->seed) % 48);
        if (i < 0)
            continue;
        wp_future *f = atomic_load((wp_future *_Atomic *)&c->fs[i]);
        if (f != NULL && wp_future_cancel(f) == 0)
            atomic_store(&c->cancelled[i], 1);
        spin_us(rand_r(&c->seed) % 8);
    }
    return NULL;
}

/* Cancels race the worker's claim of tasks waiting in its window,
   thousands of times: a task runs at most once, a success ran exactly
   once, a cancel that returned 0 settles cancelled, and nothing is lost or
   fails. */
WP_TEST_BOTH(window_take_back_race)
{
    race_runs = mmap(NULL, RACE_TASKS * sizeof *race_runs, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(race_runs, MAP_FAILED);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_future **fs = calloc(RACE_TASKS, sizeof *fs);
    atomic_int *cancelled = calloc(RACE_TASKS, sizeof *cancelled);
    ck_assert(fs != NULL && cancelled != NULL);
    race_canceller c = { .fs = fs, .seed = 777u + (unsigned)tu_method, .cancelled = cancelled };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, race_cancel_main, &c), 0);
    for (int i = 0; i < RACE_TASKS; i++) {
        wp_future *f = NULL;
        ck_assert_int_eq(wp_submit(p, race_task, &i, sizeof i, NULL, &f), 0);
        atomic_store((wp_future *_Atomic *)&fs[i], f);
        atomic_store(&c.submitted, i + 1);
        if (i % 16 == 0)
            spin_us(20); /* let the workers keep up, so windows hold tasks */
    }
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(wp_wait_all(fs, RACE_TASKS, TU_DEADLINE_MS * 3), 0);
    int ran_cancelled = 0, n_cancelled = 0;
    for (int i = 0; i < RACE_TASKS; i++) {
        int runs = atomic_load(&race_runs[i]), st = wp_future_state(fs[i]);
        ck_assert_msg(runs <= 1, "task %d ran %d times", i, runs);
        if (st == WP_SUCCEEDED) {
            ck_assert_msg(runs == 1, "task %d succeeded without running", i);
            tu_check_echo(fs[i], &i, sizeof i);
        } else {
            ck_assert_msg(st == WP_CANCELLED, "task %d ended %d (%s)", i, st,
                          wp_future_message(fs[i]));
            ck_assert_msg(atomic_load(&cancelled[i]), "task %d cancelled unasked", i);
            ran_cancelled += runs;
            n_cancelled++;
        }
        if (atomic_load(&cancelled[i]))
            ck_assert_msg(st == WP_CANCELLED, "task %d: cancel returned 0, it ended %d", i, st);
        wp_future_release(fs[i]);
    }
    ck_assert_int_gt(n_cancelled, 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(RACE_TASKS), .cancelled = TU_EQ((uint64_t)n_cancelled),
                       .failed = TU_EQ(0));
    wp_pool_destroy(p);
    free(fs);
    free(cancelled);
    munmap(race_runs, RACE_TASKS * sizeof *race_runs);
    fprintf(stderr, "race: %d cancelled (%d of them had started), %llu workers started\n", n_cancelled, ran_cancelled, (unsigned long long)s.workers_started);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "control", .timeout_s = 120, .fork = CK_FORK };
    const tu_test tests[] = {
        TU_TEST(deadline_counts_from_start),
        TU_TEST(deadline_kills_worker),
        TU_TEST(deadline_on_hang),
        TU_TEST(deadline_race_settles_once),
        TU_TEST(cancel_queued),
        TU_TEST(cancel_queued_worker_finishes),
        TU_TEST(cancel_running),
        TU_TEST(cancel_settled),
        TU_TEST(shield_running),
        TU_TEST(shield_queued),
        TU_TEST(shield_survives_shutdown),
        TU_TEST(late_cancel_spares_next),
        TU_TEST(cancel_prefetched),
        TU_TEST(cancel_while_writing),
        TU_TEST(retry_until_success),
        TU_TEST(retries_exhausted),
        TU_TEST(retry_after_crash),
        TU_TEST(retry_after_timeout),
        TU_TEST(retry_delay_doubles),
        TU_TEST(retry_delay_does_not_block),
        TU_TEST(cancel_during_retry_delay),
        TU_TEST(max_tasks_per_worker),
        TU_TEST(worker_init_once_per_worker),
        TU_TEST(worker_init_fails_espawn),
        TU_TEST(worker_init_hangs),
        TU_TEST(worker_init_recovers),
        TU_TEST(memory_limit),
        TU_TEST(crash_loop_backoff),
        TU_TEST(stress_mixed),
        TU_TEST(huge_times_saturate),
        TU_TEST(fd_limit),
        TU_TEST(window_take_back_race),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
