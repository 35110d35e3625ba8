/* SPDX-License-Identifier: MIT */
/*
 * check_process.c — the pool's processes against what a host program does
 * to them: its SIGCHLD disposition (ignored, handled with and without
 * SA_RESTART, SA_NOCLDWAIT, a thread reaping every child) and the rest of
 * its signal set-up, children it forks without exec that keep the pool's
 * descriptors, pools created on threads that exit, and tasks that leave
 * processes behind (a child, a setsid'ed child with a child of its own, a
 * double-forked daemon) on deadline, cancel, recycling, shutdown and the
 * owner's death.
 *
 * Every test runs twice, under WP_START_FORKSERVER and WP_START_FORK
 * (WP_TEST_BOTH).  Check runs each test in a process of its own, so a test
 * may change its signal dispositions, or install a seccomp filter that
 * makes the kernel look older (no pidfd; no exit status kept in a pidfd) to
 * reach the library's fallbacks.  No test sleeps to let things happen, and
 * every process a test causes is gone when it ends, even when it fails.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h" /* wp__each_child, wp__each_child_by_stat */

#define GONE_MS      TU_PROMPT_MS /* processes that must be gone (it takes ms) */
/* The deadline of tree tasks: far past forking and reporting, even on a
   loaded machine under a sanitizer (times tu_slowdown()). */
#define TREE_TIMEOUT_MS 500
#define MAX_PIDS        64

static int pidfd_of(int pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* SIGKILL whatever of pids is still there (not our children: through a
   pidfd, never a pid that may have been reused).  Returns how many were. */
static int kill_leftovers(const int *pids, size_t n)
{
    int left = 0;
    for (size_t i = 0; i < n; i++) {
        if (tu_pid_exited(pids[i]))
            continue;
        left++;
        int fd = pidfd_of(pids[i]);
        if (fd >= 0) {
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
            close(fd);
        }
    }
    return left;
}

/* pids[0 .. must) exit within GONE_MS; then whatever of pids[0 .. n) is
   left is killed (escapees the library cannot reach, or, when the test
   fails, the stuck ones). */
static void assert_gone(const int *pids, size_t n, size_t must, const char *what)
{
    int64_t deadline = tu_now_ms() + GONE_MS;
    size_t i = 0;
    while (i < must) {
        if (tu_pid_exited(pids[i]))
            i++;
        else if (tu_now_ms() < deadline)
            tu_poll_pause();
        else
            break;
    }
    int stuck = i < must ? pids[i] : 0;
    int left = kill_leftovers(pids, must);
    kill_leftovers(pids + must, n - must);
    ck_assert_msg(stuck == 0, "%d of %zu %s outlived it (pid %d first)", left, must, what, stuck);
}

/* ------------------------------------------------------ an older kernel */

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LOW_WORD(i) (offsetof(struct seccomp_data, args[i]))
#else
#define ARG_LOW_WORD(i) (offsetof(struct seccomp_data, args[i]) + sizeof(uint32_t))
#endif

#define PIDFD_IOCTL_TYPE   0xFF /* pidfs ioctls: _IOC_TYPE */
#define PIDFD_GET_INFO_NR  11   /* PIDFD_GET_INFO (Linux 6.13): _IOC_NR */
#define IOCTL_TYPE_NR_MASK 0xFFFFu

/*
 * From now on, in this process and every process it forks, syscall nr
 * fails with err — only for ioctl requests of this type and number if
 * ioctl_type_nr is not 0 (so whatever struct size the library passes).
 * False where no filter can be installed: the caller skips its test.
 */
static bool fail_syscall(long nr, uint32_t ioctl_type_nr, int err)
{
#ifdef AUDIT_ARCH_HERE
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW_WORD(1)),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ioctl_type_nr != 0 ? IOCTL_TYPE_NR_MASK : 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ioctl_type_nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
#else
    (void)nr; (void)ioctl_type_nr; (void)err;
    return false;
#endif
}

/* As on Linux before 5.3: no pidfd at all. */
static bool kernel_without_pidfd(void)
{
    return fail_syscall(SYS_pidfd_open, 0, ENOSYS);
}

