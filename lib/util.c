/* SPDX-License-Identifier: MIT */
/*
 * util.c — clock, descriptor and process helpers shared by the pool, the
 * fork server and the worker (signals reset, reaping, killing a process
 * group, listing children), plus wp_strerror().  Kept free of pool state so
 * the worker and fork server can use it after fork.
 */
#include "config.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int64_t wp__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wp__now_ms(void)
{
    return wp__now_us() / 1000;
}

int64_t wp__deadline_after(int64_t timeout_ms)
{
    /* Now rounded up, so a wait never ends before timeout_ms has passed. */
    return timeout_ms < 0 ? -1 : wp__sat_add((wp__now_us() + 999) / 1000, timeout_ms);
}

void wp__timespec_at_ms(struct timespec *ts, int64_t at_ms)
{
    ts->tv_sec = (time_t)(at_ms / 1000);
    ts->tv_nsec = (long)(at_ms % 1000) * 1000000L; /* ns per ms */
}

void wp__timespec_of_us(struct timespec *ts, int64_t us)
{
    ts->tv_sec = (time_t)(us / 1000000);
    ts->tv_nsec = (long)(us % 1000000) * 1000L; /* ns per us */
}

int wp__cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return WP_ENOMEM;
    int set = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    assert(set == 0); /* EINVAL only for a clock the system lacks */
    WP_UNUSED(set);
    int rc = pthread_cond_init(cv, &ca) == 0 ? 0 : WP_ENOMEM;
    pthread_condattr_destroy(&ca);
    return rc;
}

int wp__lock_init(pthread_mutex_t *mu, pthread_cond_t *cv)
{
    if (pthread_mutex_init(mu, NULL) != 0)
        return WP_ENOMEM;
    int rc = wp__cond_init_monotonic(cv);
    if (rc < 0)
        pthread_mutex_destroy(mu);
    return rc;
}

void wp__lock_destroy(pthread_mutex_t *mu, pthread_cond_t *cv)
{
    pthread_mutex_destroy(mu);
    pthread_cond_destroy(cv);
}

int64_t wp__grace_deadline(bool first, int64_t current, int64_t asked)
{
    if (first || (asked >= 0 && (current < 0 || asked < current)))
        return asked;
    return current;
}

/* callers is atomic only so that entering takes no lock (a shutdown from
   a done-callback must answer WP_EBUSY, never wait); leaving and waiting
   for zero happen under mu, which orders them with each other. */
void wp__stop_enter(wp_stop *st)
{
    atomic_fetch_add(&st->callers, 1);
}

void wp__stop_leave(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st)
{
    pthread_mutex_lock(mu);
    unsigned was = atomic_fetch_sub(&st->callers, 1);
    assert(was > 0);
    if (was == 1)
        pthread_cond_broadcast(cv); /* a destroy may wait for this */
    pthread_mutex_unlock(mu);
}

void wp__await_stop(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st, pthread_t thread)
{
    while (!st->stopped)
        pthread_cond_wait(cv, mu);
    bool join = !st->joined;
    st->joined = true;
    pthread_mutex_unlock(mu);
    if (join)
        pthread_join(thread, NULL);
    wp__stop_leave(mu, cv, st);
}

void wp__await_callers(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st)
{
    pthread_mutex_lock(mu);
    while (atomic_load(&st->callers) > 0)
        pthread_cond_wait(cv, mu);
    pthread_mutex_unlock(mu);
}

int wp__fd_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return WP_EINVAL;
    return 0;
}

/* Descriptors open now (0 if /proc cannot say: then only `more` counts).
   O(open descriptors), once per pool created. */
static unsigned count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int wp__fd_budget(unsigned more)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0; /* cannot tell: starts that run out fail one by one */
    rlim_t need = (rlim_t)count_open_fds() + more;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        return WP_EINVAL;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : WP_EINVAL;
}

/* Descriptors to try closing when neither close_range nor /proc can say
   which are open (and sysconf cannot say how many there may be). */
#define FALLBACK_OPEN_MAX 1024

static int fd_is_kept(int fd, const int *keep, size_t nkeep)
{
    for (size_t i = 0; i < nkeep; i++)
        if (keep[i] == fd)
            return 1;
    return 0;
}

/* close_range(2): false where the kernel (before 5.9) or its headers lack it. */
static bool close_range_sys(unsigned lo, unsigned hi)
{
#ifdef SYS_close_range
    return syscall(SYS_close_range, lo, hi, 0) == 0;
#else
    WP_UNUSED(lo); WP_UNUSED(hi);
    return false;
#endif
}

