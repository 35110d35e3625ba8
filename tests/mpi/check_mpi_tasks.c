/* SPDX-License-Identifier: MIT */
/*
 * check_mpi_tasks.c — what an MPI pool does when all goes well, and the
 * arguments it refuses: results come back from every serving rank, large
 * arguments and results cross whole, worker_init is the serving rank's,
 * the batcher runs on top, workers are recycled, the stats add up.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_mpi.h"

#define BIG_BYTES ((size_t)3 << 20) /* past many WPM_CHUNKs and the pipes' size */

typedef struct square_out {
    int value, rank, pid;
} square_out;

/* result = arg², the rank and the pid of the worker. */
static int square_task(const void *arg, size_t len, wp_buf *out)
{
    int v;
    if (len != sizeof v)
        return wp_buf_fail(out, 1, "square_task: bad argument");
    memcpy(&v, arg, sizeof v);
    square_out r = { v * v, mt_worker_rank(), (int)getpid() };
    return wp_buf_append(out, &r, sizeof r);
}

/* result = the argument, every byte, each one added to its index. */
static int echo_task(const void *arg, size_t len, wp_buf *out)
{
    unsigned char *b = malloc(len);
    if (b == NULL)
        return wp_buf_fail(out, 12, "echo_task: no memory");
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(((const unsigned char *)arg)[i] + (unsigned char)i);
    int rc = wp_buf_append(out, b, len);
    free(b);
    return rc;
}

/* result = mt_init_mark, as worker_init left it in this worker. */
static int mark_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    return wp_buf_append(out, &mt_init_mark, sizeof mt_init_mark);
}

static square_out run_square(wp_pool *p, int v)
{
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, square_task, &v, sizeof v, NULL, &f), 0);
    mt_wait_state(f, WP_SUCCEEDED);
    square_out r;
    memcpy(&r, wp_future_result(f, NULL), sizeof r);
    wp_future_release(f);
    return r;
}

START_TEST(results_from_every_rank)
{
    enum { N = 400, MAX_RANKS = 64 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 2 }, MT_PLAIN);
    unsigned all = 2u * (unsigned)mt_serving_ranks();
    mt_wait_workers(p, all, all); /* every rank's, before tasks can all go to one */
    wp_future *fs[N];
    int vals[N];
    wp_item items[N];
    for (int i = 0; i < N; i++) {
        vals[i] = i;
        items[i] = (wp_item){ &vals[i], sizeof vals[i] };
    }
    ck_assert_int_eq(wp_submit_many(p, square_task, items, N, NULL, fs, NULL), 0);
    int per_rank[MAX_RANKS] = { 0 };
    for (int i = 0; i < N; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        size_t len = 0;
        const square_out *r = wp_future_result(fs[i], &len);
        ck_assert_uint_eq(len, sizeof *r);
        ck_assert_int_eq(r->value, i * i);
        ck_assert(r->rank > 0 && r->rank < MAX_RANKS); /* never the root */
        per_rank[r->rank]++;
        wp_future_release(fs[i]);
    }
    for (int r = 1; r <= mt_serving_ranks(); r++)
        ck_assert_msg(per_rank[r] > 0, "rank %d ran none of %d tasks", r, N);
    wp_pool_stats s;
    ck_assert_int_eq(wp_pool_get_stats(p, &s), 0);
    ck_assert_uint_eq(s.submitted, N);
    ck_assert_uint_eq(s.succeeded, N);
    ck_assert_uint_eq(s.failed + s.cancelled, 0);
    ck_assert_uint_ge(s.workers_started, all);
    mt_pool_done();
}
END_TEST

START_TEST(big_argument_and_result)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    unsigned char *arg = malloc(BIG_BYTES);
    ck_assert_ptr_nonnull(arg);
    for (size_t i = 0; i < BIG_BYTES; i++)
        arg[i] = (unsigned char)(i * 7 + 3);
    wp_future *f[2];
    for (int k = 0; k < 2; k++) /* two at once: one per serving rank */
        ck_assert_int_eq(wp_submit(p, echo_task, arg, BIG_BYTES, NULL, &f[k]), 0);
    for (int k = 0; k < 2; k++) {
        mt_wait_state(f[k], WP_SUCCEEDED);
        size_t len = 0;
        const unsigned char *r = wp_future_result(f[k], &len);
        ck_assert_uint_eq(len, BIG_BYTES);
        for (size_t i = 0; i < BIG_BYTES; i++)
            if (r[i] != (unsigned char)(arg[i] + (unsigned char)i))
                ck_abort_msg("byte %zu differs", i);
        wp_future_release(f[k]);
    }
    free(arg);
    mt_pool_done();
}
END_TEST

START_TEST(worker_init_is_the_serving_ranks)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1 }, MT_INIT);
    for (int i = 0; i < 2 * mt_serving_ranks(); i++) {
        wp_future *f;
        ck_assert_int_eq(wp_submit(p, mark_task, NULL, 0, NULL, &f), 0);
        mt_wait_state(f, WP_SUCCEEDED);
        ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), MT_INIT_MARK);
        wp_future_release(f);
    }
    mt_pool_done();
}
END_TEST