/* As on Linux before 6.15 (or 6.13): a pidfd keeps no exit status. */
static bool kernel_without_pidfd_info(void)
{
    return fail_syscall(SYS_ioctl, (PIDFD_IOCTL_TYPE << 8) | PIDFD_GET_INFO_NR, ENOTTY);
}

/* Does this kernel tell a pidfd's holder the exit status of a child that
   someone else reaped (PIDFD_INFO_EXIT, Linux 6.15)?  Then WP_START_FORK
   keeps statuses whatever the program does with SIGCHLD. */
static bool kernel_keeps_exit_status(void)
{
    struct {
        uint64_t mask, cgroupid;
        uint32_t ids[11];
        int32_t  exit_code;
    } info;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(3);
    int fd = pidfd_of(pid);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    if (fd < 0)
        return false;
    memset(&info, 0, sizeof info);
    info.mask = 1u << 3; /* PIDFD_INFO_EXIT */
    bool kept = ioctl(fd, _IOWR(PIDFD_IOCTL_TYPE, PIDFD_GET_INFO_NR, info), &info) == 0 &&
                (info.mask & (1u << 3)) != 0 && info.exit_code == st;
    close(fd);
    return kept;
}

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
 * Run fn (which kills its worker) and check the outcome: WP_ECRASHED with
 * code and text in the message — or, where may_lose, the status may have
 * been lost (WP_START_FORK, a program that reaps its children or has the
 * kernel do it): then code 0 and a message that says so and what to do.
 * Returns whether it was lost.
 */
