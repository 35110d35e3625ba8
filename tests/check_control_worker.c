/* SPDX-License-Identifier: MIT */
/*
 * check_control_worker.c — the worker lifecycle (check_control.c says how
 * the suite's tests work): max_tasks_per_worker retires workers,
 * worker_init runs once in each (and what happens when it fails, hangs or
 * recovers: WP_ESPAWN), worker_memory_limit fails an allocation in the task
 * alone, and the crash-loop guard backs off a worker_init that always
 * fails.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "check_control.h"

/* A pool with the test's start method whose workers may never start (so
   it does not wait for them, as tu_make_pool does). */
static wp_pool *create_pool(wp_pool_options o)
{
    o.start_method = tu_method;
    return tu_pool_create(o);
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

/* worker_init: appends the worker's pid to a file; fails after that if
   fail_first > 0 and this is one of the first fail_first calls
   (fail_first < 0: always fails).  Its ctx, init_var, names the
   environment variable that holds "<fail_first> <path>" (tu_env_setf:
   under every start method). */
typedef struct init_ctx {
    char path[TU_TMP_PATH_MAX];
    int  fail_first;
} init_ctx;
static char init_var[] = "WP_TEST_INIT_COUNT";

static int init_count(void *ctx)
{
    const char *v = getenv(ctx);
    char *path = NULL;
    long fail_first = v == NULL ? 0 : strtol(v, &path, 10);
    if (path == NULL || path == v || *path++ != ' ')
        return 1;
    int pid = (int)getpid();
    long n = file_append(path, &pid, sizeof pid);
    if (n < 0)
        return 1;
    long calls = n / (long)sizeof pid;
    if (fail_first < 0 || calls <= fail_first)
        return 1;
    return 0;
}

/* A worker_init context whose file is `name` in the test's directory, in
   init_var for init_count. */
static init_ctx init_ctx_of(const char *name, int fail_first)
{
    init_ctx c;
    memset(&c, 0, sizeof c);
    tu_tmp_path(c.path, sizeof c.path, name);
    c.fail_first = fail_first;
    tu_env_setf(init_var, "%d %s", c.fail_first, c.path);
    return c;
}

/* Run N tu_pid tasks on a pool, all submitted at once; their pids in pids[]
   (fails unless all succeed).  Shuts the pool down before any Check call,
   so no worker is being started meanwhile (see the top of check_control.c). */
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
        .workers = 1, .max_tasks_per_worker = 2, .worker_init = init_count, .worker_init_ctx = init_var });
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
        .workers = 2, .worker_init = init_count, .worker_init_ctx = init_var });
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
        .workers = 1, .worker_init = init_count, .worker_init_ctx = init_var });
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

/* ================================================ the crash-loop guard */

/* With a worker_init that always fails, the pool backs off instead of
   forking in a tight loop: in a second, two slots fork a bounded number of
   workers (a tight loop would fork thousands). */
WP_TEST_BOTH(crash_loop_backoff)
{
    init_ctx c = init_ctx_of("inits", -1);
    int64_t t0 = tu_now_ms();
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 2, .worker_init = init_count, .worker_init_ctx = init_var });
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

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_worker_tests,
        TU_TEST(max_tasks_per_worker),
        TU_TEST(worker_init_once_per_worker),
        TU_TEST(worker_init_fails_espawn),
        TU_TEST(worker_init_hangs),
        TU_TEST(worker_init_recovers),
        TU_TEST(memory_limit),
        TU_TEST(crash_loop_backoff))
