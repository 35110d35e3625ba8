/* SPDX-License-Identifier: MIT */
/*
 * chaos_priority.c — the line under fire (part of check_chaos): threads
 * submit thousands of tasks of every priority, with random queue
 * deadlines, run deadlines and retries, a thread cancels some of them,
 * the killer SIGKILLs workers at random moments and another thread
 * resizes the pool at random (docs/ARCHITECTURE.md, "Priorities and queue
 * deadlines", "Resizing").  The bug class: a task lost, settled twice or
 * run after its queue deadline when a take-back (preempt, a give that
 * takes back from every window, a steal, a retiring slot) meets a death,
 * a retry or a deadline.
 *
 * Every future must settle exactly once (counted done-callbacks), as
 * succeeded (with its own bytes), crashed (the killer's SIGKILL), timed
 * out (only a task with a run deadline), expired (only a task with a
 * queue deadline, and its function never entered: the mark chaos_task
 * leaves in the shared page) or cancelled (always, when a cancel
 * returned 0); no task may run more often than its attempts allow; and
 * the stats must add up to the futures.
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"

#define PR_TASKS          12000  /* plain build (tu_scaled) */
#define PR_SUBMITTERS     4
#define PR_MAX_WORKERS    4      /* resized at random within 1 .. this */
#define PR_PAYLOAD        24     /* argument and result bytes */
#define PR_SEED           13u    /* their pattern */
#define PR_BURST_MAX      48     /* a submitter's tasks between pauses */
#define PR_PAUSE_US_MAX   4000
#define PR_RUN_US_MAX     200    /* most tasks */
#define PR_LONG_ONE_IN    16     /* ... and one in this runs up to */
#define PR_LONG_US_MAX    2000
#define PR_QUEUE_ONE_IN   3      /* tasks with a queue deadline of */
#define PR_QUEUE_MS_MAX   60     /* 1 .. this */
#define PR_TIMEOUT_ONE_IN 64     /* tasks that outlive a run deadline of */
#define PR_TIMEOUT_MS_MAX 3      /* 1 .. this, running */
#define PR_TIMEOUT_RUN_US 20000  /* this long */
#define PR_RETRIES_MAX    2
#define PR_RETRY_MS_MAX   4
#define PR_CANCEL_ONE_IN  10     /* tasks the canceller aims at, in all */
#define PR_CANCEL_US_MAX  300    /* between its cancels */
#define PR_RESIZE_US_MAX  3000   /* between resizes */
#define PR_KILL_GAP_US    1000   /* between kills, at most */
#define PR_DEADLINE_MS    50000  /* under Check's 60 s */
#define PR_SLACK_MIN      2      /* crashes that never entered their function: */
#define PR_SLACK_PER      8      /* a few, as chaos_check_unentered says why */
#define PR_SALT_KILLER    0x2545f491u
#define PR_SALT_RESIZER   0x9e3779b9u
#define PR_SALT_CANCELLER 0x85ebca6bu

/* What a task was submitted with, to judge its outcome by. */
typedef struct pr_task {
    chaos_rec rec;
    unsigned  retries;
    bool      run_deadline, queue_deadline;
} pr_task;

typedef struct pr_run {
    wp_pool     *pool;
    pr_task     *tasks;
    unsigned     n;
    atomic_uint  published[PR_SUBMITTERS]; /* tasks each submitter has set up */
    atomic_bool  stop;                     /* every future has settled */
    atomic_int   error;                    /* a call that failed, or 0 */
    uint64_t     seed;
    unsigned     resizes, cancels;
} pr_run;

typedef struct pr_thread {
    pr_run   *run;
    unsigned  id;
    pthread_t thread;
} pr_thread;

static char pr_pattern[PR_PAYLOAD];

static void pr_fail(pr_run *r, int rc)
{
    int none = 0;
    atomic_compare_exchange_strong(&r->error, &none, rc);
}