static bool expect_crash(wp_pool *p, wp_task_fn fn, int arg, int code, const char *text,
                         bool may_lose, uint64_t started)
{
    int pid = tu_worker_pid(p);
    wp_future *f = tu_run_crash(p, fn, &arg, sizeof arg, NULL, 1, started + 1); /* + a new one */
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    const char *msg = wp_future_message(f);
    ck_assert_msg(tu_has_number(msg, pid), "message \"%s\" lacks the worker's pid %d", msg, pid);
    bool lost = may_lose && wp_future_code(f) == 0;
    if (lost) {
        ck_assert_msg(strstr(msg, "exit status was lost") != NULL &&
                      strstr(msg, "WP_START_FORKSERVER") != NULL,
                      "message \"%s\" does not say the status was lost and what to do", msg);
    } else {
        ck_assert_int_eq(wp_future_code(f), code);
        ck_assert_msg(strstr(msg, text) != NULL, "message \"%s\" lacks \"%s\"", msg, text);
    }
    wp_future_release(f);
    return lost;
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
    bool may_lose = tu_method == WP_START_FORK && lossy && (must_lose || !kernel_keeps_exit_status());
    if (!after_create)
        set_disposition(d);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    if (after_create)
        set_disposition(d);
    bool lost = expect_crash(p, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", may_lose, 1);
    lost |= expect_crash(p, tu_exit, 7, 256 + 7, "exited with status 7", may_lose, 2);
    if (must_lose && d != SIGCHLD_REAPER && tu_method == WP_START_FORK)
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

/* ------------------------------------------------- what tasks leave behind */

enum tree_shape {
    TREE_CHILD,  /* a child (in the worker's process group) */
    TREE_SETSID, /* a child in a session of its own, with a child of its own */
    TREE_DAEMON, /* double fork: a grandchild in a session of its own, orphaned */
    TREE_SHAPES
};

static const unsigned tree_reporters[TREE_SHAPES] = { 1, 2, 1 };

typedef struct tree_arg {
    char fifo[128];
    int  shape;
    int  then_return; /* once the tree has reported: 0 hang, 1 return */
} tree_arg;

/* In a process the task forked: say who we are (pid through the FIFO,
   a byte to the task), then wait to be killed. */
static _Noreturn void tree_member(const char *fifo, int ready)
{
    int pid = (int)getpid();
    int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid || write(ready, "x", 1) != 1)
        _exit(1);
    close(fd);
    for (;;)
        pause();
}

/* The task: fork a tree of the given shape, wait until all of it has
   reported, then hang or return. */
static int tu_tree(const void *arg, size_t len, wp_buf *out)
{
    tree_arg a;
    int ready[2];
    TU_TASK_ARG(a, arg, len, out);
    a.fifo[sizeof a.fifo - 1] = '\0';
    if (pipe2(ready, O_CLOEXEC) < 0)
        return wp_buf_fail(out, 5, "tu_tree: no pipe");
    pid_t c = fork();
    if (c == 0) {
        close(ready[0]);
        if (a.shape != TREE_CHILD) {
            if (setsid() < 0)
                _exit(1);
            pid_t g = fork();
            if (g == 0)
                tree_member(a.fifo, ready[1]);
            if (a.shape == TREE_DAEMON)
                _exit(g > 0 ? 0 : 1);
        }
        tree_member(a.fifo, ready[1]);
    }
    close(ready[1]);
    if (c < 0)
        return wp_buf_fail(out, 5, "tu_tree: cannot fork");
    char byte;
    for (unsigned i = 0; i < tree_reporters[a.shape]; i++)
        if (read(ready[0], &byte, 1) != 1)
            return wp_buf_fail(out, 5, "tu_tree: the tree did not report");
    close(ready[0]);
    if (a.shape == TREE_DAEMON)
        waitpid(c, NULL, 0);
    if (a.then_return)
        return 0;
    for (;;)
        pause();
}

/* A test's tree tasks: one of each shape, each with a FIFO of its own. */
typedef struct forest {
    tu_fifo    fifo[TREE_SHAPES];
    wp_future *f[TREE_SHAPES];
    int        pids[MAX_PIDS];
    size_t     n;
    size_t     in_group;  /* pids[0 .. in_group): in a worker's process group */
} forest;

static void forest_open(forest *fr)
{
    memset(fr, 0, sizeof *fr);
    for (int s = 0; s < TREE_SHAPES; s++)
        tu_fifo_open(&fr->fifo[s]);
}

static tree_arg tree_arg_of(const forest *fr, int shape, int then_return)
{
    tree_arg a;
    memset(&a, 0, sizeof a);
    snprintf(a.fifo, sizeof a.fifo, "%s", fr->fifo[shape].path);
    a.shape = shape;
    a.then_return = then_return;
    return a;
}

/* Submit the three trees (their futures kept in fr->f if keep), and read
   every pid they report. */
static void forest_plant(forest *fr, wp_pool *p, const wp_task_options *opts, int then_return,
                         bool keep)
{
    for (int s = 0; s < TREE_SHAPES; s++) {
        tree_arg a = tree_arg_of(fr, s, then_return);
        ck_assert_int_eq(wp_submit(p, tu_tree, &a, sizeof a, opts, keep ? &fr->f[s] : NULL), 0);
    }
    for (int s = 0; s < TREE_SHAPES; s++)
        for (unsigned i = 0; i < tree_reporters[s]; i++) {
            int pid = tu_fifo_read_pid(&fr->fifo[s], TU_DEADLINE_MS);
            if (pid <= 0) {
                kill_leftovers(fr->pids, fr->n);
                ck_abort_msg("a tree of shape %d did not report", s);
            }
            fr->pids[fr->n++] = pid;
            if (s == TREE_CHILD)
                fr->in_group = fr->n;
        }
}

/* After its workers went: the fork server has killed every process of the
   trees.  Under WP_START_FORK only those in a worker's process group are
   sure to go (the rest escaped: see worker.h); the test kills the rest. */
static void forest_gone(const forest *fr)
{
    size_t must = tu_method == WP_START_FORKSERVER ? fr->n : fr->in_group;
    assert_gone(fr->pids, fr->n, must, "processes the tasks forked");
}

static void forest_close(forest *fr)
{
    for (int s = 0; s < TREE_SHAPES; s++) {
        if (fr->f[s] != NULL)
            wp_future_release(fr->f[s]);
        tu_fifo_close(&fr->fifo[s]);
    }
}

/* After the trees went, the pool still serves. */
static void still_serves(wp_pool *p)
{
    wp_future *f = tu_run(p, tu_echo, "next", 5, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
}

/* What ends the tree tasks' workers. */
enum ending { BY_DEADLINE, BY_CANCEL, BY_RECYCLE, BY_SHUTDOWN };

/* Three tree tasks, one of each shape, on three workers that then end
   `how`: every process of the trees goes with them. */
static void trees_end(enum ending how)
{
    static const int outcome[] = { [BY_DEADLINE] = WP_ETIMEDOUT, [BY_CANCEL] = WP_ECANCELED,
                                   [BY_RECYCLE] = 0 };
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = TREE_SHAPES, .max_tasks_per_worker = how == BY_RECYCLE ? 1 : 0 });
    forest fr;
    forest_open(&fr);
    wp_task_options o = { .timeout_ms = how == BY_DEADLINE ? TREE_TIMEOUT_MS * tu_slowdown() : 0 };
    forest_plant(&fr, p, &o, how == BY_RECYCLE, how != BY_SHUTDOWN);
    if (how == BY_SHUTDOWN) {
        ck_assert_int_eq(wp_pool_shutdown(p, 0), 0);
    } else {
        for (int s = 0; s < TREE_SHAPES && how == BY_CANCEL; s++)
            ck_assert_int_eq(wp_future_cancel(fr.f[s]), 0);
        for (int s = 0; s < TREE_SHAPES; s++) {
            tu_wait_settled(fr.f[s]);
            ck_assert_msg(wp_future_error(fr.f[s]) == outcome[how], "tree %d: error %d (%s)", s,
                          wp_future_error(fr.f[s]), wp_future_message(fr.f[s]));
        }
        tu_wait_workers(p, TREE_SHAPES, 2 * TREE_SHAPES); /* the replacements */
    }
    forest_gone(&fr);
    if (how != BY_SHUTDOWN)
        still_serves(p);
    wp_pool_destroy(p);
    forest_close(&fr);
}

