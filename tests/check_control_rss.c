/* SPDX-License-Identifier: MIT */
/*
 * check_control_rss.c — worker_rss_limit (check_control.c says how the
 * suite's tests work; docs/ARCHITECTURE.md, "Recycling by resident set"):
 * a worker whose resident set is past the limit after a task is replaced
 * before its next one, and nothing fails — not the task that pushed it
 * over, not the tasks sent to it ahead, which run once each, in their
 * order, in the next workers — and workers_recycled counts it.  Without a
 * limit nothing is recycled; a task that exits with the recycle status
 * itself is a crash; a recycle is no failed start; max_tasks_per_worker
 * retires a worker before the limit is looked at.
 *
 * "A little above an idle worker": each test measures the resident set of
 * a worker of its start method that has run a task (a pool without the
 * limit), and sets the limit RSS_MARGIN above it; a leaking task leaks
 * RSS_LEAK, well past the margin.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check_control.h"
#include "worker.h" /* WORKER_EXIT_RECYCLED */

#define MIB          ((size_t)1 << 20)
#define RSS_MARGIN   (8 * MIB)  /* limit = an idle worker's resident set + this */
#define RSS_LEAK     (32 * MIB) /* what a leaking task leaks: past the margin */
#define STATM_BYTES  160        /* one /proc/self/statm line */

/* ------------------------------------------------------------ tasks */

