/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_hostile.c — an MPI pool against tasks and programs that do
 * their worst, and the edges of its limits: every task still settles once,
 * nothing hangs, nothing leaks.  A task that kills its serving rank's fork
 * server, one that writes garbage to its result pipe, one whose child keeps
 * that pipe open as the worker dies; answers of exactly max_message bytes
 * and one more; resizing while tasks run; many pools in a row (descriptors
 * counted on every rank); callbacks that submit; the isolating batcher
 * with an item that crashes.
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

/* worker_memory_limit cannot work under ASan or TSan: their shadow memory
   is past any sane RLIMIT_AS. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MT_SANITIZED 1
#endif
#endif
#ifndef MT_SANITIZED
#define MT_SANITIZED 0
#endif

#define FOREVER_S     3600   /* a task that is to be stopped sleeps this long */
#define SMALL_MESSAGE 4096   /* max_message of the limit tests */
#define POOLS_IN_A_ROW 12    /* pools made and destroyed by the leak test */
#define GARBAGE_BYTES 64
#define START_TIMEOUT_MS 200 /* for a worker_init that hangs */
#define MANY_PER_RANK 500    /* 1000 workers in all on three ranks */
#define HUGE_BYTES (((size_t)64 << 20) - 64) /* just under the default max_message */
#define MEMORY_LIMIT ((size_t)256 << 20)
#define HOG_BYTES ((size_t)1 << 30)
#define PRIORITY_TASKS 10
#define BATCH_ITEMS 16
#define POISON_ITEM 5

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_forever(void)
{
    struct timespec t = { FOREVER_S, 0 };
    for (;;)
        nanosleep(&t, NULL);
}

/* result: the int argument */
static int id_task(const void *arg, size_t len, wp_buf *out)
{
    return wp_buf_append(out, arg, len);
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

/* Opens the FIFO named by its argument and reads one byte from it: a task
   that runs until the test lets it go. */
static int gate_task(const void *arg, size_t len, wp_buf *out)
{
    char path[256];
    if (len == 0 || len >= sizeof path)
        return wp_buf_fail(out, 1, "bad path");
    memcpy(path, arg, len);
    path[len] = '\0';
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return wp_buf_fail(out, 1, "no fifo");
    char c;
    ssize_t got = read(fd, &c, 1);
    close(fd);
    return got == 1 ? 0 : wp_buf_fail(out, 1, "no byte");
}

/* Closes the worker's task pipe (its one descriptor past stdio open for
   reading), then answers. */
static int close_task_pipe_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    for (int fd = 3; fd < 1024; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_ACCMODE) == O_RDONLY)
            close(fd);
    }
    return wp_buf_append(out, "x", 1);
}

/* Touches HOG_BYTES, or fails when it cannot have them. */
static int hog_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    char *b = malloc(HOG_BYTES);
    if (b == NULL)
        return wp_buf_fail(out, 12, "no memory");
    memset(b, 1, HOG_BYTES);
    int rc = wp_buf_append(out, &b[HOG_BYTES - 1], 1); /* used: not optimised away */
    free(b);
    return rc;
}

/* result: the argument, whole. */
static int echo_task(const void *arg, size_t len, wp_buf *out)
{
    return wp_buf_append(out, arg, len);
}

/* Each item's result is the item; an item POISON_ITEM crashes the worker. */
static int poison_batch(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        int v;
        memcpy(&v, items[i].data, sizeof v);
        if (v == POISON_ITEM)
            raise(SIGSEGV);
        wp_buf_append(results[i], &v, sizeof v);
    }
    return 0;
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

static wp_future *submit_int(wp_pool *p, wp_task_fn fn, int v, const wp_task_options *o)
{
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, fn, &v, sizeof v, o, &f), 0);
    return f;
}

/* The pool still runs tasks: a batch at once, as many as two per serving
   rank, every one answering its own argument. */
static void still_works(wp_pool *p)
{
    enum { MAX_AT_ONCE = 128 };
    int n = 2 * mt_serving_ranks();
    wp_future *fs[MAX_AT_ONCE];
    ck_assert_int_le(n, MAX_AT_ONCE);
    for (int i = 0; i < n; i++)
        fs[i] = submit_int(p, id_task, i, NULL);
    for (int i = 0; i < n; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        ck_assert_int_eq(*(const int *)wp_future_result(fs[i], NULL), i);
        wp_future_release(fs[i]);
    }
}

START_TEST(forkserver_killed_by_a_task)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = submit_int(p, kill_forkserver_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    wp_future_release(f);
    still_works(p); /* on the other rank */
    int64_t t0 = now_ms();
    mt_pool_done();
    ck_assert_int_lt(now_ms() - t0, MT_DEADLINE_MS / 2);
}
END_TEST

START_TEST(garbage_on_the_result_pipe)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = submit_int(p, garbage_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    wp_future_release(f);
    still_works(p);
    mt_pool_done();
}
END_TEST

/* A crash whose child keeps the result pipe open names its signal at
   once, and the pool goes on, on serving ranks that serve how. */
