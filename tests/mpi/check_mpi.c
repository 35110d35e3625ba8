/* SPDX-License-Identifier: MIT */
/*
 * check_mpi.c — the libworkerpool-mpi suite: run as
 *     mpirun -n 3 --oversubscribe tests/check_mpi
 * (tests/mpi/run.sh, with a timeout).  Rank 0 runs the Check tests; each
 * test that needs a pool calls mt_pool, which first broadcasts how the
 * serving ranks are to serve it, so every other rank loops: learn what
 * comes next, wp_mpi_serve it (checking what it returns), until MT_DONE.
 * Check cannot fork here (an MPI process's child cannot use MPI), so the
 * tests run in rank 0 itself (CK_NOFORK) and a fixture destroys the pool
 * of a test that failed half-way, so the serving ranks are never left
 * waiting.  At the end the serving ranks' own failures are summed into
 * rank 0's result: the suite fails if any rank saw anything wrong.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_mpi.h"

#define ROOT 0

int mt_init_mark;

static wp_pool *current;
static int      nranks;

int mt_worker_init(void *ctx);
int mt_worker_init(void *ctx)
{
    (void)ctx;
    mt_init_mark = MT_INIT_MARK;
    return 0;
}

static int failing_init(void *ctx)
{
    (void)ctx;
    return 1;
}

#define HANG_S 3600 /* a worker_init that hangs sleeps this long, again and again */

static int hanging_init(void *ctx)
{
    (void)ctx;
    struct timespec t = { HANG_S, 0 };
    for (;;)
        nanosleep(&t, NULL);
    return 0;
}

void mt_serve_next(enum mt_serve how)
{
    int what = (int)how;
    MPI_Bcast(&what, 1, MPI_INT, ROOT, MPI_COMM_WORLD);
}

wp_pool *mt_pool(wp_pool_options o, enum mt_serve how)
{
    ck_assert_ptr_null(current);
    mt_serve_next(how);
    int rc = wp_mpi_pool_create(&current, MPI_COMM_WORLD, ROOT, &o);
    ck_assert_msg(rc == 0, "wp_mpi_pool_create: %s", wp_strerror(rc));
    return current;
}

void mt_pool_done(void)
{
    wp_pool_destroy(current);
    current = NULL;
}

void mt_pool_done_promptly(void)
{
    int64_t t0 = mt_now_ms();
    mt_pool_done();
    ck_assert_int_lt(mt_now_ms() - t0, MT_DEADLINE_MS / 2);
}

int mt_serving_ranks(void)
{
    return nranks - 1;
}

int mt_worker_rank(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    return r != NULL ? atoi(r) : -1;
}

void mt_wait_state(wp_future *f, int state)
{
    int rc = wp_future_wait(f, MT_DEADLINE_MS);
    ck_assert_msg(rc == 0, "wait: %s", wp_strerror(rc));
    ck_assert_msg(wp_future_state(f) == state, "state %d (want %d): %s: %s", wp_future_state(f),
                  state, wp_strerror(wp_future_error(f)), wp_future_message(f));
}

int64_t mt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mt_id_task(const void *arg, size_t len, wp_buf *out)
{
    return wp_buf_append(out, arg, len);
}

wp_future *mt_submit_int(wp_pool *p, wp_task_fn fn, int v, const wp_task_options *o)
{
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, fn, &v, sizeof v, o, &f), 0);
    return f;
}

void mt_still_works(wp_pool *p)
{
    enum { MAX_AT_ONCE = 128 };
    int n = 2 * mt_serving_ranks();
    wp_future *fs[MAX_AT_ONCE];
    ck_assert_int_le(n, MAX_AT_ONCE);
    for (int i = 0; i < n; i++)
        fs[i] = mt_submit_int(p, mt_id_task, i, NULL);
    for (int i = 0; i < n; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        ck_assert_int_eq(*(const int *)wp_future_result(fs[i], NULL), i);
        wp_future_release(fs[i]);
    }
}