/* The calling process's resident set in bytes (/proc/self/statm), or 0. */
static size_t resident_now(void)
{
    char line[STATM_BYTES];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    unsigned long long size, resident;
    if (n <= 0)
        return 0;
    line[n] = '\0';
    if (sscanf(line, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* result = the worker's resident set (a size_t). */
static int rss_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    size_t rss = resident_now();
    return rss > 0 ? wp_buf_append(out, &rss, sizeof rss) : wp_buf_fail(out, 1, "no statm");
}

/* leak_task: waits for the gate (when gate is set), appends its index to
   path (when path is set), leaks `leak` bytes, touched, and returns the
   worker's pid.  Through an opaque malloc, so no compiler drops the
   allocation. */
typedef struct leak_arg {
    size_t leak;
    int    index;
    char   path[200];
    char   gate[200];
} leak_arg;

static void *(*volatile opaque_malloc)(size_t) = malloc;

/*
 * The gate: a file the test holds an exclusive flock on while it submits;
 * a task takes a shared lock on it, so it waits in the kernel until the
 * test lets go.  Why: a worker recycled by the first task is replaced at
 * once, and with WP_START_FORK the dispatcher forks the replacement while
 * the test thread may still be allocating futures in wp_submit_many.
 * glibc's malloc is fork-safe, the sanitizers' allocators (GCC 12) are
 * not: a replacement forked then would find the allocator's lock held for
 * good and hang in its first allocation (a CI failure under ASan).
 */
static int gate_pass(const char *gate)
{
    int fd = open(gate, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc;
    do
        rc = flock(fd, LOCK_SH);
    while (rc < 0 && errno == EINTR);
    close(fd);
    return rc;
}

/* Close the gate: a descriptor holding the exclusive lock on it. */
static int gate_close(const char *gate)
{
    int fd = open(gate, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    return fd;
}

/* Open it: every task waiting on it goes on, and so do later ones. */
static void gate_open(int fd)
{
    ck_assert_int_eq(flock(fd, LOCK_UN), 0);
    close(fd);
}

static int leak_task(const void *arg, size_t len, wp_buf *out)
{
    leak_arg a;
    TU_TASK_ARG(a, arg, len, out);
    a.path[sizeof a.path - 1] = '\0';
    a.gate[sizeof a.gate - 1] = '\0';
    if (a.gate[0] != '\0' && gate_pass(a.gate) < 0)
        return wp_buf_fail(out, 9, "leak_task: no gate");
    if (a.path[0] != '\0' && file_append(a.path, &a.index, sizeof a.index) < 0)
        return wp_buf_fail(out, 5, "leak_task: cannot append");
    if (a.leak > 0) {
        unsigned char *p = opaque_malloc(a.leak);
        if (p == NULL)
            return wp_buf_fail(out, 12, "leak_task: no memory");
        memset(p, 1, a.leak); /* resident now, and never freed */
    }
    int pid = (int)getpid();
    return wp_buf_append(out, &pid, sizeof pid);
}

/* peak_task: maps *(size_t *)arg bytes, touches them and unmaps them:
   a peak in the resident set, gone when it returns. */
static int peak_task(const void *arg, size_t len, wp_buf *out)
{
    size_t n;
    TU_TASK_ARG(n, arg, len, out);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return wp_buf_fail(out, 12, "peak_task: no memory");
    memset(p, 1, n);
    munmap(p, n);
    return 0;
}

/* close_statm_task: closes every descriptor of the worker's that is open
   on its statm file; result = how many (an int). */
static int close_statm_task(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return wp_buf_fail(out, 2, "close_statm_task: no /proc/self/fd");
    int closed = 0, dir_fd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        char link[64], target[256];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = fd != dir_fd && e->d_name[0] != '.' ? readlink(link, target, sizeof target - 1) : -1;
        if (n <= 0)
            continue;
        target[n] = '\0';
        size_t t = (size_t)n, suffix = strlen("/statm");
        if (t >= suffix && strcmp(target + t - suffix, "/statm") == 0)
            closed += close(fd) == 0;
    }
    closedir(d);
    return wp_buf_append(out, &closed, sizeof closed);
}

static leak_arg leak_arg_of(size_t leak, int index, const char *file)
{
    leak_arg a;
    memset(&a, 0, sizeof a);
    a.leak = leak;
    a.index = index;
    if (file != NULL)
        tu_tmp_path(a.path, sizeof a.path, file);
    return a;
}

#define GATE_FILE "gate"

/* ---------------------------------------------------------- helpers */

/* A pool of this test's start method whose workers may fail to start. */
static wp_pool *create_pool(wp_pool_options o)
{
    o.start_method = tu_method;
    return tu_pool_create(o);
}

/* The resident set of an idle worker of this start method, one that has
   run a task, measured in a pool without the limit. */
static size_t idle_worker_rss(void)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    wp_future *w = tu_run(p, tu_pid, NULL, 0, NULL);
    wp_future *f = tu_run(p, rss_task, NULL, 0, NULL);
    ck_assert_msg(wp_future_state(f) == WP_SUCCEEDED, "rss_task: %s", wp_future_message(f));
    size_t rss;
    memcpy(&rss, wp_future_result(f, NULL), sizeof rss);
    wp_future_release(w);
    wp_future_release(f);
    wp_pool_destroy(p);
    return rss;
}

/* A pool of one worker with the limit a little above an idle worker. */
static wp_pool *make_limited_pool(unsigned workers)
{
    size_t idle = idle_worker_rss();
    return tu_make_pool((wp_pool_options){ .workers = workers, .worker_rss_limit = idle + RSS_MARGIN });
}

/* Submit n leak_tasks at once (wp_submit_many: pipelined to the worker),
   each leaking `leak` and logging its index to `file`, none starting
   before the submit returns (the gate); wait for them all without
   allocating, then for the pool to have `alive` workers up and `started`
   ever (the replacements: see the top of check_control.c), then check
   every one succeeded; their pids in pids[]. */
static void run_leaks(wp_pool *p, size_t leak, const char *file, int n, int *pids,
                      unsigned alive, uint64_t started)
{
    enum { MAX = 64 };
    leak_arg args[MAX];
    wp_item items[MAX];
    wp_future *fs[MAX];
    ck_assert_int_le(n, MAX);
    char gate[sizeof args[0].gate];
    tu_tmp_path(gate, sizeof gate, GATE_FILE);
    for (int i = 0; i < n; i++) {
        args[i] = leak_arg_of(leak, i, file);
        memcpy(args[i].gate, gate, sizeof gate);
        items[i] = (wp_item){ &args[i], sizeof args[i] };
    }
    int held = gate_close(gate);
    ck_assert_int_eq(wp_submit_many(p, leak_task, items, (size_t)n, NULL, fs, NULL), 0);
    gate_open(held);
    bool all = quiet_wait_all(fs, (size_t)n, TU_DEADLINE_MS * 3);
    ck_assert_msg(all, "not every task settled");
    tu_wait_workers(p, alive, started);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(wp_future_state(fs[i]) == WP_SUCCEEDED, "task %d ended %d: %s", i,
                      wp_future_state(fs[i]), wp_future_message(fs[i]));
        pids[i] = tu_result_int(fs[i]);
        wp_future_release(fs[i]);
    }
}

/* The indices the tasks logged to `file` are 0 .. n-1, once each, in
   order: each ran exactly once, in submit order. */
static void check_ran_once_in_order(const char *file, int n)
{
    char path[200];
    tu_tmp_path(path, sizeof path, file);
    ck_assert_int_eq(file_size(path), n * (long)sizeof(int));
    FILE *fp = fopen(path, "re");
    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < n; i++) {
        int v = -1;
        ck_assert_uint_eq(fread(&v, sizeof v, 1, fp), 1);
        ck_assert_msg(v == i, "run %d was task %d", i, v);
    }
    fclose(fp);
}