static void crash_leaving_a_child(enum mt_serve how)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, how);
    wp_future *f = submit_int(p, crash_leaving_child_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    ck_assert_msg(strstr(wp_future_message(f), "SIGSEGV") != NULL, "%s", wp_future_message(f));
    wp_future_release(f);
    still_works(p);
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
    ck_assert_int_eq(wp_submit(p, id_task, arg, sizeof arg, NULL, NULL), WP_E2BIG);
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, id_task, arg, SMALL_MESSAGE, NULL, &f), 0);
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
        fs[i] = submit_int(p, id_task, i, NULL);
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
            f[k] = submit_int(p, rank_fds_task, 0, NULL);
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
            ck_assert_int_eq(wp_submit(p, id_task, &i, sizeof i, NULL, NULL), 0);
        if (k % 2 == 1) {
            wp_future *f = submit_int(p, id_task, k, NULL);
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
    if (wp_submit(c->pool, id_task, &v, sizeof v, NULL, &f) != 0) {
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
    int64_t deadline = now_ms() + MT_DEADLINE_MS;
    while (__atomic_load_n(&c.settled, __ATOMIC_SEQ_CST) < LINKS &&
           __atomic_load_n(&c.failed_submits, __ATOMIC_SEQ_CST) == 0) {
        ck_assert_msg(now_ms() < deadline, "the chain stopped at %d", c.settled);
        wp_future *f = submit_int(p, id_task, 0, NULL); /* waits on something real */
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
    wp_future *f = submit_int(p, id_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    wp_future_release(f);
    int64_t t0 = now_ms();
    mt_pool_done();
    ck_assert_int_lt(now_ms() - t0, MT_DEADLINE_MS / 2);
}
END_TEST

START_TEST(sigchld_ignored_on_the_serving_ranks)
{
    crash_leaving_a_child(MT_NO_SIGCHLD);
}
END_TEST

/* Two gates hold both workers while tasks queue; then shutdown with a
   grace long enough for all: every one runs. */
/* The gate: a FIFO the test holds open (read and write, so no open
   blocks), a byte in it per gate task to let go; the FIFO's name is gone
   as soon as the test closes it. */
static int make_fifo(char *path, size_t size)
{
    snprintf(path, size, "/tmp/wp-mpi-gate-%d", (int)getpid());
    unlink(path);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static void open_gate(int fd, int tasks)
{
    for (int i = 0; i < tasks; i++)
        ck_assert_int_eq(write(fd, "g", 1), 1);
}

static void close_gate(int fd, const char *path)
{
    close(fd);
    unlink(path);
}

static void wait_running(wp_future *f)
{
    int64_t deadline = now_ms() + MT_DEADLINE_MS;
    while (wp_future_state(f) != WP_RUNNING) {
        ck_assert_msg(now_ms() < deadline, "never ran");
        sched_yield(); /* two cores, three ranks: let them run */
    }
}

START_TEST(shutdown_grace_lets_queued_tasks_run)
{
    enum { QUEUED = 40, GRACE_MS = 30000 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    char path[64];
    int gate = make_fifo(path, sizeof path);
    int n = mt_serving_ranks();
    wp_future *gates[64], *fs[QUEUED];
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(wp_submit(p, gate_task, path, strlen(path), NULL, &gates[i]), 0);
    for (int i = 0; i < QUEUED; i++)
        fs[i] = submit_int(p, id_task, i, NULL);
    for (int i = 0; i < n; i++)
        wait_running(gates[i]);
    open_gate(gate, n);
    ck_assert_int_eq(wp_pool_shutdown(p, GRACE_MS), 0);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(wp_future_state(gates[i]), WP_SUCCEEDED);
        wp_future_release(gates[i]);
    }
    for (int i = 0; i < QUEUED; i++) {
        ck_assert_int_eq(wp_future_state(fs[i]), WP_SUCCEEDED);
        wp_future_release(fs[i]);
    }
    close_gate(gate, path);
    mt_pool_done();
}
END_TEST

/* The order tasks settle in, from their done-callbacks (one dispatcher
   thread: no lock needed beyond the atomics for the test's reads). */
typedef struct order {
    int next;
    int seen[2 * PRIORITY_TASKS];
} order;

typedef struct order_ctx {
    order *o;
    int    tag;
} order_ctx;

static void note_order(wp_future *f, void *ctx)
{
    (void)f;
    order_ctx *c = ctx;
    int at = __atomic_fetch_add(&c->o->next, 1, __ATOMIC_SEQ_CST);
    c->o->seen[at] = c->tag;
}

START_TEST(priorities_order_what_waits)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    char path[64];
    int gate = make_fifo(path, sizeof path);
    int n = mt_serving_ranks();
    wp_future *gates[64];
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(wp_submit(p, gate_task, path, strlen(path), NULL, &gates[i]), 0);
    for (int i = 0; i < n; i++)
        wait_running(gates[i]);
    order o = { 0 };
    order_ctx ctx[2 * PRIORITY_TASKS];
    wp_future *fs[2 * PRIORITY_TASKS];
    for (int i = 0; i < 2 * PRIORITY_TASKS; i++) { /* the low ones first */
        int high = i >= PRIORITY_TASKS;
        wp_task_options to = { .priority = high ? WP_PRIORITY_MAX : WP_PRIORITY_MIN };
        fs[i] = submit_int(p, id_task, i, &to);
        ctx[i] = (order_ctx){ .o = &o, .tag = high };
        ck_assert_int_eq(wp_future_on_done(fs[i], note_order, &ctx[i]), 0);
    }
    open_gate(gate, n);
    for (int i = 0; i < 2 * PRIORITY_TASKS; i++)
        mt_wait_state(fs[i], WP_SUCCEEDED);
    /* n workers: the last n - 1 high ones may finish after a low one started */
    for (int i = 0; i < PRIORITY_TASKS - (n - 1); i++)
        ck_assert_msg(o.seen[i] == 1, "settled %d was a low-priority task", i);
    for (int i = 0; i < 2 * PRIORITY_TASKS; i++)
        wp_future_release(fs[i]);
    for (int i = 0; i < n; i++)
        wp_future_release(gates[i]);
    close_gate(gate, path);
    mt_pool_done();
}
END_TEST

START_TEST(isolating_batcher_with_a_crashing_item)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_batcher *b;
    wp_batcher_options bo = { .max_batch_size = BATCH_ITEMS, .isolate = 1 };
    ck_assert_int_eq(wp_batcher_create(&b, p, poison_batch, &bo), 0);
    wp_future *fs[BATCH_ITEMS];
    for (int i = 0; i < BATCH_ITEMS; i++)
        ck_assert_int_eq(wp_batcher_submit(b, &i, sizeof i, &fs[i]), 0);
    ck_assert_int_eq(wp_batcher_flush(b), 0);
    for (int i = 0; i < BATCH_ITEMS; i++) {
        mt_wait_state(fs[i], i == POISON_ITEM ? WP_FAILED : WP_SUCCEEDED);
        if (i == POISON_ITEM)
            ck_assert_int_eq(wp_future_error(fs[i]), WP_ECRASHED);
        else
            ck_assert_int_eq(*(const int *)wp_future_result(fs[i], NULL), i);
        wp_future_release(fs[i]);
    }
    wp_batcher_destroy(b);
    mt_pool_done();
}
END_TEST

START_TEST(a_thousand_workers)
{
    unsigned all = MANY_PER_RANK * (unsigned)mt_serving_ranks();
    if (all > 1024)
        return; /* past the pool's limit: wp_mpi_pool_create refuses it */
    wp_pool *p = mt_pool((wp_pool_options){ .workers = MANY_PER_RANK }, MT_PLAIN);
    wp_future **fs = calloc(all, sizeof *fs);
    ck_assert_ptr_nonnull(fs);
    for (unsigned i = 0; i < all; i++)
        fs[i] = submit_int(p, id_task, (int)i, NULL);
    for (unsigned i = 0; i < all; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        wp_future_release(fs[i]);
    }
    free(fs);
    int64_t t0 = now_ms();
    mt_pool_done();
    ck_assert_int_lt(now_ms() - t0, MT_DEADLINE_MS / 2);
}
END_TEST

START_TEST(huge_argument_and_result)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    char *arg = malloc(HUGE_BYTES);
    ck_assert_ptr_nonnull(arg);
    for (size_t i = 0; i < HUGE_BYTES; i++)
        arg[i] = (char)(i * 13);
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, echo_task, arg, HUGE_BYTES, NULL, &f), 0);
    mt_wait_state(f, WP_SUCCEEDED);
    size_t len = 0;
    const char *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, HUGE_BYTES);
    ck_assert(memcmp(r, arg, HUGE_BYTES) == 0);
    wp_future_release(f);
    free(arg);
    mt_pool_done();
}
END_TEST

