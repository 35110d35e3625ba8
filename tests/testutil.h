/* SPDX-License-Identifier: MIT */
/*
 * testutil.h — what the Check suites share: the test-definition macros
 * (WP_TEST, WP_TEST_BOTH: a test under both start methods), task functions
 * whose workers succeed, fail, crash, hang, leak or break the protocol, and
 * the helpers every suite would otherwise write again (its pool, waits on
 * events, outcome and stats checks, many submitting threads, processes and
 * descriptors).
 *
 * One header, in sections named after the file that implements each:
 *   testutil_suite.c  writing and running tests: macros, tables, tu_main,
 *                     sanitizer builds, seeds and scaling, clocks;
 *   testutil.c        task functions, and pools, futures, outcomes, stats
 *                     and crowds of submitting threads;
 *   testutil_files.c  temporary files and FIFOs, and tasks held on them,
 *                     memory and data shared with workers of every start
 *                     method;
 *   testutil_proc.c   processes and /proc, descriptors, blocked threads,
 *                     the spin check.
 */
#ifndef WP_TESTUTIL_H
#define WP_TESTUTIL_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "workerpool.h"

/* ============================= writing and running tests: testutil_suite.c */

/* How long a test waits for a condition that must come true. */
#define TU_DEADLINE_MS 20000
/* An upper bound for what must happen "at once" (a cancel, a reap, a
   destroy): far above any scheduling delay of a loaded 2-core machine under
   a sanitizer, far below TU_DEADLINE_MS and the slow paths it rules out. */
#define TU_PROMPT_MS 5000

/*
 * Defining tests, as libuv's TEST_IMPL does (neither needs END_TEST):
 *
 *   WP_TEST(name) { ... }       runs once: TU_CASE("group", name) in the
 *                               suite's table (or tcase_add_test);
 *   WP_TEST_BOTH(name) { ... }  runs once per start method: TU_TEST(name)
 *                               in the suite's table (or tcase_add_both).
 *                               Check's loop index is the start method; the
 *                               body finds it in tu_method
 *                               (WP_START_FORKSERVER, WP_START_FORK, then
 *                               WP_START_EXEC),
 *                               and tu_make_pool makes its pool with it.
 *
 * The table is the suite's main (tu_main, below), or, in a suite of
 * several files, its file's part (TU_PART).  A new test is one function
 * and one line of that table:
 *
 *   WP_TEST_BOTH(cancel_twice)
 *   {
 *       wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
 *       wp_future *f = tu_submit(p, tu_hang, NULL, 0, NULL);
 *       ...
 *       wp_pool_destroy(p);
 *   }
 *   ...
 *       TU_TEST(cancel_twice),
 */
extern int tu_method;
/* The pool's workers are this process's own children: no fork server
   between (WP_START_FORK, WP_START_EXEC). */
static inline bool tu_no_forkserver(void)
{
    return tu_method != WP_START_FORKSERVER;
}
/* What a WP_TEST_BOTH test does first: tu_method = method, and a fresh
   directory for tu_tmp_path (also when Check runs tests without forking). */
void tu_begin(int method);
#define WP_TEST(name) START_TEST(name)
#define WP_TEST_BOTH(name)                 \
    static void name##_both(void);         \
    START_TEST(name)                       \
    {                                      \
        tu_begin(_i);                      \
        name##_both();                     \
    }                                      \
    END_TEST                               \
    static void name##_both(void)
#define tcase_add_both(tc, name) \
    tcase_add_loop_test((tc), (name), WP_START_FORKSERVER, WP_START_EXEC + 1)
#define tcase_add_forked(tc, name) \
    tcase_add_loop_test((tc), (name), WP_START_FORKSERVER, WP_START_FORK + 1)

/*
 * A suite's table of tests, in the order they run: TU_TEST(name), a
 * WP_TEST_BOTH test in a TCase of its own name (CK_RUN_CASE=name picks
 * it), or TU_CASE("group", name), a WP_TEST in the TCase "group".  Every
 * TCase gets the suite's timeout and the temporary-directory fixture
 * (tu_tmp_setup), and `setup` as a checked fixture if it is not NULL.
 */
