/* SPDX-License-Identifier: MIT */
/*
 * process.c — the processes the library forks, as the pool and the fork
 * server see them (docs/ARCHITECTURE.md, "Processes"): pidfds, signals
 * reset after fork, reaping a child and getting its status even when
 * someone else reaped it, killing a worker with its process group, listing
 * this process's children, and wait statuses in words.  Declared in
 * util.h.  Every call that takes a pidfd where there is one does so: a
 * pidfd names one process, never a later one that reuses its pid.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* ----------------------------------------------------------------- pidfds */

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

/* ------------------------------------------------- reaping and killing */

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

/* ---------------------------------------------------------------- words */

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
