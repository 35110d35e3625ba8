/* SPDX-License-Identifier: MIT */
/*
 * util.c — helpers shared by the pool, the fork server and the worker: the
 * clock, locks, the stop state of a thread's owner, descriptors (budget,
 * flags, closing all but some after fork), the pid cache, and the words of
 * errors (wp_strerror, wp__strerror).  Processes — signals, pidfds,
 * reaping, killing groups, listing children — are process.c's.  Kept free
 * of pool state so the worker and fork server can use it after fork.
 */
#include "config.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

int wp__stop_begin(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st, bool must_not_wait,
                   int64_t grace_ms, int64_t *deadline)
{
    if (must_not_wait) {
        wp__stop_leave(mu, cv, st);
        return WP_EBUSY;
    }
    *deadline = wp__deadline_after(grace_ms < 0 ? -1 : grace_ms);
    pthread_mutex_lock(mu);
    return 0;
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

bool wp__stop_may_free(int shutdown_rc, pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st)
{
    if (shutdown_rc != 0)
        return false;
    /* Shutdowns other threads began may still be on their way out. */
    pthread_mutex_lock(mu);
    while (atomic_load(&st->callers) > 0)
        pthread_cond_wait(cv, mu);
    pthread_mutex_unlock(mu);
    return true;
}

int wp__fd_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return WP_EINVAL;
    return 0;
}

/* Descriptors open now (0 if /proc cannot say: then only `more` counts).
   O(open descriptors), once per pool created or grown. */
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