START_TEST(worker_init_failing_fails_tasks)
{
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1, .start_timeout_ms = 5000 }, MT_INIT_FAILS);
    wp_future *f;
    ck_assert_int_eq(wp_submit(p, mark_task, NULL, 0, NULL, &f), 0);
    mt_wait_state(f, WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    ck_assert_ptr_nonnull(strstr(wp_future_message(f), "worker_init"));
    wp_future_release(f);
    mt_pool_done();
}
END_TEST

/* Each result = the sum of the item's ints. */
static int sum_batch(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        const int *v = items[i].data;
        int sum = 0;
        for (size_t k = 0; k < items[i].len / sizeof *v; k++)
            sum += v[k];
        if (wp_buf_append(results[i], &sum, sizeof sum) != 0)
            return 1;
    }
    return 0;
}

START_TEST(batcher_on_an_mpi_pool)
{
    enum { N = 300 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 2 }, MT_PLAIN);
    wp_batcher *b;
    ck_assert_int_eq(wp_batcher_create(&b, p, sum_batch, &(wp_batcher_options){ .max_batch_size = 16 }), 0);
    wp_future *fs[N];
    for (int i = 0; i < N; i++) {
        int item[3] = { i, 2 * i, 1 };
        ck_assert_int_eq(wp_batcher_submit(b, item, sizeof item, &fs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        ck_assert_int_eq(*(const int *)wp_future_result(fs[i], NULL), 3 * i + 1);
        wp_future_release(fs[i]);
    }
    wp_batcher_destroy(b);
    mt_pool_done();
}
END_TEST

START_TEST(workers_recycled_after_max_tasks)
{
    enum { N = 24, PER = 2 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = PER }, MT_PLAIN);
    int pids[N];
    for (int i = 0; i < N; i++)
        pids[i] = run_square(p, i).pid;
    int distinct = 0; /* O(N^2): N is small */
    for (int i = 0; i < N; i++) {
        int j = 0;
        while (j < i && pids[j] != pids[i])
            j++;
        distinct += j == i;
    }
    ck_assert_int_ge(distinct, N / PER);
    wp_pool_stats s;
    wp_pool_get_stats(p, &s);
    ck_assert_uint_ge(s.workers_started, (uint64_t)(N / PER));
    ck_assert_uint_eq(s.failed, 0);
    mt_pool_done();
}
END_TEST

/* A limit below any worker's size: every worker runs one task and is
   replaced, and no task fails for it — the next one is never sent to a
   worker on its way out (it says so in its answer). */
START_TEST(workers_recycled_past_rss_limit)
{
    enum { N = 20 };
    wp_pool *p = mt_pool((wp_pool_options){ .workers = 1, .worker_rss_limit = 1 }, MT_PLAIN);
    wp_future *fs[N];
    int vals[N];
    for (int i = 0; i < N; i++) {
        vals[i] = i;
        ck_assert_int_eq(wp_submit(p, square_task, &vals[i], sizeof vals[i], NULL, &fs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        mt_wait_state(fs[i], WP_SUCCEEDED);
        wp_future_release(fs[i]);
    }
    wp_pool_stats s;
    wp_pool_get_stats(p, &s);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_uint_ge(s.workers_recycled, N - (uint64_t)mt_serving_ranks());
    mt_pool_done();
}
END_TEST

START_TEST(bad_arguments)
{
    wp_pool *p = (wp_pool *)&p;
    /* Refused before any collective: the serving ranks are not involved. */
    ck_assert_int_eq(wp_mpi_pool_create(&p, MPI_COMM_WORLD, 1, NULL), WP_EINVAL); /* not rank 1 */
    ck_assert_int_eq(wp_mpi_pool_create(&p, MPI_COMM_NULL, 0, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_mpi_pool_create(&p, MPI_COMM_SELF, 0, NULL), WP_EINVAL); /* one rank */
    /* Refused in the collective: every serving rank's wp_mpi_serve says so. */
    mt_serve_next(MT_PLAIN);
    ck_assert_int_eq(wp_mpi_pool_create(NULL, MPI_COMM_WORLD, 0, NULL), WP_EINVAL);
    mt_serve_next(MT_PLAIN);
    wp_pool_options many = { .workers = 1025 };
    ck_assert_int_eq(wp_mpi_pool_create(&p, MPI_COMM_WORLD, 0, &many), WP_EINVAL);
    mt_serve_next(MT_PLAIN);
    wp_pool_options bad = { .start_timeout_ms = -1 };
    ck_assert_int_eq(wp_mpi_pool_create(&p, MPI_COMM_WORLD, 0, &bad), WP_EINVAL);
    /* And a good pool still works after all of that. */
    wp_pool *q = mt_pool((wp_pool_options){ .workers = 1 }, MT_PLAIN);
    ck_assert_int_eq(run_square(q, 9).value, 81);
    mt_pool_done();
}
END_TEST

TCase *mt_tasks_tcase(void)
{
    TCase *tc = tcase_create("tasks");
    tcase_add_test(tc, results_from_every_rank);
    tcase_add_test(tc, big_argument_and_result);
    tcase_add_test(tc, worker_init_is_the_serving_ranks);
    tcase_add_test(tc, worker_init_failing_fails_tasks);
    tcase_add_test(tc, batcher_on_an_mpi_pool);
    tcase_add_test(tc, workers_recycled_after_max_tasks);
    tcase_add_test(tc, workers_recycled_past_rss_limit);
    tcase_add_test(tc, bad_arguments);
    return tc;
}