/* The options of task i: a random priority, and the rest one in so many. */
static wp_task_options pr_options(pr_task *t, uint64_t *rng, uint32_t *run_us)
{
    wp_task_options o = { .priority = WP_PRIORITY_MIN +
                          (int)tu_rand_below(rng, WP_PRIORITY_MAX - WP_PRIORITY_MIN + 1) };
    t->retries = (unsigned)tu_rand_below(rng, PR_RETRIES_MAX + 1);
    o.retries = t->retries;
    o.retry_delay_ms = (unsigned)tu_rand_below(rng, PR_RETRY_MS_MAX + 1);
    t->queue_deadline = tu_rand_below(rng, PR_QUEUE_ONE_IN) == 0;
    if (t->queue_deadline)
        o.queue_timeout_ms = 1 + (int64_t)tu_rand_below(rng, PR_QUEUE_MS_MAX);
    t->run_deadline = tu_rand_below(rng, PR_TIMEOUT_ONE_IN) == 0;
    *run_us = (uint32_t)tu_rand_below(rng, tu_rand_below(rng, PR_LONG_ONE_IN) == 0
                                               ? PR_LONG_US_MAX + 1 : PR_RUN_US_MAX + 1);
    if (t->run_deadline) {
        o.timeout_ms = 1 + (int64_t)tu_rand_below(rng, PR_TIMEOUT_MS_MAX);
        *run_us = PR_TIMEOUT_RUN_US;
    }
    return o;
}

/* Submitter id: every PR_SUBMITTERS-th task from id on, in bursts. */
static void *pr_submitter(void *arg)
{
    pr_thread *th = arg;
    pr_run *r = th->run;
    uint64_t rng = r->seed + th->id;
    unsigned k = 0, burst = 0;
    for (unsigned i = th->id; i < r->n && atomic_load(&r->error) == 0; i += PR_SUBMITTERS, k++) {
        pr_task *t = &r->tasks[i];
        uint32_t run_us;
        wp_task_options o = pr_options(t, &rng, &run_us);
        int rc = chaos_submit_with(r->pool, &t->rec, i, pr_pattern, PR_SEED, PR_PAYLOAD,
                                   PR_PAYLOAD, run_us, &o, chaos_count_done);
        if (rc != 0) {
            pr_fail(r, rc);
            break;
        }
        atomic_store(&r->published[th->id], k + 1); /* t->rec.f is set */
        if (burst-- == 0) {
            burst = (unsigned)tu_rand_below(&rng, PR_BURST_MAX);
            tu_sleep_us(tu_rand_below(&rng, PR_PAUSE_US_MAX + 1));
        }
    }
    return NULL;
}

/* Cancel tasks already submitted, at random, until told to stop or it
   has aimed at its share. */
static void *pr_canceller(void *arg)
{
    pr_run *r = arg;
    uint64_t rng = r->seed ^ PR_SALT_CANCELLER;
    unsigned aims = r->n / PR_CANCEL_ONE_IN;
    for (unsigned c = 0; c < aims && !atomic_load(&r->stop); c++) {
        unsigned th = (unsigned)tu_rand_below(&rng, PR_SUBMITTERS);
        unsigned have = atomic_load(&r->published[th]);
        if (have > 0) {
            chaos_rec *rec = &r->tasks[th + PR_SUBMITTERS * tu_rand_below(&rng, have)].rec;
            int rc = wp_future_cancel(rec->f);
            if (rc == 0)
                atomic_store(&rec->cancel_ok, 1);
            else if (rc != WP_EINVAL) /* settled already; nothing is shielded */
                pr_fail(r, rc);
            r->cancels++;
        }
        tu_sleep_us(tu_rand_below(&rng, PR_CANCEL_US_MAX + 1));
    }
    return NULL;
}

static void *pr_resizer(void *arg)
{
    pr_run *r = arg;
    uint64_t rng = r->seed ^ PR_SALT_RESIZER;
    while (!atomic_load(&r->stop)) {
        int rc = wp_pool_resize(r->pool, 1 + (unsigned)tu_rand_below(&rng, PR_MAX_WORKERS));
        if (rc != 0) {
            pr_fail(r, rc);
            break;
        }
        r->resizes++;
        tu_sleep_us(tu_rand_below(&rng, PR_RESIZE_US_MAX + 1));
    }
    return NULL;
}

/* The outcomes this test tells apart. */
enum { PR_OK, PR_KILLED, PR_TIMED_OUT, PR_EXPIRED, PR_CANCELLED, PR_OUTCOMES };