typedef struct tu_test {
    const char  *tcase; /* NULL: a WP_TEST_BOTH test in a TCase of its own */
    const char  *name;
    const TTest *fn;
} tu_test;
#define TU_TEST(name)        { NULL, #name, name }
#define TU_CASE(tcase, name) { tcase, #name, name }
#define TU_COUNT(array)      (sizeof (array) / sizeof (array)[0])

typedef struct tu_suite {
    const char      *name;
    double           timeout_s; /* Check's per-test timeout: the hang detector */
    enum fork_status fork;      /* CK_FORK_GETENV (the default): as $CK_FORK says */
    SFun             setup;     /* a checked fixture of every TCase, or NULL */
    bool             fork_only; /* WP_TEST_BOTH tests share memory with their workers
                                   through fork: not under WP_START_EXEC */
} tu_suite;
void tu_add_tests(Suite *s, const tu_suite *def, const tu_test *tests, size_t n);
/* The whole main of a suite: make it from def and tests[], run it, and
   return the exit status (EXIT_FAILURE if any test failed). */
int tu_main(tu_suite def, const tu_test *tests, size_t n);

/* Run every test of s (srunner_set_fork_status(fork_status) first;
   CK_FORK_GETENV is Check's default) and return the exit status for main:
   EXIT_FAILURE if any failed. */
int tu_run_suite(Suite *s, enum fork_status fork_status);

/*
 * A suite in several files (one binary): each file adds its part of the
 * table, and main runs the parts in order.  TU_PART(fn, entries...)
 * defines the function fn, a tu_part_fn that adds those TU_TEST and
 * TU_CASE entries to s as tu_add_tests does (a TU_CASE group belongs to
 * one part):
 *
 *   TU_PART(control_add_retry_tests,          in check_control_retry.c
 *           TU_TEST(retry_until_success),
 *           TU_TEST(retries_exhausted))
 *
 *   tu_part_fn control_add_retry_tests, ...;  in the suite's header
 *
 *   static tu_part_fn *const parts[] = { ..., control_add_retry_tests, ... };
 *   return tu_main_parts(suite, parts, TU_COUNT(parts));    in its main
 */
typedef void tu_part_fn(Suite *s, const tu_suite *def);
#define TU_PART(fn, ...)                                          \
    void fn(Suite *s, const tu_suite *def)                        \
    {                                                             \
        const tu_test tu_part_[] = { __VA_ARGS__ };               \
        tu_add_tests(s, def, tu_part_, TU_COUNT(tu_part_));       \
    }
/* tu_main for such a suite: make it from def and the n parts, run it. */
int tu_main_parts(tu_suite def, tu_part_fn *const *parts, size_t n);
/*
 * TU_ASAN: built with AddressSanitizer.  Its allocator (as in GCC 12's
 * libasan) is not fork-safe: a process forked while another thread holds
 * one of its locks deadlocks in its first malloc or free.  WP_START_FORK
 * forks workers from the whole program on the dispatcher thread, so tests
 * keep their own threads out of the allocator while it may fork (they wait
 * for workers_alive first, with malloc-free polling).
 */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifndef TU_ASAN
#define TU_ASAN 0
#endif

/* TU_TSAN: built with ThreadSanitizer (tests that scale their work down
   under sanitizers look at both). */
#if defined(__SANITIZE_THREAD__)
#define TU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TU_TSAN 1
#endif
#endif
#ifndef TU_TSAN
#define TU_TSAN 0
#endif

/*
 * Randomised tests.  tu_seed(): $WP_TEST_SEED if set, else one from the
 * clock and the pid; tests print it, so a failure can be replayed with
 * WP_TEST_SEED=<seed>.  tu_rand: splitmix64 on the caller's state.
 * tu_scaled(n): an iteration count for this build: n plain, n divided by
 * TU_ASAN_SLOWDOWN or TU_TSAN_SLOWDOWN under those sanitizers (at least
 * 1); $WP_TEST_SCALE (a percentage) scales it further, e.g. 1000 for a
 * long soak.
 */
#define TU_ASAN_SLOWDOWN 2
#define TU_TSAN_SLOWDOWN 4
uint64_t tu_seed(void);
uint64_t tu_rand(uint64_t *state);
uint64_t tu_rand_below(uint64_t *state, uint64_t n); /* 0 .. n-1; 0 if n is 0 */
unsigned tu_scaled(unsigned n);
/* How many times slower this build runs: 1 plain, else the slowdown of its
   sanitizer (times between events stretch by it). */
