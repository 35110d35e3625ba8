/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_limits.c — an MPI pool at the edges of size, order and
 * shutdown: a shutdown's grace lets queued tasks run, priorities order
 * what waits on the root, the isolating batcher corners a crashing item,
 * a thousand workers start and stop, arguments and results of nearly
 * 64 MiB cross whole, worker_memory_limit holds, and a task that closes
 * its own task pipe settles.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

#define MANY_PER_RANK 500    /* 1000 workers in all on three ranks */
#define HUGE_BYTES (((size_t)64 << 20) - 64) /* just under the default max_message */
#define MEMORY_LIMIT ((size_t)256 << 20)
#define HOG_BYTES ((size_t)1 << 30)
#define PRIORITY_TASKS 10
#define BATCH_ITEMS 16
#define POISON_ITEM 5

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
        fs[i] = mt_submit_int(p, mt_id_task, i, NULL);
    for (int i = 0; i < n; i++)
        mt_wait_running(gates[i]);
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
        mt_wait_running(gates[i]);
    order o = { 0 };
    order_ctx ctx[2 * PRIORITY_TASKS];
    wp_future *fs[2 * PRIORITY_TASKS];
    for (int i = 0; i < 2 * PRIORITY_TASKS; i++) { /* the low ones first */
        int high = i >= PRIORITY_TASKS;
        wp_task_options to = { .priority = high ? WP_PRIORITY_MAX : WP_PRIORITY_MIN };
        fs[i] = mt_submit_int(p, mt_id_task, i, &to);
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
        fs[i] = mt_submit_int(p, mt_id_task, (int)i, NULL);
    for (unsigned i = 0; i < all; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        wp_future_release(fs[i]);
    }
    free(fs);
    mt_pool_done_promptly();
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
        f = mt_submit_int(p, hog_task, 0, NULL);
        mt_wait_state(f, WP_FAILED);
        wp_future_release(f);
    }
    mt_still_works(p);
    /* Last: its worker dies at its next read, and a task sent to it by
       then would fail with it (a relayed task is started as it is sent). */
    f = mt_submit_int(p, close_task_pipe_task, 0, NULL);
    ck_assert_int_eq(wp_future_wait(f, MT_DEADLINE_MS), 0);
    ck_assert_int_ne(wp_future_state(f), WP_PENDING);
    wp_future_release(f);
    mt_pool_done();
}
END_TEST

TCase *mt_limits_tcase(void)
{
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, shutdown_grace_lets_queued_tasks_run);
    tcase_add_test(tc, priorities_order_what_waits);
    tcase_add_test(tc, isolating_batcher_with_a_crashing_item);
    tcase_add_test(tc, huge_argument_and_result);
    tcase_add_test(tc, memory_limit_and_a_closed_task_pipe);
    tcase_add_test(tc, a_thousand_workers);
    return tc;
}