void wp__close_fds_except(int lowfd, const int *keep, size_t nkeep)
{
    /* Close the gaps between the kept descriptors, in ascending order. */
    int lo = lowfd;
    for (;;) {
        int next = -1;
        for (size_t i = 0; i < nkeep; i++)
            if (keep[i] >= lo && (next < 0 || keep[i] < next))
                next = keep[i];
        unsigned hi = next < 0 ? ~0u : (unsigned)next - 1;
        if (next != lo && !close_range_sys((unsigned)lo, hi))
            goto slow;
        if (next < 0)
            return;
        lo = next + 1;
    }
slow:
    {
        DIR *d = opendir("/proc/self/fd");
        if (d == NULL) {
            long max = sysconf(_SC_OPEN_MAX);
            for (int fd = lowfd; fd < (max > 0 ? max : FALLBACK_OPEN_MAX); fd++)
                if (!fd_is_kept(fd, keep, nkeep))
                    close(fd);
            return;
        }
        int dfd = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] != '.' && fd >= lowfd && fd != dfd && !fd_is_kept(fd, keep, nkeep))
                close(fd);
        }
        closedir(d);
    }
}

int wp__pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? fd : WP_ENOFUNC;
#else
    WP_UNUSED(pid);
    return WP_ENOFUNC;
#endif
}

bool wp__pidfd_exited(int pidfd)
{
    struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* pidfd_send_signal(2) with flags.  False only when the kernel refuses the
   flags as unknown (EINVAL: before Linux 6.9 for the group flag); true when
   the signal went, or cannot go for any other reason (the process is gone,
   headers without the call): then there is nothing else to try. */
static bool pidfd_signal(int pidfd, int sig, unsigned flags)
{
#ifdef SYS_pidfd_send_signal
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags) == 0 || errno != EINVAL;
#else
    WP_UNUSED(pidfd); WP_UNUSED(sig); WP_UNUSED(flags);
    return true;
#endif
}

void wp__pidfd_kill(int pidfd, int sig)
{
    (void)pidfd_signal(pidfd, sig, 0);
}

/* ------------------------------------------------------------ processes */

/* Kernel interfaces newer than many C libraries' headers. */
#define WP_P_PIDFD 3 /* idtype_t P_PIDFD for waitid (Linux 5.4) */
#define WP_PIDFD_SIGNAL_PROCESS_GROUP (1u << 2) /* pidfd_send_signal flag (6.9) */
/* PIDFD_GET_INFO (Linux 6.13) with its first, fixed-size struct, and the
   PIDFD_INFO_EXIT request (6.15): the status of a process already reaped. */
struct wp_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t  exit_code;
};
#define WP_PIDFS_IOCTL_MAGIC 0xFF
#define WP_PIDFD_GET_INFO    _IOWR(WP_PIDFS_IOCTL_MAGIC, 11, struct wp_pidfd_info)
#define WP_PIDFD_INFO_EXIT   (UINT64_C(1) << 3)

#define CHILDREN_CHUNK 512 /* bytes of a /proc children list read at a time */
#define PID_DIGITS_MAX 11  /* "-2147483648": any int */
#define STAT_HEAD      512 /* enough of /proc/<pid>/stat to reach the ppid */

void wp__reset_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    /* SIGKILL, SIGSTOP and the C library's own signals refuse: fine. */
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* What waitid() said, as waitpid() would have encoded it. */
static int wait_status_of(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED)
        return W_EXITCODE(si->si_status, 0);
    return W_EXITCODE(0, si->si_status) | (si->si_code == CLD_DUMPED ? WCOREFLAG : 0);
}

/* The status the kernel kept for the holders of a pidfd whose process is
   reaped: REAP_DONE and *status; REAP_NOT_YET, not recorded yet (it is
   being reaped); REAP_LOST, this kernel keeps none. */
static reap_result pidfd_exit_status(int pidfd, int *status)
{
    struct wp_pidfd_info info;
    memset(&info, 0, sizeof info);
    info.mask = WP_PIDFD_INFO_EXIT;
    if (ioctl(pidfd, WP_PIDFD_GET_INFO, &info) < 0)
        return REAP_LOST;
    if ((info.mask & WP_PIDFD_INFO_EXIT) == 0)
        return REAP_NOT_YET;
    *status = info.exit_code;
    return REAP_DONE;
}

reap_result wp__reap(pid_t pid, int pidfd, bool block, int *status)
{
    bool by_pidfd = pidfd >= 0;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int flags = WEXITED | (block ? 0 : WNOHANG);
        int r = by_pidfd ? waitid((idtype_t)WP_P_PIDFD, (id_t)pidfd, &si, flags)
                         : waitid(P_PID, (id_t)pid, &si, flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EINVAL && by_pidfd) {
            by_pidfd = false; /* a kernel with pidfds but no P_PIDFD (5.3) */
            continue;
        }
        if (r == 0 && si.si_pid == 0)
            return REAP_NOT_YET;
        if (r == 0) {
            *status = wait_status_of(&si);
            return REAP_DONE;
        }
        reap_result kept = pidfd >= 0 ? pidfd_exit_status(pidfd, status) : REAP_LOST;
        if (kept != REAP_NOT_YET)
            return kept;
        sched_yield(); /* let whoever reaps it finish */
        if (!block)
            return REAP_NOT_YET;
    }
}

