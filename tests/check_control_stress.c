/* SPDX-License-Identifier: MIT */
/*
 * check_control_stress.c — the suite's hard cases (check_control.c says
 * how its tests work): four threads submitting, crashing and cancelling at
 * once with every future settling exactly once, times up to INT64_MAX that
 * saturate, a descriptor limit lowered under a pool, and cancels racing
 * the claim of tasks in a worker's window.
 */
#define _GNU_SOURCE
#include <sys/resource.h>

#include "check_control.h"

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

/* Runs of each task, counted in memory shared with every worker
   (tu_shared_create: an exec'd worker, whose race_runs is NULL, maps it on
   first use). */
enum { RACE_TASKS = 6000 };
static atomic_int *race_runs;

static int race_task(const void *arg, size_t len, wp_buf *out)
{
    int i;
    TU_TASK_ARG(i, arg, len, out);
    if (race_runs == NULL)
        race_runs = tu_shared_attach();
    if (race_runs == NULL)
        return tu_no_shared(out);
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
    race_runs = tu_shared_create(RACE_TASKS * sizeof *race_runs);
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
    tu_shared_destroy(race_runs, RACE_TASKS * sizeof *race_runs);
    race_runs = NULL;
    fprintf(stderr, "race: %d cancelled (%d of them had started), %llu workers started\n", n_cancelled, ran_cancelled, (unsigned long long)s.workers_started);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_stress_tests,
        TU_TEST(stress_mixed),
        TU_TEST(huge_times_saturate),
        TU_TEST(fd_limit),
        TU_TEST(window_take_back_race))