unsigned tu_slowdown(void);

/* Monotonic milliseconds, and a short pause for loops that poll a condition
   against a deadline. */
int64_t tu_now_ms(void);
void    tu_poll_pause(void);
/* Sleep this long, through signals: for task functions whose work is
   time, and for jitter, never to let something happen. */
void    tu_sleep_us(uint64_t us);
void    tu_sleep_ms(int64_t ms);

/* ============================================== task functions: testutil.c */

/* Task functions (they run in worker processes). */
int tu_echo(const void *arg, size_t len, wp_buf *out);        /* result = arg */
int tu_empty(const void *arg, size_t len, wp_buf *out);       /* result = nothing */
int tu_fail(const void *arg, size_t len, wp_buf *out);        /* wp_buf_fail(code = *(int*)arg, "tu_fail") */
int tu_return(const void *arg, size_t len, wp_buf *out);      /* returns *(int*)arg, no wp_buf_fail */
int tu_segv(const void *arg, size_t len, wp_buf *out);        /* dies of SIGSEGV */
int tu_abort(const void *arg, size_t len, wp_buf *out);       /* dies of SIGABRT */
int tu_exit(const void *arg, size_t len, wp_buf *out);        /* _exit(*(int*)arg) */
int tu_hang(const void *arg, size_t len, wp_buf *out);        /* for (;;) */
int tu_sleep(const void *arg, size_t len, wp_buf *out);       /* sleeps *(int64_t*)arg ms, echoes */
int tu_garbage(const void *arg, size_t len, wp_buf *out);     /* writes junk to the pool's pipe */
int tu_big_result(const void *arg, size_t len, wp_buf *out);  /* *(size_t*)arg bytes of pattern */
int tu_alloc(const void *arg, size_t len, wp_buf *out);       /* malloc *(size_t*)arg bytes; WP_ETASK(12) if NULL */
int tu_pid(const void *arg, size_t len, wp_buf *out);         /* result = getpid() */
int tu_count_fds(const void *arg, size_t len, wp_buf *out);   /* result = int: open fds >= 3 */
int tu_report(const void *arg, size_t len, wp_buf *out);      /* arg = tu_report_arg; result = int pid */

/* In a task function: copy its argument (arg, len) into the variable a if
   it is exactly sizeof a bytes; else return from the task, failed with
   code TU_EBADARG ("bad argument"). */
#define TU_EBADARG 22
#define TU_TASK_ARG(a, arg, len, out)                                   \
    do {                                                                \
        if ((len) != sizeof(a))                                         \
            return wp_buf_fail((out), TU_EBADARG, "bad argument");      \
        memcpy(&(a), (arg), sizeof(a));                                 \
    } while (0)

/*
 * tu_report: lets a test see a task running and hold it there, through FIFOs
 * the test owns (a worker inherits no descriptor, but it can open a path).
 * In order: if report[0], write getpid() (an int, atomically) to the FIFO
 * report; if gate[0], read one byte from the FIFO gate (blocks until the
 * test releases it, or every writer is gone); then sleep ms milliseconds, or
 * hang forever if ms < 0; result = the pid.
 */
typedef struct tu_report_arg {
    int64_t ms;
    char    report[128];
    char    gate[128];
} tu_report_arg;

/* Fill buf with a pattern derived from i (for checking big payloads). */
void tu_pattern(void *buf, size_t len, unsigned seed);
int  tu_pattern_ok(const void *buf, size_t len, unsigned seed);

/* ==================================== pools, futures, outcomes: testutil.c */

/* A pool made with exactly these options (start_method included); fails
   the test if it cannot be created.  It does not wait for the workers. */
wp_pool *tu_pool_create(wp_pool_options o);

/* tu_pool_create, then tu_wait_workers for all o.workers to have started
   and be alive. */
wp_pool *tu_pool_started(wp_pool_options o);

/* The pool of a WP_TEST_BOTH test: tu_pool_started with the test's start
   method (o.start_method is ignored). */
wp_pool *tu_make_pool(wp_pool_options o);

/* The pool's stats; fails the test if they cannot be read. */
wp_pool_stats tu_pool_stats(wp_pool *p);