void wp__kill_group(pid_t pid, int pidfd)
{
    if (pidfd < 0) {
        kill(pid, SIGKILL);
        kill(-pid, SIGKILL);
        return;
    }
    wp__pidfd_kill(pidfd, SIGKILL);
    if (pidfd_signal(pidfd, SIGKILL, WP_PIDFD_SIGNAL_PROCESS_GROUP))
        return; /* done, or the group is empty */
    /* An older kernel: the group by number, only while nobody has reaped
       pid (so nobody else can have its number as a group id). */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)WP_P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT) == 0 ||
        errno == EINVAL)
        kill(-pid, SIGKILL);
}

int wp__each_child(wp_child_fn fn, void *ctx)
{
    char path[sizeof "/proc/self/task//children" + PID_DIGITS_MAX];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wp__each_child_by_stat(fn, ctx);
    /* Space-separated pids, parsed as they come (no allocation). */
    char buf[CHILDREN_CHUNK];
    long pid = 0;
    bool digits = false;
    int n = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0 || (got < 0 && errno == EINTR))
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
                digits = true;
            } else if (digits) {
                n += fn((pid_t)pid, ctx);
                pid = 0;
                digits = false;
            }
        }
    if (digits)
        n += fn((pid_t)pid, ctx);
    close(fd);
    return n;
}

int wp__each_child_by_stat(wp_child_fn fn, void *ctx)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0; /* cannot be listed: none seen (util.h) */
    int self = (int)getpid(), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[sizeof "/proc//stat" + sizeof e->d_name], buf[STAT_HEAD];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        const char *p = strrchr(buf, ')'); /* the command name may hold anything */
        int ppid;
        char state;
        if (p != NULL && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == self)
            n += fn((pid_t)atoi(e->d_name), ctx);
    }
    closedir(d);
    return n;
}

const char *wp__strerror(int err, char *buf, size_t size)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* GNU strerror_r: may return a static string instead of filling buf. */
    const char *s = strerror_r(err, buf, size);
    if (s != buf)
        snprintf(buf, size, "%s", s);
#else
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
#endif
    return buf;
}

const char *wp__signal_name(int sig, char *buf, size_t size)
{
    static const struct { int sig; const char *name; } names[] = {
        { SIGHUP, "SIGHUP" },   { SIGINT, "SIGINT" },   { SIGQUIT, "SIGQUIT" },
        { SIGILL, "SIGILL" },   { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" },
        { SIGBUS, "SIGBUS" },   { SIGFPE, "SIGFPE" },   { SIGKILL, "SIGKILL" },
        { SIGUSR1, "SIGUSR1" }, { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" },
        { SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" }, { SIGTERM, "SIGTERM" },
        { SIGXCPU, "SIGXCPU" }, { SIGXFSZ, "SIGXFSZ" }, { SIGSYS, "SIGSYS" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(buf, size, "signal %d", sig);
    return buf;
}

int wp__describe_status(int status, char *buf, size_t size)
{
    if (WIFSIGNALED(status)) {
        char tmp[SIGNAL_NAME_MAX];
        int sig = WTERMSIG(status);
        snprintf(buf, size, "killed by %s", wp__signal_name(sig, tmp, sizeof tmp));
        return sig;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    snprintf(buf, size, "exited with status %d", code);
    return EXITED_CODE_BASE + code;
}

/* Relaxed: the value is the same for every thread of a process, so a
   thread that reads a stale 0 only makes the getpid() call itself; the
   atfork handler runs in the child's only thread, before anything else. */
static atomic_int cached_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    atomic_store_explicit(&cached_pid, 0, memory_order_relaxed);
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

pid_t wp__getpid(void)
{
    pthread_once(&atfork_once, install_atfork);
    pid_t pid = (pid_t)atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (pid == 0) {
        pid = getpid();
        atomic_store_explicit(&cached_pid, (int)pid, memory_order_relaxed);
    }
    return pid;
}

const char *wp_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define WP_STRERROR_CASE_(name, value, description) \
    case WP_##name:                                 \
        return description;
    WP_ERRNO_MAP(WP_STRERROR_CASE_)
#undef WP_STRERROR_CASE_
    default:
        return "unknown error";
    }
}
