/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_chaos.c — the chaos suite's task mix across ranks: three
 * threads submit successes, crashes, tasks that overrun their deadline,
 * tasks a fourth thread cancels at random moments, tasks that retry, and
 * tasks whose worker is SIGKILLed at a random moment — during the task or
 * after it, while the worker runs the next one or sits idle (a child of
 * the task does it).  Every future must settle exactly once (counted by a
 * done-callback) with an outcome its kind allows, every success must carry
 * its own result, and the stats must add up.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_mpi.h"

#define CHAOS_TASKS     1200
#define CHAOS_THREADS   3
#define HANG_MS         60000
#define DEADLINE_MIN_MS 30
#define DEADLINE_SPAN_MS 200
#define KILL_SPAN_US    5000   /* a killer waits up to this long */
#define CANCEL_SPAN_US  20000  /* the canceller waits up to this long per cancel */
#define NAP_SPAN_US     3000

enum kind { K_OK, K_CRASH, K_HANG, K_CANCEL, K_KILL, K_RETRY, K_KINDS };

typedef struct chaos_arg {
    int      kind;
    int      value;
    unsigned nap_us, kill_us;
} chaos_arg;

typedef struct chaos_task {
    chaos_arg           arg;
    _Atomic(wp_future *) f;
    atomic_int          settled;
} chaos_task;

static chaos_task tasks[CHAOS_TASKS];

static void nap_us(unsigned us)
{
    struct timespec t = { us / 1000000u, (long)(us % 1000000u) * 1000L };
    while (nanosleep(&t, &t) != 0)
        ;
}

static int chaos_task_fn(const void *arg, size_t len, wp_buf *out)
{
    chaos_arg a;
    if (len != sizeof a)
        return wp_buf_fail(out, 1, "bad argument");
    memcpy(&a, arg, sizeof a);
    switch (a.kind) {
    case K_CRASH:
    case K_RETRY:
        abort();
    case K_HANG:
        nap_us(HANG_MS * 1000u);
        break;
    case K_KILL: {
        pid_t worker = getpid(); /* not getppid() in the child: that may be a subreaper */
        pid_t pid = fork();
        if (pid == 0) { /* dies with the worker's group if the worker goes first */
            nap_us(a.kill_us);
            kill(worker, SIGKILL);
            _exit(0);
        }
        break;
    }
    default:
        break;
    }
    nap_us(a.nap_us);
    int r = a.value * 3 + 1;
    return wp_buf_append(out, &r, sizeof r);
}

static void count_settle(wp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add(&((chaos_task *)ctx)->settled, 1);
}

typedef struct submitter {
    wp_pool *pool;
    int      first, step;
} submitter;

static void *submit_main(void *arg)
{
    const submitter *s = arg;
    for (int i = s->first; i < CHAOS_TASKS; i += s->step) {
        chaos_task *t = &tasks[i];
        wp_task_options o = { 0 };
        if (t->arg.kind == K_HANG)
            o.timeout_ms = DEADLINE_MIN_MS + t->arg.value % DEADLINE_SPAN_MS;
        if (t->arg.kind == K_RETRY)
            o.retries = 1;
        wp_future *f = NULL;
        if (wp_submit(s->pool, chaos_task_fn, &t->arg, sizeof t->arg, &o, &f) != 0)
            return (void *)1;
        wp_future_on_done(f, count_settle, t);
        atomic_store(&t->f, f);
    }
    return NULL;
}

static void *cancel_main(void *arg)
{
    unsigned seed = *(unsigned *)arg;
    for (int i = 0; i < CHAOS_TASKS; i++) {
        if (tasks[i].arg.kind != K_CANCEL)
            continue;
        wp_future *f;
        while ((f = atomic_load(&tasks[i].f)) == NULL)
            nap_us(1); /* published by its submitter any moment now */
        nap_us((unsigned)rand_r(&seed) % CANCEL_SPAN_US);
        (void)wp_future_cancel(f);
    }
    return NULL;
}