/* How many of pids[0..n) are different. O(n^2): n is small. */
static int distinct(const int *pids, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < i && pids[j] != pids[i])
            j++;
        d += j == i;
    }
    return d;
}

/* ------------------------------------------------------------ tests */

/* An idle worker stays; the task that leaks past the limit succeeds in it,
   and the next task runs in its replacement. */
WP_TEST_BOTH(rss_leak_recycles)
{
    wp_pool *p = make_limited_pool(1);
    int pid = tu_worker_pid(p);
    ck_assert_int_eq(tu_worker_pid(p), pid); /* below the limit: kept */
    leak_arg a = leak_arg_of(RSS_LEAK, 0, NULL);
    wp_future *f = tu_submit(p, leak_task, &a, sizeof a, NULL);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    tu_wait_workers(p, 1, 2); /* its replacement */
    ck_assert_int_eq(w, 0);
    ck_assert_msg(wp_future_state(f) == WP_SUCCEEDED, "%s", wp_future_message(f));
    ck_assert_int_eq(tu_result_int(f), pid); /* it ran in the old worker */
    wp_future_release(f);
    int next = tu_worker_pid(p);
    ck_assert_int_ne(next, pid);
    ck_assert_int_eq(tu_worker_pid(p), next);
    wp_pool_stats s = settled_stats(p, 5);
    ck_assert_uint_eq(s.workers_recycled, 1);
    tu_assert_stats(s, .succeeded = TU_EQ(5), .failed = TU_EQ(0), .crashed = TU_EQ(0),
                       .retried = TU_EQ(0), .workers_started = TU_EQ(2), .workers_alive = TU_EQ(1));
    wp_pool_destroy(p);
}

/* Every task of a batch pipelined to one worker leaks past the limit: each
   runs once, in order, in a worker of its own, and succeeds. */
WP_TEST_BOTH(rss_every_task_leaks)
{
    enum { N = 12 };
    wp_pool *p = make_limited_pool(1);
    int pids[N];
    run_leaks(p, RSS_LEAK, "log", N, pids, 1, 1 + N);
    check_ran_once_in_order("log", N);
    ck_assert_int_eq(distinct(pids, N), N);
    wp_pool_stats s = settled_stats(p, N);
    ck_assert_uint_eq(s.workers_recycled, N);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .failed = TU_EQ(0), .retried = TU_EQ(0),
                       .workers_started = TU_EQ(1 + N));
    wp_pool_destroy(p);
}

/* A limit below an idle worker's size: every worker runs one task and
   goes, and still every task runs once and succeeds, many pipelined at a
   time behind each worker, over several workers. */
WP_TEST_BOTH(rss_limit_below_idle)
{
    enum { N = 64 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .worker_rss_limit = 1 });
    int pids[N];
    run_leaks(p, 0, "log", N, pids, 1, 1 + N);
    check_ran_once_in_order("log", N);
    ck_assert_int_eq(distinct(pids, N), N);
    wp_pool_stats s = settled_stats(p, N);
    ck_assert_uint_eq(s.workers_recycled, N);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .failed = TU_EQ(0), .workers_started = TU_EQ(1 + N));
    wp_pool_destroy(p);

    p = tu_make_pool((wp_pool_options){ .workers = 3, .worker_rss_limit = 1 });
    run_leaks(p, 0, NULL, N, pids, 3, 3 + N);
    ck_assert_int_eq(distinct(pids, N), N);
    s = settled_stats(p, N);
    ck_assert_uint_eq(s.workers_recycled, N);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .failed = TU_EQ(0));
    wp_pool_destroy(p);
}