/*
 * Poll the stats until at least `alive` workers are up and `started` have
 * ever reached ready; fails the test if that does not happen within
 * TU_DEADLINE_MS.  The loop neither allocates nor calls Check: under
 * WP_START_FORK the dispatcher may be forking meanwhile (see TU_ASAN).
 */
void tu_wait_workers(wp_pool *p, unsigned alive, uint64_t started);
/* The same poll, for processes that are not the test's (no Check call):
   true if it came true within timeout_ms. */
bool tu_workers_up(wp_pool *p, unsigned alive, uint64_t started, int64_t timeout_ms);

/*
 * Poll cond (evaluated until it holds, never again after) against
 * TU_DEADLINE_MS; fails the test, naming the condition, if it never holds.
 * Check is called only at the end.
 */
#define TU_POLL_UNTIL(cond)                                                        \
    do {                                                                           \
        int64_t tu_deadline_ = tu_now_ms() + TU_DEADLINE_MS;                       \
        bool tu_held_;                                                             \
        while (!(tu_held_ = (cond)) && tu_now_ms() < tu_deadline_)                 \
            tu_poll_pause();                                                       \
        ck_assert_msg(tu_held_, "never came true in %d ms: %s", TU_DEADLINE_MS, #cond); \
    } while (0)

/* Submit one task; returns its future (caller releases).  Fails the test
   if wp_submit does. */
wp_future *tu_submit(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                     const wp_task_options *opts);

/* Submit and wait for one task; returns the future (caller releases). */
wp_future *tu_run(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                  const wp_task_options *opts);

/* Fails the test if f does not settle within TU_DEADLINE_MS. */
void tu_wait_settled(wp_future *f);

/* f settles (tu_wait_settled) and succeeds with exactly these want_len
   bytes: no error, code 0, no message. */
void tu_check_echo(wp_future *f, const void *want, size_t want_len);

/* f has settled with this state, error and code, with this message
   (unless message is NULL) and without a result (NULL, length 0). */
void tu_check_outcome(const wp_future *f, int state, int error, int code, const char *message);

/* Submit a task that kills its worker (opts may be NULL) and wait for it to
   settle, then for the pool to have `alive` workers up and `started` ever
   (tu_wait_workers: no Check call while the replacement may be forking). */
wp_future *tu_run_crash(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                        const wp_task_options *opts, unsigned alive, uint64_t started);

/* The int result of a settled future that must have succeeded with one. */
int tu_result_int(const wp_future *f);

/* The pid of the worker that runs the next task (tu_pid; with one worker:
   the worker). */
int tu_worker_pid(wp_pool *p);

/* Does text hold the number n, not as part of a longer number? */
bool tu_has_number(const char *text, int n);

/*
 * The pool's counters against what a test expects: tu_assert_stats(s,
 * .submitted = TU_EQ(8), .failed = TU_EQ(0)) checks only the fields it
 * names, each equal to its TU_EQ, and fails the test naming the first that
 * differs.
 */
typedef struct tu_expect {
    bool     set;
    uint64_t want;
} tu_expect;
#define TU_EQ(n) { true, (uint64_t)(n) }
typedef struct tu_stats_want {
    tu_expect submitted, succeeded, failed, cancelled, timed_out, crashed, retried,
              workers_started, queued, running, workers_alive, expired;
} tu_stats_want;
/* 1 if s matches w; else 0, with the first difference in why[size]. */
int tu_stats_match(const wp_pool_stats *s, tu_stats_want w, char *why, size_t size);
#define tu_assert_stats(s, ...)                                                              \
    do {                                                                                     \
        char tu_why_[128];                                                                   \
        wp_pool_stats tu_s_ = (s);                                                           \
        ck_assert_msg(tu_stats_match(&tu_s_, (tu_stats_want){ __VA_ARGS__ }, tu_why_,        \
                                     sizeof tu_why_), "%s", tu_why_);                        \
    } while (0)

/*
 * Many threads submitting at once: each of `threads` threads submits
 * `per_thread` tasks, submit(ctx, thread, i, &future) for each, then waits
 * for all of them (up to TU_DEADLINE_MS in all) and asks ok(ctx, thread, i,
 * future) of each (ok may print why not).  tu_run_crowd returns once every
 * thread is joined, having failed the test if a submit failed or an
 * outcome was wrong.
 */
typedef struct tu_crowd {
    unsigned threads, per_thread;
    int  (*submit)(void *ctx, unsigned thread, unsigned i, wp_future **out);
    bool (*ok)(void *ctx, unsigned thread, unsigned i, wp_future *f);
    void *ctx;
} tu_crowd;
void tu_run_crowd(const tu_crowd *c);

/* ============================= temporary files and FIFOs: testutil_files.c */

/* A FIFO in a fresh temporary directory, held open O_RDWR by the test (so
   a worker's open() never blocks and its reads never see end-of-file while
   the test lives). */
typedef struct tu_fifo {
    char dir[64];
    char path[128];
    int  fd;
} tu_fifo;

void tu_fifo_open(tu_fifo *f);                  /* fails the test on error */
void tu_fifo_close(tu_fifo *f);                 /* closes and removes it */
/* Read one int a tu_report task wrote; -1 if none came within timeout_ms. */
int  tu_fifo_read_pid(tu_fifo *f, int64_t timeout_ms);
/* Read one int from fd (whole, through EINTR and short reads); -1 if none
   came within timeout_ms or fd reached end-of-file.  No Check call. */
int  tu_read_int(int fd, int64_t timeout_ms);
/* Let n tasks waiting on this FIFO as their gate go on. */
void tu_fifo_release(tu_fifo *f, unsigned n);

/* A task the test holds where it wants it: the FIFO it reports its pid
   to once it runs, and the gate it then waits at (tu_submit_held). */
typedef struct tu_hold {
    tu_fifo report, gate;
} tu_hold;
void tu_hold_open(tu_hold *h);
void tu_hold_close(tu_hold *h);

/*
 * Temporary files that go away even when a test fails (a failed assertion
 * ends the test's process at once): every TCase tu_add_tests makes has
 * an unchecked fixture, tu_tmp_setup and tu_tmp_teardown, that makes
 * and removes a directory for it in the runner's process.  tu_fifo_open
 * makes its FIFOs there (in /tmp without the fixture), and tu_tmp_path
 * names a file in a directory of the running test's own, made on first use
 * (WP_TEST_BOTH starts each run with a fresh one).
 */
void tu_tmp_setup(void);
void tu_tmp_teardown(void);
void tu_tmp_path(char *buf, size_t n, const char *name);
/* Room enough for any tu_tmp_path with a short name. */
#define TU_TMP_PATH_MAX 200
/* Forget the running test's directory: the next tu_tmp_path makes a fresh
   one (tu_begin calls it). */
void tu_tmp_begin_run(void);

/*
 * What a test shares with its workers under every start method.  An
 * exec'd worker inherits none of the test's memory (its globals hold
 * their initial values) but it does inherit the environment as it was
 * when the worker started, and it can open files (docs/ARCHITECTURE.md,
 * "Exec start").  So both helpers name what they share in an environment
 * variable, set before the pool is created:
 *
 * tu_env_setf(name, fmt, ...): setenv(name, the formatted value); fails
 * the test on error.  A worker_init finds its data so: worker_init_ctx is
 * a static string holding the variable's name (static data, whose
 * initial value every worker sees), and the worker_init calls
 * getenv(ctx).
 *
 * tu_shared_create(bytes): `bytes` zero bytes shared with every worker,
 * a file in the running test's directory (tu_tmp_path) mapped MAP_SHARED,
 * its size and path in TU_SHARED_ENV.  A forked worker inherits the
 * test's mapping; a worker whose copy of the test's pointer to it is NULL
 * (an exec'd one) maps the same file with tu_shared_attach, once: NULL if
 * it cannot (no Check call: it runs in workers).  tu_shared_destroy
 * unmaps it, removes the file and unsets the variable, once the pool is
 * gone.  One such mapping at a time.  A task that cannot attach fails:
 * return tu_no_shared(out), WP_ETASK with code TU_ENOSHARED.
 */
#define TU_SHARED_ENV "WP_TEST_SHARED"
#define TU_ENOSHARED  77
void  tu_env_setf(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *tu_shared_create(size_t bytes);
void *tu_shared_attach(void);
void  tu_shared_destroy(void *mem, size_t bytes);
int   tu_no_shared(wp_buf *out);

/* A tu_report argument: sleep ms (hang if < 0), reporting to report and
   waiting at gate where they are not NULL. */
tu_report_arg tu_report_arg_of(int64_t ms, const tu_fifo *report, const tu_fifo *gate);

/* Submit a tu_report task held at h's gate (with options o, may be NULL)
   and return its future once it runs in a worker; *pid (if not NULL) gets
   that worker's pid.  Fails the test if it does not run within
   TU_DEADLINE_MS.  tu_fifo_release(&h->gate, 1) lets it finish. */
wp_future *tu_submit_held(wp_pool *p, tu_hold *h, const wp_task_options *o, int *pid);

/* ======================== processes, descriptors, threads: testutil_proc.c */

/* Is a process with this pid still there (not yet reaped counts as there)? */
int tu_pid_alive(int pid);

/* Has it exited: gone, or a zombie nobody reaped yet? */
int tu_pid_exited(int pid);
/* Poll (no Check call) until pid has exited (tu_pid_exited), or is gone
   altogether, reaped (tu_wait_reaped); true if it did within timeout_ms. */
bool tu_wait_exited(int pid, int64_t timeout_ms);
bool tu_wait_reaped(int pid, int64_t timeout_ms);
/* Poll (no Check call, no allocation) until process or thread id shows
   state in /proc ('T' stopped, 'S' asleep); false if it has not within
   timeout_ms. */
bool tu_wait_state(int id, char state, int64_t timeout_ms);
/* Its parent's pid from /proc/<pid>/stat, or -1. */
int tu_pid_parent(int pid);
/* Its state letter and parent from /proc/<pid>/stat: 0, or -1 if it is
   gone.  Plain system calls only, no allocation: safe while a
   WP_START_FORK pool may be forking (see TU_ASAN). */
int tu_proc_stat(int pid, char *state, int *ppid);

/* Up to max pids of processes whose parent is `parent` and that run this
   program's image (forks, zombies included; not helpers a sanitizer
   exec'd, such as ThreadSanitizer's llvm-symbolizer); returns how many
   there are in all. */
size_t tu_children(int parent, int *out, size_t max);

/* The descriptors open in this process (numbers and what they are), to
   compare before and after.  tu_fds_new: how many are open now that were
   not in `before` (the first in *first, what it is in what[size]), leaving
   out pipes to helpers a sanitizer exec'd (tu_children), which it opens on
   its own. */
#define TU_FDS_MAX    256
#define TU_FD_TARGET  64
typedef struct tu_fds {
    int  n;
    int  fd[TU_FDS_MAX];
    char target[TU_FDS_MAX][TU_FD_TARGET];
} tu_fds;
void tu_fds_snapshot(tu_fds *snap);
int  tu_fds_new(const tu_fds *before, int *first, char *what, size_t size);
/* How many descriptors of `before` are closed now or point elsewhere (the
   first in *first): something closed what it did not own. */
int  tu_fds_gone(const tu_fds *before, int *first);

/*
 * Threads that call a blocking library function: tu_blocker_start runs
 * fn(arg) on a new thread and returns once that thread sleeps in the
 * kernel (state S or D in /proc), that is, blocked inside fn's call.  Fails
 * the test if it does not block within TU_DEADLINE_MS.  tu_blocker_join
 * returns fn's result.
 */
typedef struct tu_blocker {
    pthread_t  thread;
    int        (*fn)(void *arg);
    void      *arg;
    _Atomic int tid;  /* 0 until the thread runs */
    int        rc;
} tu_blocker;
void tu_blocker_start(tu_blocker *b, int (*fn)(void *arg), void *arg);
int  tu_blocker_join(tu_blocker *b);

/* Sleep through a window of TU_CPU_WINDOW_MS of wall time and fail the
   test if this process (all its threads) used half a core or more in it:
   a pool that should be sleeping is spinning.  what names the situation. */
#define TU_CPU_WINDOW_MS 300
void tu_assert_not_spinning(const char *what);
/* A sanitizer starts its symbolizer, a process it talks to over new
   descriptors, for its first report; out of descriptors it cannot, and even
   a report its suppressions would have dropped (they match function names)
   fails the test.  Tests that lower RLIMIT_NOFILE call this first, while
   there are descriptors.  Nothing in plain builds. */
void tu_start_symbolizer(void);

#endif
