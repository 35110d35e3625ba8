/* SPDX-License-Identifier: MIT */
/*
 * check_process_host.c — the pool's processes against what the host
 * program does (check_process.c says how the suite's tests work): each
 * SIGCHLD disposition, set before the pool exists or after, with statuses
 * lost only where they must be and said so; the rest of its signal set-up,
 * which no task inherits; children it forks without exec that keep the
 * pool's descriptors; and pools created on threads that exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_process.h"

/* ------------------------------------------------ SIGCHLD dispositions */

enum disposition {
    SIGCHLD_DEFAULT,
    SIGCHLD_IGNORED,           /* SIG_IGN: the kernel reaps children */
    SIGCHLD_HANDLER,           /* a handler, SA_RESTART */
    SIGCHLD_HANDLER_NORESTART, /* a handler, system calls see EINTR */
    SIGCHLD_NOCLDWAIT,         /* a handler and SA_NOCLDWAIT: the kernel reaps */
    SIGCHLD_REAPER             /* a thread calling waitpid(-1) in a loop */
};

static atomic_uint sigchld_count;
static atomic_bool reaper_stop;
static pthread_t reaper;

static void count_sigchld(int sig)
{
    (void)sig;
    atomic_fetch_add(&sigchld_count, 1);
}

/* A program thread that reaps every child it can, as careless programs do. */
static void *reaper_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&reaper_stop))
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            tu_poll_pause();
    return NULL;
}

static void set_disposition(enum disposition d)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_DFL;
    switch (d) {
    case SIGCHLD_IGNORED:
        sa.sa_handler = SIG_IGN;
        break;
    case SIGCHLD_HANDLER:
        sa.sa_handler = count_sigchld;
        sa.sa_flags = SA_RESTART;
        break;
    case SIGCHLD_HANDLER_NORESTART:
        sa.sa_handler = count_sigchld;
        break;
    case SIGCHLD_NOCLDWAIT:
        sa.sa_handler = count_sigchld;
        sa.sa_flags = SA_RESTART | SA_NOCLDWAIT;
        break;
    case SIGCHLD_REAPER:
        atomic_store(&reaper_stop, false);
        ck_assert_int_eq(pthread_create(&reaper, NULL, reaper_main, NULL), 0);
        return;
    case SIGCHLD_DEFAULT:
        break;
    }
    ck_assert_int_eq(sigaction(SIGCHLD, &sa, NULL), 0);
}

/* Stop the reaper: it may be blocked in waitpid() for a child that is no
   pool's (a sanitizer's symbolizer, say), so a child that ends at once
   wakes it. */
static void end_disposition(enum disposition d)
{
    if (d != SIGCHLD_REAPER)
        return;
    atomic_store(&reaper_stop, true);
    pid_t wake = fork();
    ck_assert_int_ge(wake, 0);
    if (wake == 0)
        _exit(0);
    pthread_join(reaper, NULL);
    waitpid(wake, NULL, 0); /* if the reaper left before it took it */
}

/*
 * With SIGCHLD set to d (before the pool exists, or after), a segfault and
 * an _exit(7) are reported as such, a replacement runs the next task, and
 * destroy returns.  Under the fork server always; under WP_START_FORK the
 * status of a worker the program (or the kernel for it) reaped can only be
 * known from its pidfd on kernels that keep it (must_lose: made older).
 */