/* No limit: the same leaks, one worker, nothing recycled. */
WP_TEST_BOTH(rss_no_limit)
{
    enum { N = 4 };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pids[N];
    run_leaks(p, RSS_LEAK, NULL, N, pids, 1, 1);
    ck_assert_int_eq(distinct(pids, N), 1);
    wp_pool_stats s = settled_stats(p, N);
    ck_assert_uint_eq(s.workers_recycled, 0);
    tu_assert_stats(s, .succeeded = TU_EQ(N), .workers_started = TU_EQ(1));
    wp_pool_destroy(p);
}

/* A task that exits with the worker's recycle status is a crash of that
   task, not a recycle. */
WP_TEST_BOTH(rss_exit_status_is_crash)
{
    wp_pool *p = make_limited_pool(1);
    int status = WORKER_EXIT_RECYCLED;
    wp_future *f = tu_run_crash(p, tu_exit, &status, sizeof status, NULL, 1, 2);
    tu_check_outcome(f, WP_FAILED, WP_ECRASHED, 256 + WORKER_EXIT_RECYCLED, NULL);
    wp_future_release(f);
    wp_pool_stats s = settled_stats(p, 1);
    ck_assert_uint_eq(s.workers_recycled, 0);
    tu_assert_stats(s, .crashed = TU_EQ(1), .workers_started = TU_EQ(2));
    wp_pool_destroy(p);
}

/* worker_init: appends the worker's pid to a file, and fails in the
   second and third workers (a start that fails twice in a row, after the
   first worker).  Its ctx, inits_var, names the environment variable
   that holds the file's path (tu_env_setf: under every start method). */
static char inits_var[] = "WP_TEST_INITS";

static int init_fails_2_3(void *ctx)
{
    const char *path = getenv(ctx);
    if (path == NULL)
        return 1;
    int pid = (int)getpid();
    long n = file_append(path, &pid, sizeof pid);
    long call = n / (long)sizeof pid;
    return n < 0 || call == 2 || call == 3;
}

/* A recycle is no failed start.  The first worker recycles after its task,
   the next two fail to start: two failures in a row, below the three after
   which waiting tasks fail WP_ESPAWN with no worker alive — if the recycle
   counted, the second task would fail so.  It runs in the fourth worker. */
WP_TEST_BOTH(rss_recycle_is_no_failed_start)
{
    char inits[TU_TMP_PATH_MAX];
    tu_tmp_path(inits, sizeof inits, "inits");
    tu_env_setf(inits_var, "%s", inits);
    wp_pool *p = create_pool((wp_pool_options){
        .workers = 1, .worker_rss_limit = 1, .worker_init = init_fails_2_3,
        .worker_init_ctx = inits_var });
    int pids[2];
    run_leaks(p, 0, NULL, 2, pids, 1, 3);
    ck_assert_int_ne(pids[0], pids[1]);
    ck_assert_int_eq(file_size(inits), 5 * (long)sizeof(int)); /* 1, 2 and 3 failed, 4, its replacement */
    wp_pool_stats s = settled_stats(p, 2);
    ck_assert_uint_eq(s.workers_recycled, 2);
    tu_assert_stats(s, .succeeded = TU_EQ(2), .failed = TU_EQ(0), .workers_started = TU_EQ(3));
    wp_pool_destroy(p);
}

/* max_tasks_per_worker: a worker that has run its last task is retired,
   whatever its size (not recycled); before that, the limit recycles it. */