WP_TEST_BOTH(tree_deadline)
{
    trees_end(BY_DEADLINE);
}

WP_TEST_BOTH(tree_cancel)
{
    trees_end(BY_CANCEL);
}

/* max_tasks_per_worker: each worker retires after its task. */
WP_TEST_BOTH(tree_recycle)
{
    trees_end(BY_RECYCLE);
}

WP_TEST_BOTH(tree_shutdown)
{
    trees_end(BY_SHUTDOWN);
}

/* A stray of a worker that lives (its task's double-forked daemon, which
   that worker adopted) is left alone when another worker dies; it goes
   with its own worker. */
WP_TEST_BOTH(tree_of_live_worker_kept)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    forest fr;
    forest_open(&fr);
    tree_arg a = tree_arg_of(&fr, TREE_DAEMON, 0);
    ck_assert_int_eq(wp_submit(p, tu_tree, &a, sizeof a, NULL, &fr.f[TREE_DAEMON]), 0);
    int daemon = tu_fifo_read_pid(&fr.fifo[TREE_DAEMON], TU_DEADLINE_MS);
    ck_assert_int_gt(daemon, 0);
    fr.pids[fr.n++] = daemon;
    /* Once the replacement is up, the fork server is done with the dead
       worker's strays (it sweeps them before it forks again). */
    expect_crash(p, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", false, 2);
    bool kept = !tu_pid_exited(daemon);
    ck_assert_int_eq(wp_future_cancel(fr.f[TREE_DAEMON]), 0);
    tu_wait_settled(fr.f[TREE_DAEMON]);
    forest_gone(&fr);
    ck_assert_msg(kept, "another worker's death took a live worker's process");
    wp_pool_destroy(p);
    forest_close(&fr);
}

/* ---------------------------------------------------- the owner dies */

/* Every process under pid (its threads' children, theirs, ...), appended
   to pids. */
static void collect_descendants(int pid, int *pids, size_t *n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char kids[sizeof path + sizeof e->d_name + 16];
        snprintf(kids, sizeof kids, "/proc/%d/task/%s/children", pid, e->d_name);
        FILE *f = fopen(kids, "re");
        int kid;
        while (f != NULL && fscanf(f, "%d", &kid) == 1 && *n < MAX_PIDS) {
            pids[(*n)++] = kid;
            collect_descendants(kid, pids, n);
        }
        if (f != NULL)
            fclose(f);
    }
    closedir(d);
}