static bool allowed(int kind, int state, int error)
{
    bool crashed = state == WP_FAILED && error == WP_ECRASHED;
    switch (kind) {
    case K_OK:
    case K_KILL:   return state == WP_SUCCEEDED || crashed; /* a killer may hit anyone */
    case K_CRASH:
    case K_RETRY:  return crashed;
    case K_HANG:   return crashed || (state == WP_FAILED && error == WP_ETIMEDOUT);
    case K_CANCEL: return state == WP_SUCCEEDED || state == WP_CANCELLED || crashed;
    }
    return false;
}

START_TEST(chaos_across_ranks)
{
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "chaos_across_ranks: seed %u\n", seed);
    for (int i = 0; i < CHAOS_TASKS; i++) {
        chaos_task *t = &tasks[i];
        int r = rand_r(&seed) % 100;
        int kind = r < 50 ? K_OK : r < 60 ? K_CRASH : r < 68 ? K_HANG : r < 82 ? K_CANCEL
                 : r < 92 ? K_KILL : K_RETRY;
        t->arg = (chaos_arg){ .kind = kind, .value = i,
                              .nap_us = (unsigned)rand_r(&seed) % NAP_SPAN_US,
                              .kill_us = (unsigned)rand_r(&seed) % KILL_SPAN_US };
        atomic_store(&t->f, NULL);
        atomic_store(&t->settled, 0);
    }
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 2 }, MT_PLAIN);
    pthread_t th[CHAOS_THREADS], canceller;
    submitter subs[CHAOS_THREADS];
    for (int i = 0; i < CHAOS_THREADS; i++) {
        subs[i] = (submitter){ p, i, CHAOS_THREADS };
        ck_assert_int_eq(pthread_create(&th[i], NULL, submit_main, &subs[i]), 0);
    }
    unsigned cseed = seed ^ 0x5bd1e995u;
    ck_assert_int_eq(pthread_create(&canceller, NULL, cancel_main, &cseed), 0);
    for (int i = 0; i < CHAOS_THREADS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        ck_assert_ptr_null(rv);
    }
    pthread_join(canceller, NULL);
    int counts[5] = { 0 }, wrong = 0;
    for (int i = 0; i < CHAOS_TASKS; i++) {
        chaos_task *t = &tasks[i];
        wp_future *f = atomic_load(&t->f);
        ck_assert_int_eq(wp_future_wait(f, MT_DEADLINE_MS), 0);
        int st = wp_future_state(f), err = wp_future_error(f);
        if (!allowed(t->arg.kind, st, err)) {
            fprintf(stderr, "task %d, kind %d: state %d, %s: %s\n", i, t->arg.kind, st,
                    wp_strerror(err), wp_future_message(f));
            wrong++;
        }
        if (st == WP_SUCCEEDED)
            ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), i * 3 + 1);
        counts[st]++;
    }
    ck_assert_msg(wrong == 0, "%d tasks settled as their kind does not allow", wrong);
    wp_pool_stats s;
    ck_assert_int_eq(wp_pool_get_stats(p, &s), 0);
    mt_pool_done(); /* every callback has run once the pool is gone */
    for (int i = 0; i < CHAOS_TASKS; i++) {
        ck_assert_msg(atomic_load(&tasks[i].settled) == 1, "task %d settled %d times", i,
                      atomic_load(&tasks[i].settled));
        wp_future_release(atomic_load(&tasks[i].f));
    }
    ck_assert_uint_eq(s.submitted, CHAOS_TASKS);
    ck_assert_uint_eq(s.succeeded, (uint64_t)counts[WP_SUCCEEDED]);
    ck_assert_uint_eq(s.failed, (uint64_t)counts[WP_FAILED]);
    ck_assert_uint_eq(s.cancelled, (uint64_t)counts[WP_CANCELLED]);
    fprintf(stderr, "chaos_across_ranks: %d tasks: %d succeeded, %d failed (%llu crashed, %llu "
            "timed out), %d cancelled; %llu retried, %llu workers started\n", CHAOS_TASKS,
            counts[WP_SUCCEEDED], counts[WP_FAILED], (unsigned long long)s.crashed,
            (unsigned long long)s.timed_out, counts[WP_CANCELLED], (unsigned long long)s.retried,
            (unsigned long long)s.workers_started);
}
END_TEST

TCase *mt_chaos_tcase(void)
{
    TCase *tc = tcase_create("chaos");
    tcase_add_test(tc, chaos_across_ranks);
    return tc;
}