START_TEST(memory_limit_and_a_closed_task_pipe)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1,
                                            .worker_memory_limit = MT_SANITIZED ? 0 : MEMORY_LIMIT },
                         MT_PLAIN);
    wp_future *f;
    if (!MT_SANITIZED) {
        f = submit_int(p, hog_task, 0, NULL);
        mt_wait_state(f, WP_FAILED);
        wp_future_release(f);
    }
    still_works(p);
    /* Last: its worker dies at its next read, and a task sent to it by
       then would fail with it (a relayed task is started as it is sent). */
    f = submit_int(p, close_task_pipe_task, 0, NULL);
    ck_assert_int_eq(wp_future_wait(f, MT_DEADLINE_MS), 0);
    ck_assert_int_ne(wp_future_state(f), WP_PENDING);
    wp_future_release(f);
    mt_pool_done();
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
    tcase_add_test(tc, shutdown_grace_lets_queued_tasks_run);
    tcase_add_test(tc, priorities_order_what_waits);
    tcase_add_test(tc, isolating_batcher_with_a_crashing_item);
    tcase_add_test(tc, huge_argument_and_result);
    tcase_add_test(tc, memory_limit_and_a_closed_task_pipe);
    tcase_add_test(tc, a_thousand_workers);
    return tc;
}