void mt_wait_workers(wp_pool *p, unsigned alive, uint64_t started)
{
    int64_t deadline = mt_now_ms() + MT_DEADLINE_MS;
    wp_pool_stats s;
    for (;;) {
        ck_assert_int_eq(wp_pool_get_stats(p, &s), 0);
        if (s.workers_alive >= alive && s.workers_started >= started)
            return;
        ck_assert_msg(mt_now_ms() < deadline, "workers_alive %u (want %u), workers_started %llu "
                      "(want %llu)", s.workers_alive, alive, (unsigned long long)s.workers_started,
                      (unsigned long long)started);
        struct timespec t = { 0, MT_POLL_PAUSE_NS };
        nanosleep(&t, NULL);
    }
}

void mt_wait_running(wp_future *f)
{
    int64_t deadline = mt_now_ms() + MT_DEADLINE_MS;
    while (wp_future_state(f) != WP_RUNNING) {
        ck_assert_msg(mt_now_ms() < deadline, "never ran");
        struct timespec t = { 0, MT_POLL_PAUSE_NS }; /* two cores, three ranks: let them run */
        nanosleep(&t, NULL);
    }
}

static void teardown(void)
{
    if (current != NULL)
        mt_pool_done();
}

/* ------------------------------------------------------ serving ranks */

/* Serve pool after pool; returns how many things went wrong here. */
static int serve_loop(int rank)
{
    int bad = 0;
    /* Calls that start no collective are refused at once. */
    wp_pool_options none = { 0 };
    if (wp_mpi_serve(MPI_COMM_WORLD, rank, &none) != WP_EINVAL) {
        fprintf(stderr, "rank %d: wp_mpi_serve as its own root was not WP_EINVAL\n", rank);
        bad++;
    }
    if (wp_mpi_serve(MPI_COMM_NULL, ROOT, &none) != WP_EINVAL) {
        fprintf(stderr, "rank %d: wp_mpi_serve on MPI_COMM_NULL was not WP_EINVAL\n", rank);
        bad++;
    }
    for (;;) {
        int what = MT_DONE;
        MPI_Bcast(&what, 1, MPI_INT, ROOT, MPI_COMM_WORLD);
        if (what == MT_DONE)
            return bad;
        wp_pool_options o = { 0 };
        if (what == MT_INIT)
            o.worker_init = mt_worker_init;
        else if (what == MT_INIT_FAILS)
            o.worker_init = failing_init;
        else if (what == MT_INIT_HANGS)
            o.worker_init = hanging_init;
        struct sigaction ign = { .sa_handler = SIG_IGN }, old;
        if (what == MT_NO_SIGCHLD)
            sigaction(SIGCHLD, &ign, &old);
        int rc = wp_mpi_serve(MPI_COMM_WORLD, ROOT, what == MT_PLAIN ? NULL : &o);
        if (what == MT_NO_SIGCHLD)
            sigaction(SIGCHLD, &old, NULL);
        /* The root's refusals come back as WP_EINVAL; anything else is 0. */
        if (rc != 0 && rc != WP_EINVAL) {
            fprintf(stderr, "rank %d: wp_mpi_serve returned %s\n", rank, wp_strerror(rc));
            bad++;
        }
    }
}

/* -------------------------------------------------------------- rank 0 */

static int run_tests(void)
{
    Suite *s = suite_create("mpi");
    TCase *cases[] = { mt_tasks_tcase(), mt_faults_tcase(), mt_chaos_tcase(),
                       mt_hostile_tcase(), mt_limits_tcase() };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tcase_add_checked_fixture(cases[i], NULL, teardown);
        suite_add_tcase(s, cases[i]);
    }
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    teardown();
    return failed;
}

int main(int argc, char **argv)
{
    int provided = MPI_THREAD_SINGLE, rank = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    int bad = 0;
    if (nranks < 2) {
        fprintf(stderr, "check_mpi: run me with mpirun -n 3 (I have %d rank)\n", nranks);
        bad = 1;
    } else if (rank == ROOT) {
        bad = run_tests();
        mt_serve_next(MT_DONE);
    } else {
        bad = serve_loop(rank);
    }
    int total = 0;
    MPI_Reduce(&bad, &total, 1, MPI_INT, MPI_SUM, ROOT, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == ROOT && total > bad)
        fprintf(stderr, "check_mpi: %d failures on the serving ranks\n", total - bad);
    return rank == ROOT ? total != 0 : 0;
}