typedef struct pr_tally {
    unsigned n[PR_OUTCOMES];
    unsigned unentered_kills; /* crashed, the function never entered */
} pr_tally;

/* Task t's outcome, or -1 with why. */
static int pr_judge(const pr_task *t, unsigned entered, char *why, size_t size)
{
    const chaos_rec *r = &t->rec;
    int calls = atomic_load(&r->callbacks), err = wp_future_error(r->f);
    int o = chaos_classify(r, why, size);
    if (calls != 1 || atomic_load(&r->bad_state))
        return snprintf(why, size, "%d done-callbacks (or one saw it unsettled)", calls), -1;
    if (entered > 1 + t->retries)
        return snprintf(why, size, "ran %u times with %u retries", entered, t->retries), -1;
    if (atomic_load(&r->cancel_ok) && o != CHAOS_CANCELLED)
        return snprintf(why, size, "a cancel returned 0, yet: %s", wp_strerror(err)), -1;
    if (o == CHAOS_SUCCEEDED)
        return entered >= 1 ? PR_OK : (snprintf(why, size, "succeeded, never ran"), -1);
    if (o == CHAOS_KILLED)
        return PR_KILLED;
    if (o == CHAOS_CANCELLED)
        return PR_CANCELLED;
    if (o == CHAOS_OTHER && err == WP_ETIMEDOUT && t->run_deadline)
        return PR_TIMED_OUT;
    if (o == CHAOS_OTHER && err == WP_EEXPIRED && t->queue_deadline)
        return entered == 0 ? PR_EXPIRED : (snprintf(why, size, "expired after it ran"), -1);
    if (why[0] == '\0')
        snprintf(why, size, "%s: %s", wp_strerror(err), wp_future_message(r->f));
    return -1;
}

static pr_tally pr_check_tasks(pr_run *r)
{
    pr_tally y;
    memset(&y, 0, sizeof y);
    for (unsigned i = 0; i < r->n; i++) {
        pr_task *t = &r->tasks[i];
        char why[256];
        unsigned entered = atomic_load(&chaos_mem->entered[i]);
        int o = pr_judge(t, entered, why, sizeof why);
        ck_assert_msg(o >= 0, "seed %llu: task %u: %s", (unsigned long long)r->seed, i, why);
        y.n[o]++;
        y.unentered_kills += o == PR_KILLED && entered == 0;
        wp_future_release(t->rec.f);
        t->rec.f = NULL;
    }
    return y;
}

static void pr_check_stats(wp_pool *p, const pr_tally *y, uint64_t seed)
{
    wp_pool_stats s = tu_pool_stats(p);
    unsigned failed = y->n[PR_KILLED] + y->n[PR_TIMED_OUT] + y->n[PR_EXPIRED];
    unsigned all = failed + y->n[PR_OK] + y->n[PR_CANCELLED];
    bool ok = s.submitted == all && s.succeeded == y->n[PR_OK] && s.failed == failed &&
              s.cancelled == y->n[PR_CANCELLED] && s.crashed == y->n[PR_KILLED] &&
              s.timed_out == y->n[PR_TIMED_OUT] && s.expired == y->n[PR_EXPIRED] &&
              s.queued == 0 && s.running == 0;
    ck_assert_msg(ok, "seed %llu: stats submitted %llu succeeded %llu failed %llu cancelled %llu "
                  "crashed %llu timed out %llu expired %llu queued %u running %u; futures: %u, "
                  "%u succeeded, %u crashed, %u timed out, %u expired, %u cancelled",
                  (unsigned long long)seed, (unsigned long long)s.submitted,
                  (unsigned long long)s.succeeded, (unsigned long long)s.failed,
                  (unsigned long long)s.cancelled, (unsigned long long)s.crashed,
                  (unsigned long long)s.timed_out, (unsigned long long)s.expired, s.queued,
                  s.running, all, y->n[PR_OK], y->n[PR_KILLED], y->n[PR_TIMED_OUT],
                  y->n[PR_EXPIRED], y->n[PR_CANCELLED]);
}