static void crash_reports(enum disposition d, bool after_create, bool must_lose)
{
    bool lossy = d == SIGCHLD_IGNORED || d == SIGCHLD_NOCLDWAIT || d == SIGCHLD_REAPER;
    bool may_lose = tu_no_forkserver() && lossy && (must_lose || !kernel_keeps_exit_status());
    if (!after_create)
        set_disposition(d);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    if (after_create)
        set_disposition(d);
    bool lost = expect_crash(p, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", may_lose, 1);
    lost |= expect_crash(p, tu_exit, 7, 256 + 7, "exited with status 7", may_lose, 2);
    if (must_lose && d != SIGCHLD_REAPER && tu_no_forkserver())
        ck_assert_msg(lost, "the status cannot have been known");
    wp_future *f = tu_run(p, tu_echo, "ok", 3, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert_str_eq(wp_future_result(f, NULL), "ok");
    wp_future_release(f);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .crashed = TU_EQ(2), .succeeded = TU_EQ(3) /* two tu_pid and the echo */);
    wp_pool_destroy(p);
    end_disposition(d);
}

/* One test per disposition, set before the pool exists (or after). */
#define SIGCHLD_TEST(name, disposition, after_create) \
    WP_TEST_BOTH(name)                                 \
    {                                                  \
        crash_reports(disposition, after_create, false); \
    }

SIGCHLD_TEST(sigchld_default, SIGCHLD_DEFAULT, false)
SIGCHLD_TEST(sigchld_ignored, SIGCHLD_IGNORED, false)
SIGCHLD_TEST(sigchld_ignored_after_create, SIGCHLD_IGNORED, true)
SIGCHLD_TEST(sigchld_handler, SIGCHLD_HANDLER, false)
SIGCHLD_TEST(sigchld_handler_norestart, SIGCHLD_HANDLER_NORESTART, false)
SIGCHLD_TEST(sigchld_nocldwait, SIGCHLD_NOCLDWAIT, false)
SIGCHLD_TEST(sigchld_reaper_thread, SIGCHLD_REAPER, false)

/* A kernel whose pidfds keep no exit status: under WP_START_FORK the
   status is lost and the task fails saying so; never a hang. */
WP_TEST_BOTH(sigchld_ignored_status_lost)
{
    if (!kernel_without_pidfd_info())
        return; /* cannot make the kernel look older here */
    crash_reports(SIGCHLD_IGNORED, false, true);
}

/* No pidfd at all: the pool waits for killed workers by pid. */
WP_TEST_BOTH(sigchld_ignored_without_pidfd)
{
    if (!kernel_without_pidfd())
        return;
    crash_reports(SIGCHLD_IGNORED, false, true);
}

/* ------------------------------------------- what a worker starts from */

#define INIT_SIGNAL SIGUSR2 /* worker_init ignores it: a worker may set its own */

static int ignore_init_signal(void *ctx)
{
    (void)ctx;
    return signal(INIT_SIGNAL, SIG_IGN) == SIG_ERR;
}

/* The task: for every signal, whether its action is not the default, and
   whether it is blocked. */
static int tu_signal_state(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len;
    unsigned char state[2][NSIG];
    sigset_t mask;
    memset(state, 0, sizeof state);
    sigprocmask(SIG_BLOCK, NULL, &mask);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        state[0][sig] = sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL;
        state[1][sig] = sigismember(&mask, sig) == 1;
    }
    return wp_buf_append(out, state, sizeof state);
}

/* Whatever the program set up (an ignored signal, a handler, SIGCHLD
   ignored, a blocked signal), a task starts from the defaults with nothing
   blocked — but for what worker_init set, and the terminal stops a worker
   alone in its process group would get (ignored). */
WP_TEST_BOTH(worker_signals_default)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, NULL), 0);
    ck_assert(signal(SIGTERM, SIG_IGN) != SIG_ERR);
    ck_assert(signal(SIGUSR1, count_sigchld) != SIG_ERR);
    set_disposition(SIGCHLD_IGNORED);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1, .worker_init = ignore_init_signal });
    wp_future *f = tu_run(p, tu_signal_state, NULL, 0, NULL);
    size_t len = 0;
    unsigned char state[2][NSIG];
    const void *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, sizeof state);
    memcpy(state, r, sizeof state);
    for (int sig = 1; sig < NSIG; sig++) {
        bool set = sig == INIT_SIGNAL || sig == SIGTTOU || sig == SIGTTIN;
        ck_assert_msg(state[0][sig] == set, "signal %d: %s", sig,
                      set ? "not as the worker set it" : "not its default action");
        ck_assert_msg(!state[1][sig], "signal %d is blocked in the worker", sig);
    }
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* ------------------------------------- children the owner forks itself */

typedef struct destroyer {
    wp_pool    *pool;
    atomic_bool done;
} destroyer;

