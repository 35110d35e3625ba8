/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_hostile.c — an MPI pool against tasks and programs that do
 * their worst, and the edges of its limits: every task still settles once,
 * nothing hangs, nothing leaks.  A task that kills its serving rank's fork
 * server, one that writes garbage to its result pipe, one whose child keeps
 * that pipe open as the worker dies; answers of exactly max_message bytes
 * and one more; resizing while tasks run; many pools in a row (descriptors
 * counted on every rank); callbacks that submit; a worker_init that
 * hangs; SIGCHLD ignored on the serving ranks (check_mpi_limits.c has the
 * edges of size, order and shutdown).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_mpi.h"

#define FOREVER_S     3600   /* a task that is to be stopped sleeps this long */
#define SMALL_MESSAGE 4096   /* max_message of the limit tests */
#define POOLS_IN_A_ROW 12    /* pools made and destroyed by the leak test */
#define GARBAGE_BYTES 64
#define START_TIMEOUT_MS 200 /* for a worker_init that hangs */

static void sleep_forever(void)
{
    struct timespec t = { FOREVER_S, 0 };
    for (;;)
        nanosleep(&t, NULL);
}

/* Kills this worker's fork server (its parent), then waits to die with it. */
static int kill_forkserver_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    kill(getppid(), SIGKILL);
    sleep_forever();
    return 0;
}

/* The worker's result pipe: its one descriptor past stdio open for writing. */
static int result_pipe_fd(void)
{
    for (int fd = 3; fd < 1024; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_ACCMODE) == O_WRONLY)
            return fd;
    }
    return -1;
}

/* Writes garbage where the worker's answers go, then answers as usual. */
static int garbage_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    char junk[GARBAGE_BYTES];
    memset(junk, 0xa5, sizeof junk);
    int fd = result_pipe_fd();
    if (fd >= 0 && write(fd, junk, sizeof junk) < 0)
        return wp_buf_fail(out, 1, "write failed");
    return wp_buf_append(out, "x", 1);
}

/* Forks a child that keeps every descriptor (the result pipe too) and
   sleeps; then the worker crashes. */
static int crash_leaving_child_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    if (fork() == 0)
        sleep_forever();
    raise(SIGSEGV);
    return 0;
}

/* result: *(size_t *)arg bytes. */
static int sized_task(const void *arg, size_t len, wp_buf *out)
{
    size_t n = 0;
    if (len == sizeof n)
        memcpy(&n, arg, sizeof n);
    char *b = malloc(n > 0 ? n : 1);
    if (b == NULL)
        return wp_buf_fail(out, 1, "no memory");
    memset(b, 'r', n);
    int rc = wp_buf_append(out, b, n);
    free(b);
    return rc;
}

/* How many descriptors this worker's serving rank (the fork server's
   parent) has open. */
static int rank_fds_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)getppid());
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(stat, sizeof stat, f) == NULL) {
        if (f != NULL)
            fclose(f);
        return wp_buf_fail(out, 1, "no stat");
    }
    fclose(f);
    int rank_pid = 0;
    char *close_paren = strrchr(stat, ')');
    if (close_paren == NULL || sscanf(close_paren + 1, " %*c %d", &rank_pid) != 1)
        return wp_buf_fail(out, 1, "bad stat");
    snprintf(path, sizeof path, "/proc/%d/fd", rank_pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return wp_buf_fail(out, 1, "no fd dir");
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    int r[2] = { mt_worker_rank(), n };
    return wp_buf_append(out, r, sizeof r);
}

static int self_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

START_TEST(forkserver_killed_by_a_task)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = mt_submit_int(p, kill_forkserver_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    wp_future_release(f);
    mt_still_works(p); /* on the other rank */
    mt_pool_done_promptly();
}
END_TEST

START_TEST(garbage_on_the_result_pipe)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = mt_submit_int(p, garbage_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    wp_future_release(f);
    mt_still_works(p);
    mt_pool_done();
}
END_TEST

/* A crash whose child keeps the result pipe open names its signal at
   once, and the pool goes on, on serving ranks that serve how. */
static void crash_leaving_a_child(enum mt_serve how)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, how);
    wp_future *f = mt_submit_int(p, crash_leaving_child_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    ck_assert_msg(strstr(wp_future_message(f), "SIGSEGV") != NULL, "%s", wp_future_message(f));
    wp_future_release(f);
    mt_still_works(p);
    mt_pool_done();
}

START_TEST(child_keeps_the_result_pipe_open)
{
    crash_leaving_a_child(MT_PLAIN);
}
END_TEST

START_TEST(answers_at_max_message_and_one_over)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1, .max_message = SMALL_MESSAGE }, MT_PLAIN);
    size_t sizes[] = { SMALL_MESSAGE, SMALL_MESSAGE + 1, 0 };
    int want[] = { WP_SUCCEEDED, WP_FAILED, WP_SUCCEEDED };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        wp_future *f;
        ck_assert_int_eq(wp_submit(p, sized_task, &sizes[i], sizeof sizes[i], NULL, &f), 0);
        mt_wait_state(f, want[i]);
        size_t len = 0;
        if (want[i] == WP_SUCCEEDED) {
            (void)wp_future_result(f, &len);
            ck_assert_uint_eq(len, sizes[i]);
        } else {
            ck_assert_int_eq(wp_future_error(f), WP_E2BIG);
        }
        wp_future_release(f);
    }
    char arg[SMALL_MESSAGE + 1] = { 0 };
    ck_assert_int_eq(wp_submit(p, mt_id_task, arg, sizeof arg, NULL, NULL), WP_E2BIG);
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, mt_id_task, arg, SMALL_MESSAGE, NULL, &f), 0);
    mt_wait_state(f, WP_SUCCEEDED);
    wp_future_release(f);
    mt_pool_done();
}
END_TEST