typedef struct owner_plan {
    bool trees;    /* run the three trees; else two tasks that hang */
    bool holder;   /* fork a child without exec, keeping every descriptor */
    bool no_pidfd; /* as on a kernel without pidfd */
} owner_plan;

/* How many pids the owner's tasks report through the FIFO of shape s:
   the trees' members, or the two hanging tu_report tasks' workers. */
static unsigned reports_expected(const owner_plan *plan, int s)
{
    if (plan->trees)
        return tree_reporters[s];
    return s == TREE_CHILD ? 2 : 0;
}

#define OWNER_NO_FILTER 9 /* the owner's exit status: no seccomp filter here */

/* In a child of the test: create a pool, have its workers busy, maybe fork
   a holder, report the holder's pid (or 0), and wait to be killed.  No
   Check calls: this is not the test's process. */
static _Noreturn void owner_main(const owner_plan *plan, forest *fr, int hold, int out)
{
    if (plan->no_pidfd && !kernel_without_pidfd())
        _exit(OWNER_NO_FILTER);
    wp_pool *p = NULL;
    unsigned workers = plan->trees ? TREE_SHAPES : 2;
    wp_pool_options o = { .workers = workers, .start_method = tu_method };
    if (wp_pool_create(&p, &o) != 0)
        _exit(10);
    if (!tu_workers_up(p, workers, 0, TU_DEADLINE_MS))
        _exit(11);
    for (unsigned t = 0; t < workers; t++) {
        tree_arg a = tree_arg_of(fr, (int)t, 0);
        tu_report_arg r = tu_report_arg_of(-1, &fr->fifo[TREE_CHILD], NULL);
        int rc = plan->trees ? wp_submit(p, tu_tree, &a, sizeof a, NULL, NULL)
                             : wp_submit(p, tu_report, &r, sizeof r, NULL, NULL);
        if (rc != 0)
            _exit(12);
    }
    int holder = 0;
    if (plan->holder) {
        holder = fork();
        if (holder < 0)
            _exit(13);
        if (holder == 0) { /* keeps every descriptor, until the test lets it go */
            char c;
            while (read(hold, &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
    }
    if (write(out, &holder, sizeof holder) != (ssize_t)sizeof holder)
        _exit(14);
    for (;;)
        pause();
}

/*
 * SIGKILL an owner whose pool is busy: its fork server and workers go
 * within GONE_MS (in practice a few ms: the figure is printed) even while
 * a child it forked holds their socket and pipes.  Under the fork server so
 * does everything the tasks forked; under WP_START_FORK nobody is left to
 * kill those (worker.h), and the test does.
 */
static void owner_dies(const owner_plan *plan)
{
    forest fr;
    forest_open(&fr);
    int hold[2], pp[2];
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
    pid_t owner = fork();
    ck_assert_int_ge(owner, 0);
    if (owner == 0) {
        close(hold[1]);
        close(pp[0]);
        owner_main(plan, &fr, hold[0], pp[1]);
    }
    close(hold[0]);
    close(pp[1]);
    int holder = tu_read_int(pp[0], TU_DEADLINE_MS);
    close(pp[0]);
    int all[MAX_PIDS];
    size_t nall = 0, nreports = 0, want = 0;
    for (int s = 0; s < TREE_SHAPES; s++)
        for (unsigned i = 0; i < reports_expected(plan, s); i++, want++) {
            int pid = holder >= 0 ? tu_fifo_read_pid(&fr.fifo[s], TU_DEADLINE_MS) : -1;
            if (pid > 0) {
                all[nall++] = pid;
                nreports++;
            }
        }
    collect_descendants(owner, all, &nall);
    /* The ones that must go first: everything but the holder under the
       fork server, the workers (the owner's children) under WP_START_FORK. */
    int pids[MAX_PIDS];
    size_t n = 0, must = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            must = n;
        for (size_t i = 0; i < nall; i++) {
            bool first = tu_method == WP_START_FORKSERVER || tu_pid_parent(all[i]) == owner;
            bool again = false;
            for (size_t j = 0; j < i; j++)
                again = again || all[j] == all[i];
            if (all[i] != holder && !again && first == (pass == 0))
                pids[n++] = all[i];
        }
    }
    int64_t killed = tu_now_ms();
    ck_assert_int_eq(kill(owner, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(owner, &st, 0), owner);
    bool set_up = holder >= 0 && nreports == want && (!plan->holder || holder > 0);
    if (set_up)
        assert_gone(pids, n, must, "processes of the dead owner's pool");
    else
        kill_leftovers(pids, n);
    int64_t took = tu_now_ms() - killed;
    close(hold[1]); /* the holder exits */
    forest_close(&fr);
    if (WIFEXITED(st) && WEXITSTATUS(st) == OWNER_NO_FILTER)
        return; /* cannot make the kernel look older here */
    ck_assert_msg(set_up, "the owner did not set up (status 0x%x, holder %d, %zu of %zu reports)",
                  (unsigned)st, holder, nreports, want);
    printf("%s, %s%s%s: %zu processes gone %lld ms after the owner's SIGKILL\n",
           tu_method == WP_START_FORK ? "WP_START_FORK" : "WP_START_FORKSERVER",
           plan->trees ? "trees" : "hanging tasks", plan->holder ? ", a forked child" : "",
           plan->no_pidfd ? ", no pidfd" : "", must, (long long)took);
}

WP_TEST_BOTH(owner_dies_with_forked_child)
{
    owner_dies(&(owner_plan){ .holder = true });
}

WP_TEST_BOTH(owner_dies_with_forked_child_without_pidfd)
{
    owner_dies(&(owner_plan){ .holder = true, .no_pidfd = true });
}

WP_TEST_BOTH(owner_dies_trees)
{
    owner_dies(&(owner_plan){ .trees = true });
}

/* ------------------------------------------------ listing one's children */

typedef struct kids {
    int    pid[MAX_PIDS];
    size_t n;
} kids;

static bool note_kid(pid_t pid, void *ctx)
{
    kids *k = ctx;
    if (k->n < MAX_PIDS)
        k->pid[k->n++] = (int)pid;
    return true;
}

static bool same_pids(const kids *k, const int *want, size_t n)
{
    if (k->n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < k->n; j++)
            found = found || k->pid[j] == want[i];
        if (!found)
            return false;
    }
    return true;
}

/* What the fork server uses to find strays: both ways list exactly this
   process's children, zombies included. */
WP_TEST(children_listed)
{
    enum { KIDS = 3 };
    int hold[2], pids[KIDS];
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    for (int i = 0; i < KIDS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            char c;
            close(hold[1]);
            if (i > 0) /* the first one ends at once: a zombie */
                while (read(hold[0], &c, 1) < 0 && errno == EINTR)
                    ;
            _exit(0);
        }
    }
    close(hold[0]);
    kids a = { .n = 0 }, b = { .n = 0 };
    int na = wp__each_child(note_kid, &a);
    int nb = wp__each_child_by_stat(note_kid, &b);
    close(hold[1]);
    for (int i = 0; i < KIDS; i++)
        ck_assert_int_eq(waitpid(pids[i], NULL, 0), pids[i]);
    ck_assert_int_eq(na, KIDS);
    ck_assert_int_eq(nb, KIDS);
    ck_assert(same_pids(&a, pids, KIDS));
    ck_assert(same_pids(&b, pids, KIDS));
    kids none = { .n = 0 };
    ck_assert_int_eq(wp__each_child(note_kid, &none), 0);
    ck_assert_int_eq(wp__each_child_by_stat(note_kid, &none), 0);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "process", .timeout_s = 60 };
    const tu_test tests[] = {
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
        TU_TEST(tree_deadline),
        TU_TEST(tree_cancel),
        TU_TEST(tree_recycle),
        TU_TEST(tree_shutdown),
        TU_TEST(tree_of_live_worker_kept),
        TU_TEST(owner_dies_with_forked_child),
        TU_TEST(owner_dies_with_forked_child_without_pidfd),
        TU_TEST(owner_dies_trees),
        TU_CASE("children_listed", children_listed),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