static void *destroy_main(void *arg)
{
    destroyer *d = arg;
    wp_pool_destroy(d->pool);
    atomic_store(&d->done, true);
    return NULL;
}

/* The program forks a child without exec (it holds copies of the pool's
   socket and pipe ends): destroy still returns at once. */
WP_TEST_BOTH(destroy_with_forked_child)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_future *f = tu_run(p, tu_echo, "x", 1, NULL);
    wp_future_release(f);
    int hold[2];
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) { /* lives until the test lets it go */
        char c;
        close(hold[1]);
        while (read(hold[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(hold[0]);
    destroyer d = { .pool = p };
    atomic_init(&d.done, false);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, destroy_main, &d), 0);
    int64_t start = tu_now_ms();
    while (!atomic_load(&d.done) && tu_now_ms() - start < TU_PROMPT_MS)
        tu_poll_pause();
    bool prompt = atomic_load(&d.done);
    close(hold[1]); /* the child exits */
    pthread_join(t, NULL);
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_msg(prompt, "wp_pool_destroy waited for a child of the program");
}

typedef struct creator {
    wp_pool_options o;
    wp_pool        *pool;
} creator;

static void *create_main(void *arg)
{
    creator *c = arg;
    c->pool = tu_pool_create(c->o);
    return NULL;
}

/* The pool is created on a thread that then ends: the fork server (forked
   by that thread) must not take that for the owner's death. */
static void pool_outlives_its_thread(void)
{
    creator c = { .o = { .workers = 1, .start_method = tu_method } };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, create_main, &c), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    tu_wait_workers(c.pool, 1, 1);
    int pid = tu_worker_pid(c.pool);
    ck_assert_int_gt(pid, 0);
    expect_crash(c.pool, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", false, 1);
    wp_future *f = tu_run(c.pool, tu_echo, "still here", 11, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    wp_pool_destroy(c.pool);
}

WP_TEST_BOTH(pool_on_exited_thread)
{
    pool_outlives_its_thread();
}

WP_TEST_BOTH(pool_on_exited_thread_without_pidfd)
{
    if (!kernel_without_pidfd())
        return;
    pool_outlives_its_thread();
}

/* Without close_range (Linux before 5.9) a worker still starts with
   nothing open but stdio and its two pipe ends: the fallback closes what
   it inherited one by one. */
WP_TEST_BOTH(workers_close_descriptors_without_close_range)
{
    if (!kernel_without_close_range())
        return;
    enum { EXTRA = 12, TASKS = 4 };
    int extra[EXTRA];
    for (int i = 0; i < EXTRA; i++) {
        extra[i] = open("/dev/null", O_RDONLY); /* no O_CLOEXEC */
        ck_assert_int_ge(extra[i], 0);
    }
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    for (int i = 0; i < TASKS; i++) {
        wp_future *f = tu_run(p, tu_count_fds, NULL, 0, NULL);
        ck_assert_int_eq(wp_future_error(f), 0);
        int n = tu_result_int(f);
        ck_assert_msg(n == 2, "a worker has %d descriptors open above stderr, not 2", n);
        wp_future_release(f);
    }
    wp_pool_destroy(p);
    for (int i = 0; i < EXTRA; i++)
        close(extra[i]);
}

/* ---------------------------------------------------------- its tests */

TU_PART(process_add_host_tests,
        TU_TEST(sigchld_default),
        TU_TEST(sigchld_ignored),
        TU_TEST(sigchld_ignored_after_create),
        TU_TEST(sigchld_handler),
        TU_TEST(sigchld_handler_norestart),
        TU_TEST(sigchld_nocldwait),
        TU_TEST(sigchld_reaper_thread),
        TU_TEST(sigchld_ignored_status_lost),
        TU_TEST(sigchld_ignored_without_pidfd),
        TU_TEST(worker_signals_default),
        TU_TEST(destroy_with_forked_child),
        TU_TEST(pool_on_exited_thread),
        TU_TEST(pool_on_exited_thread_without_pidfd),
        TU_TEST(workers_close_descriptors_without_close_range))