WP_TEST_BOTH(rss_max_tasks)
{
    enum { N = 4 };
    int pids[N];
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = 1, .max_tasks_per_worker = 1, .worker_rss_limit = 1 });
    run_leaks(p, 0, NULL, N, pids, 1, 1 + N);
    ck_assert_int_eq(distinct(pids, N), N);
    ck_assert_uint_eq(tu_pool_stats(p).workers_recycled, 0);
    wp_pool_destroy(p);

    p = tu_make_pool((wp_pool_options){ .workers = 1, .max_tasks_per_worker = 2, .worker_rss_limit = 1 });
    run_leaks(p, 0, NULL, N, pids, 1, 1 + N);
    ck_assert_int_eq(distinct(pids, N), N);
    ck_assert_uint_eq(tu_pool_stats(p).workers_recycled, N);
    wp_pool_destroy(p);
}

/* The limit is on the resident set now, not its peak: a task that peaked
   past it and gave the memory back leaves its worker in place. */
WP_TEST_BOTH(rss_peak_is_not_size)
{
    wp_pool *p = make_limited_pool(1);
    int pid = tu_worker_pid(p);
    size_t n = RSS_LEAK;
    wp_future *f = tu_run(p, peak_task, &n, sizeof n, NULL);
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);
    ck_assert_int_eq(tu_worker_pid(p), pid);
    ck_assert_uint_eq(tu_pool_stats(p).workers_recycled, 0);
    wp_pool_destroy(p);
}

/* Where statm cannot be read (here: a task closed the worker's descriptor
   on it), the peak stands in: below the limit the worker stays, and past
   it — a peak is enough then — it is replaced, nothing failing. */
WP_TEST_BOTH(rss_fallback_peak)
{
    wp_pool *p = make_limited_pool(1);
    int pid = tu_worker_pid(p);
    wp_future *f = tu_run(p, close_statm_task, NULL, 0, NULL);
    ck_assert_int_eq(tu_result_int(f), 1); /* the worker's one descriptor on it */
    wp_future_release(f);
    ck_assert_int_eq(tu_worker_pid(p), pid);
    size_t n = RSS_LEAK;
    f = tu_submit(p, peak_task, &n, sizeof n, NULL);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    tu_wait_workers(p, 1, 2); /* its replacement */
    ck_assert_int_eq(w, 0);
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);
    ck_assert_int_ne(tu_worker_pid(p), pid);
    wp_pool_stats s = settled_stats(p, 5);
    ck_assert_uint_eq(s.workers_recycled, 1);
    tu_assert_stats(s, .failed = TU_EQ(0), .workers_started = TU_EQ(2));
    wp_pool_destroy(p);
}

/* The peak a worker stands in with must be its own.  An exec'd worker's
   getrusage peak starts at the pool process's own peak (the kernel keeps
   the high-water mark of the address space exec replaced, and posix_spawn's
   child shares the pool's until it execs): here the pool has peaked far
   past the limit before it creates the pool, and its workers, idle after
   their statm descriptor is gone, must stay. */
WP_TEST_BOTH(rss_fallback_peak_is_the_workers)
{
    size_t n = 2 * RSS_LEAK;
    ck_assert_int_eq(peak_task(&n, sizeof n, NULL), 0); /* the pool's peak, in this process */
    wp_pool *p = make_limited_pool(1);
    int pid = tu_worker_pid(p);
    wp_future *f = tu_run(p, close_statm_task, NULL, 0, NULL);
    ck_assert_int_eq(tu_result_int(f), 1);
    wp_future_release(f);
    f = tu_run(p, tu_echo, NULL, 0, NULL); /* a task that peaks at nothing */
    tu_check_echo(f, NULL, 0);
    wp_future_release(f);
    ck_assert_int_eq(tu_worker_pid(p), pid);
    ck_assert_uint_eq(tu_pool_stats(p).workers_recycled, 0);
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_rss_tests,
        TU_TEST(rss_leak_recycles),
        TU_TEST(rss_every_task_leaks),
        TU_TEST(rss_limit_below_idle),
        TU_TEST(rss_no_limit),
        TU_TEST(rss_exit_status_is_crash),
        TU_TEST(rss_recycle_is_no_failed_start),
        TU_TEST(rss_max_tasks),
        TU_TEST(rss_peak_is_not_size),
        TU_TEST(rss_fallback_peak),
        TU_TEST(rss_fallback_peak_is_the_workers))