WP_TEST_BOTH(priority_line_chaos)
{
    /* The submitters allocate while the dispatcher forks (see TU_ASAN). */
    if (TU_ASAN && tu_method == WP_START_FORK)
        return;
    static pr_run r; /* large: not on the stack */
    memset(&r, 0, sizeof r);
    r.seed = chaos_seed("priority_line_chaos");
    r.n = tu_scaled(PR_TASKS);
    ck_assert_uint_le(r.n, CHAOS_MAX_TASKS);
    tu_pattern(pr_pattern, sizeof pr_pattern, PR_SEED);
    chaos_shared_open();
    r.pool = tu_pool_create(chaos_pool_options(PR_MAX_WORKERS, false));
    r.tasks = calloc(r.n, sizeof *r.tasks);
    ck_assert_ptr_nonnull(r.tasks);
    chaos_killer k = { .pool = r.pool, .mode = CHAOS_KILL_ANY, .parent = chaos_worker_parent(),
                       .workers = PR_MAX_WORKERS, .gap_us = PR_KILL_GAP_US * tu_slowdown(),
                       .rng = r.seed ^ PR_SALT_KILLER };
    chaos_killer_start(&k);
    pr_thread subs[PR_SUBMITTERS];
    pthread_t canceller, resizer;
    for (unsigned i = 0; i < PR_SUBMITTERS; i++) {
        subs[i] = (pr_thread){ .run = &r, .id = i };
        ck_assert_int_eq(pthread_create(&subs[i].thread, NULL, pr_submitter, &subs[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&canceller, NULL, pr_canceller, &r), 0);
    ck_assert_int_eq(pthread_create(&resizer, NULL, pr_resizer, &r), 0);
    for (unsigned i = 0; i < PR_SUBMITTERS; i++)
        pthread_join(subs[i].thread, NULL);
    ck_assert_msg(atomic_load(&r.error) == 0, "seed %llu: a submit failed: %s",
                  (unsigned long long)r.seed, wp_strerror(atomic_load(&r.error)));
    bool all = true;
    for (unsigned i = 0; i < r.n; i++)
        all = all && chaos_wait_all(&r.tasks[i].rec, 1, tu_now_ms() + PR_DEADLINE_MS);
    atomic_store(&r.stop, true);
    pthread_join(canceller, NULL);
    pthread_join(resizer, NULL);
    unsigned kills = chaos_killer_stop(&k);
    ck_assert_msg(all, "seed %llu: not every future settled", (unsigned long long)r.seed);
    ck_assert_msg(atomic_load(&r.error) == 0, "seed %llu: a cancel or resize failed: %s",
                  (unsigned long long)r.seed, wp_strerror(atomic_load(&r.error)));
    chaos_shutter sh = { .pool = r.pool, .grace = -1 };
    chaos_shutdown_start(&sh);
    chaos_shutdown_join(&sh, r.seed, "priority_line_chaos"); /* every callback has run */
    pr_tally y = pr_check_tasks(&r);
    pr_check_stats(r.pool, &y, r.seed);
    fprintf(stderr, "check_chaos: priority_line_chaos: %u tasks, %u kills, %u resizes, %u cancels; "
            "%u succeeded, %u crashed (%u never entered), %u timed out, %u expired, %u cancelled\n",
            r.n, kills, r.resizes, r.cancels, y.n[PR_OK], y.n[PR_KILLED], y.unentered_kills,
            y.n[PR_TIMED_OUT], y.n[PR_EXPIRED], y.n[PR_CANCELLED]);
    unsigned slack = PR_SLACK_MIN + y.n[PR_KILLED] / PR_SLACK_PER;
    ck_assert_msg(y.unentered_kills <= slack, "seed %llu: %u tasks crashed on every attempt "
                  "without entering their function (%u allowed): a task not started must run "
                  "elsewhere", (unsigned long long)r.seed, y.unentered_kills, slack);
    ck_assert_msg(y.n[PR_KILLED] <= kills, "seed %llu: %u crashed tasks from %u kills",
                  (unsigned long long)r.seed, y.n[PR_KILLED], kills);
    wp_pool_destroy(r.pool);
    free(r.tasks);
    chaos_check_nothing_left(r.seed, "priority_line_chaos");
    chaos_shared_close();
}

void chaos_add_priority_tests(Suite *s, const tu_suite *def)
{
    const tu_test tests[] = {
        TU_TEST(priority_line_chaos),
    };
    tu_add_tests(s, def, tests, TU_COUNT(tests));
}
