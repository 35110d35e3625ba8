/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_faults.c — an MPI pool when things go wrong, with the meaning
 * they have on one machine: a crash names its signal and the worker is
 * replaced, a deadline kills, a cancel of a running task kills its worker
 * and one of a waiting task never runs it, retries are counted, hostile
 * tasks (closing every descriptor, stopping themselves, forking a daemon)
 * take down only their own task, and destroying a busy pool settles
 * everything.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_mpi.h"

#define LONG_MS      60000 /* "forever", for a task that is to be stopped */
#define SHORT_DEADLINE_MS 300

/* Sleeps *(int *)arg milliseconds (restarting after signals), result 7. */
static int nap_task(const void *arg, size_t len, wp_buf *out)
{
    int ms = 0;
    if (len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    struct timespec left = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&left, &left) != 0)
        ;
    int seven = 7;
    return wp_buf_append(out, &seven, sizeof seven);
}

static int segv_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    raise(SIGSEGV);
    return 0;
}

static int close_all_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    for (int fd = 0; fd < 1024; fd++)
        close(fd);
    return wp_buf_append(out, "x", 1);
}

static int stop_self_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    raise(SIGSTOP);
    return 0;
}

/* Forks a child that leaves the worker's group and sleeps: the serving
   rank's fork server must still kill it (subreaper), or at the latest
   when it stops. */
static int daemon_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        struct timespec t = { LONG_MS / 1000, 0 };
        nanosleep(&t, NULL);
        _exit(0);
    }
    int ok = pid > 0;
    return wp_buf_append(out, &ok, sizeof ok);
}

START_TEST(crash_names_signal_and_worker_is_replaced)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = mt_submit_int(p, segv_task, 0, NULL);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    ck_assert_msg(strstr(wp_future_message(f), "SIGSEGV") != NULL, "%s", wp_future_message(f));
    wp_future_release(f);
    mt_still_works(p);
    mt_wait_workers(p, (unsigned)mt_serving_ranks(), (uint64_t)mt_serving_ranks() + 1);
    wp_pool_stats s;
    wp_pool_get_stats(p, &s);
    ck_assert_uint_eq(s.crashed, 1);
    mt_pool_done();
}
END_TEST

START_TEST(deadline_kills_the_worker)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    int64_t t0 = mt_now_ms();
    wp_future *f = mt_submit_int(p, nap_task, LONG_MS, &(wp_task_options){ .timeout_ms = SHORT_DEADLINE_MS });
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETIMEDOUT);
    ck_assert_int_lt(mt_now_ms() - t0, LONG_MS / 2);
    wp_future_release(f);
    mt_still_works(p);
    mt_pool_done();
}
END_TEST

START_TEST(cancel_running_kills_waiting_never_runs)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    int n = mt_serving_ranks();
    wp_future *busy[64];
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++) /* one per worker */
        busy[i] = mt_submit_int(p, nap_task, LONG_MS, NULL);
    wp_future *waiting = mt_submit_int(p, nap_task, 0, NULL);
    for (int i = 0; i < n; i++)
        mt_wait_running(busy[i]);
    ck_assert_int_eq(wp_future_state(waiting), WP_PENDING);
    ck_assert_int_eq(wp_future_cancel(waiting), 0);
    mt_wait_state(waiting, WP_CANCELLED);
    int64_t t0 = mt_now_ms();
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(wp_future_cancel(busy[i]), 0);
        mt_wait_state(busy[i], WP_CANCELLED);
        wp_future_release(busy[i]);
    }
    ck_assert_int_lt(mt_now_ms() - t0, LONG_MS / 2);
    wp_future_release(waiting);
    mt_still_works(p);
    wp_pool_stats s;
    wp_pool_get_stats(p, &s);
    ck_assert_uint_eq(s.cancelled, (uint64_t)n + 1);
    mt_pool_done();
}
END_TEST

START_TEST(retries_are_counted)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *f = mt_submit_int(p, segv_task, 0, &(wp_task_options){ .retries = 2 });
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    wp_future_release(f);
    wp_pool_stats s;
    wp_pool_get_stats(p, &s);
    ck_assert_uint_eq(s.retried, 2);
    ck_assert_uint_eq(s.crashed, 1);
    mt_pool_done();
}
END_TEST

START_TEST(hostile_tasks_take_only_themselves)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *closer = mt_submit_int(p, close_all_task, 0, NULL);
    ck_assert_int_eq(wp_future_wait(closer, MT_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_state(closer), WP_FAILED); /* its pipes went with the rest */
    wp_future_release(closer);
    wp_future *stopped = mt_submit_int(p, stop_self_task, 0, &(wp_task_options){ .timeout_ms = SHORT_DEADLINE_MS });
    mt_wait_state(stopped, WP_FAILED);
    ck_assert_int_eq(wp_future_error(stopped), WP_ETIMEDOUT);
    wp_future_release(stopped);
    wp_future *d = mt_submit_int(p, daemon_task, 0, NULL);
    mt_wait_state(d, WP_SUCCEEDED);
    ck_assert_int_eq(*(const int *)wp_future_result(d, NULL), 1);
    wp_future_release(d);
    mt_still_works(p);
    mt_pool_done();
}
END_TEST

START_TEST(destroy_settles_everything)
{
    enum { N = 50 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = mt_submit_int(p, nap_task, i < mt_serving_ranks() ? LONG_MS : 0, NULL);
    int64_t t0 = mt_now_ms();
    ck_assert_int_eq(wp_pool_shutdown(p, 0), 0); /* no grace: running ones are killed */
    mt_pool_done();
    ck_assert_int_lt(mt_now_ms() - t0, LONG_MS / 2);
    for (int i = 0; i < N; i++) {
        int st = wp_future_state(fs[i]);
        ck_assert_msg(st == WP_SUCCEEDED || st == WP_FAILED || st == WP_CANCELLED,
                      "task %d not settled: %d", i, st);
        wp_future_release(fs[i]);
    }
}
END_TEST

TCase *mt_faults_tcase(void)
{
    TCase *tc = tcase_create("faults");
    tcase_add_test(tc, crash_names_signal_and_worker_is_replaced);
    tcase_add_test(tc, deadline_kills_the_worker);
    tcase_add_test(tc, cancel_running_kills_waiting_never_runs);
    tcase_add_test(tc, retries_are_counted);
    tcase_add_test(tc, hostile_tasks_take_only_themselves);
    tcase_add_test(tc, destroy_settles_everything);
    return tc;
}