START_TEST(resize_while_tasks_run)
{
    enum { N = 200 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *fs[N];
    unsigned sizes[] = { 8, 1, 5, 2, 9, 1 };
    for (int i = 0; i < N; i++) {
        fs[i] = mt_submit_int(p, mt_id_task, i, NULL);
        if (i % (N / 6) == 0)
            ck_assert_int_eq(wp_pool_resize(p, sizes[(i / (N / 6)) % 6]), 0);
    }
    for (int i = 0; i < N; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        ck_assert_int_eq(*(const int *)wp_future_result(fs[i], NULL), i);
        wp_future_release(fs[i]);
    }
    mt_pool_done();
}
END_TEST

/* Many pools in a row, each destroyed while its workers start and its
   tasks wait: no descriptor is left behind on the root or on a serving
   rank. */
static void serving_fds(int *per_rank, int nranks)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    for (int i = 0; i < nranks; i++)
        per_rank[i] = -1;
    for (int tries = 0; tries < 4 * nranks; tries++) {
        wp_future *f[2];
        for (int k = 0; k < 2; k++)
            f[k] = mt_submit_int(p, rank_fds_task, 0, NULL);
        for (int k = 0; k < 2; k++) {
            mt_wait_state(f[k], WP_SUCCEEDED);
            int r[2];
            memcpy(r, wp_future_result(f[k], NULL), sizeof r);
            if (r[0] >= 1 && r[0] <= nranks)
                per_rank[r[0] - 1] = r[1];
            wp_future_release(f[k]);
        }
    }
    mt_pool_done();
}

START_TEST(pools_in_a_row_leak_nothing)
{
    int n = mt_serving_ranks();
    int before[64], after[64];
    ck_assert_int_le(n, 64);
    serving_fds(before, n);
    int root_before = self_fds();
    for (int k = 0; k < POOLS_IN_A_ROW; k++) {
        wp_pool *p = mt_pool((wp_pool_options){ .workers = 8 }, MT_PLAIN);
        for (int i = 0; i < 16; i++)
            ck_assert_int_eq(wp_submit(p, mt_id_task, &i, sizeof i, NULL, NULL), 0);
        if (k % 2 == 1) {
            wp_future *f = mt_submit_int(p, mt_id_task, k, NULL);
            mt_wait_state(f, WP_SUCCEEDED);
            wp_future_release(f);
        }
        mt_pool_done();
    }
    ck_assert_int_eq(self_fds(), root_before);
    serving_fds(after, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(before[i] == after[i], "rank %d: %d descriptors, %d before", i + 1,
                      after[i], before[i]);
}
END_TEST

/* A done-callback that submits the next task, until it has made `left`. */
typedef struct chain {
    wp_pool *pool;
    int      left, settled, failed_submits;
} chain;

static void chain_next(wp_future *f, void *ctx);

static void chain_submit(chain *c)
{
    wp_future *f;
    int v = c->left;
    if (wp_submit(c->pool, mt_id_task, &v, sizeof v, NULL, &f) != 0) {
        __atomic_add_fetch(&c->failed_submits, 1, __ATOMIC_SEQ_CST);
        return;
    }
    if (wp_future_on_done(f, chain_next, c) != 0)
        __atomic_add_fetch(&c->failed_submits, 1, __ATOMIC_SEQ_CST);
    wp_future_release(f);
}

static void chain_next(wp_future *f, void *ctx)
{
    chain *c = ctx;
    (void)f;
    if (--c->left > 0)
        chain_submit(c);
    __atomic_add_fetch(&c->settled, 1, __ATOMIC_SEQ_CST);
}

START_TEST(callbacks_submit_the_next_task)
{
    enum { LINKS = 50 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    chain c = { .pool = p, .left = LINKS };
    chain_submit(&c);
    int64_t deadline = mt_now_ms() + MT_DEADLINE_MS;
    while (__atomic_load_n(&c.settled, __ATOMIC_SEQ_CST) < LINKS &&
           __atomic_load_n(&c.failed_submits, __ATOMIC_SEQ_CST) == 0) {
        ck_assert_msg(mt_now_ms() < deadline, "the chain stopped at %d", c.settled);
        wp_future *f = mt_submit_int(p, mt_id_task, 0, NULL); /* waits on something real */
        mt_wait_state(f, WP_SUCCEEDED);
        wp_future_release(f);
    }
    ck_assert_int_eq(c.failed_submits, 0);
    mt_pool_done();
}
END_TEST

START_TEST(worker_init_hangs_past_start_timeout)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1, .start_timeout_ms = START_TIMEOUT_MS },
                         MT_INIT_HANGS);
    wp_future *f = mt_submit_int(p, mt_id_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    wp_future_release(f);
    mt_pool_done_promptly();
}
END_TEST

START_TEST(sigchld_ignored_on_the_serving_ranks)
{
    crash_leaving_a_child(MT_NO_SIGCHLD);
}
END_TEST

TCase *mt_hostile_tcase(void)
{
    TCase *tc = tcase_create("hostile");
    tcase_add_test(tc, garbage_on_the_result_pipe);
    tcase_add_test(tc, child_keeps_the_result_pipe_open);
    tcase_add_test(tc, answers_at_max_message_and_one_over);
    tcase_add_test(tc, resize_while_tasks_run);
    tcase_add_test(tc, pools_in_a_row_leak_nothing);
    tcase_add_test(tc, callbacks_submit_the_next_task);
    tcase_add_test(tc, forkserver_killed_by_a_task);
    tcase_add_test(tc, worker_init_hangs_past_start_timeout);
    tcase_add_test(tc, sigchld_ignored_on_the_serving_ranks);
    return tc;
}
