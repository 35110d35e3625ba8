/*
 * check_process.c — the pool's processes against what a host program does
 * to them: its SIGCHLD disposition (ignored, handled with and without
 * SA_RESTART, SA_NOCLDWAIT, a thread reaping every child) and the rest of
 * its signal set-up.
 *
 * Every test runs twice: loop index 0 = WP_START_FORKSERVER, 1 =
 * WP_START_FORK.  Check runs each test in a process of its own, so a test
 * may change its signal dispositions, or install a seccomp filter that
 * makes the kernel look older (no pidfd; no exit status kept in a pidfd) to
 * reach the library's fallbacks.  No test sleeps to let things happen.
 */
#define _GNU_SOURCE
#include <check.h>
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

#define DEADLINE_MS     TU_DEADLINE_MS /* for conditions that must come true */

static int method; /* the start method of the running test (loop index) */

/* A pool with the test's start method and these many workers, all alive
   (so no worker is being forked while the test's thread allocates). */
static wp_pool *make_pool(unsigned workers, unsigned max_tasks)
{
    return tu_pool_started((wp_pool_options){
        .workers = workers, .start_method = method, .max_tasks_per_worker = max_tasks });
}

/* Wait for a future that must settle (rather than hang the test). */
static void settle(wp_future *f)
{
    ck_assert_msg(wp_future_wait(f, DEADLINE_MS) == 0, "the task never settled");
}

static int pidfd_of(int pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
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

/* Does text hold the number n, not as part of a longer number? */
static bool has_number(const char *text, int n)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    size_t len = strlen(num);
    for (const char *p = strstr(text, num); p != NULL; p = strstr(p + 1, num))
        if ((p == text || p[-1] < '0' || p[-1] > '9') && (p[len] < '0' || p[len] > '9'))
            return true;
    return false;
}

static int worker_pid(wp_pool *p)
{
    wp_future *f = tu_run(p, tu_pid, NULL, 0, NULL);
    size_t len = 0;
    const void *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, sizeof(int));
    int pid;
    memcpy(&pid, r, sizeof pid);
    wp_future_release(f);
    return pid;
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
    int pid = worker_pid(p);
    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, fn, &arg, sizeof arg, NULL, &f), 0);
    settle(f);
    tu_wait_workers(p, 1, started + 1); /* the replacement */
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    const char *msg = wp_future_message(f);
    ck_assert_msg(has_number(msg, pid), "message \"%s\" lacks the worker's pid %d", msg, pid);
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
    bool may_lose = method == WP_START_FORK && lossy && (must_lose || !kernel_keeps_exit_status());
    if (!after_create)
        set_disposition(d);
    wp_pool *p = make_pool(1, 0);
    if (after_create)
        set_disposition(d);
    bool lost = expect_crash(p, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", may_lose, 1);
    lost |= expect_crash(p, tu_exit, 7, 256 + 7, "exited with status 7", may_lose, 2);
    if (must_lose && d != SIGCHLD_REAPER && method == WP_START_FORK)
        ck_assert_msg(lost, "the status cannot have been known");
    wp_future *f = tu_run(p, tu_echo, "ok", 3, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert_str_eq(wp_future_result(f, NULL), "ok");
    wp_future_release(f);
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.crashed, 2);
    ck_assert_uint_eq(s.succeeded, 3); /* two tu_pid and the echo */
    wp_pool_destroy(p);
    end_disposition(d);
}

/* One test per disposition, set before the pool exists (or after). */
#define SIGCHLD_TEST(name, disposition, after_create) \
    START_TEST(name)                                   \
    {                                                  \
        method = _i;                                   \
        crash_reports(disposition, after_create, false); \
    }                                                  \
    END_TEST

SIGCHLD_TEST(sigchld_default, SIGCHLD_DEFAULT, false)
SIGCHLD_TEST(sigchld_ignored, SIGCHLD_IGNORED, false)
SIGCHLD_TEST(sigchld_ignored_after_create, SIGCHLD_IGNORED, true)
SIGCHLD_TEST(sigchld_handler, SIGCHLD_HANDLER, false)
SIGCHLD_TEST(sigchld_handler_norestart, SIGCHLD_HANDLER_NORESTART, false)
SIGCHLD_TEST(sigchld_nocldwait, SIGCHLD_NOCLDWAIT, false)
SIGCHLD_TEST(sigchld_reaper_thread, SIGCHLD_REAPER, false)

/* A kernel whose pidfds keep no exit status: under WP_START_FORK the
   status is lost and the task fails saying so; never a hang. */
START_TEST(sigchld_ignored_status_lost)
{
    method = _i;
    if (!kernel_without_pidfd_info())
        return; /* cannot make the kernel look older here */
    crash_reports(SIGCHLD_IGNORED, false, true);
}
END_TEST

/* No pidfd at all: the pool waits for killed workers by pid. */
START_TEST(sigchld_ignored_without_pidfd)
{
    method = _i;
    if (!kernel_without_pidfd())
        return;
    crash_reports(SIGCHLD_IGNORED, false, true);
}
END_TEST

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
   blocked — but for what worker_init set. */
START_TEST(worker_signals_default)
{
    method = _i;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, NULL), 0);
    ck_assert(signal(SIGTERM, SIG_IGN) != SIG_ERR);
    ck_assert(signal(SIGUSR1, count_sigchld) != SIG_ERR);
    set_disposition(SIGCHLD_IGNORED);
    wp_pool *p = tu_pool_started((wp_pool_options){
        .workers = 1, .start_method = method, .worker_init = ignore_init_signal });
    wp_future *f = tu_run(p, tu_signal_state, NULL, 0, NULL);
    size_t len = 0;
    unsigned char state[2][NSIG];
    const void *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, sizeof state);
    memcpy(state, r, sizeof state);
    for (int sig = 1; sig < NSIG; sig++) {
        bool set = sig == INIT_SIGNAL;
        ck_assert_msg(state[0][sig] == set, "signal %d: %s", sig,
                      set ? "not as the worker set it" : "not its default action");
        ck_assert_msg(!state[1][sig], "signal %d is blocked in the worker", sig);
    }
    wp_future_release(f);
    wp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *process_suite(void)
{
    Suite *s = suite_create("process");
    const tu_test tests[] = {
        { "sigchld_default", sigchld_default },
        { "sigchld_ignored", sigchld_ignored },
        { "sigchld_ignored_after_create", sigchld_ignored_after_create },
        { "sigchld_handler", sigchld_handler },
        { "sigchld_handler_norestart", sigchld_handler_norestart },
        { "sigchld_nocldwait", sigchld_nocldwait },
        { "sigchld_reaper_thread", sigchld_reaper_thread },
        { "sigchld_ignored_status_lost", sigchld_ignored_status_lost },
        { "sigchld_ignored_without_pidfd", sigchld_ignored_without_pidfd },
        { "worker_signals_default", worker_signals_default },
    };
    tu_add_method_tests(s, tests, sizeof tests / sizeof tests[0], 60, NULL, NULL);
    return s;
}

int main(void)
{
    return tu_run_suite(process_suite(), CK_FORK_GETENV);
}
