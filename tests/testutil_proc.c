/* SPDX-License-Identifier: MIT */
/*
 * testutil_proc.c — what a test sees of processes and threads: whether a
 * pid is alive, exited or reaped, its state and parent in /proc, this
 * program's children, the descriptors it has open, threads blocked in a
 * library call, the spin check, and a sanitizer's symbolizer (testutil.h,
 * "processes, descriptors, threads").
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#ifdef TU_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

int tu_pid_alive(int pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

int tu_pid_exited(int pid)
{
    char state;
    int ppid;
    if (!tu_pid_alive(pid) || tu_proc_stat(pid, &state, &ppid) < 0)
        return 1;
    return state == 'Z' || state == 'X';
}

bool tu_wait_exited(int pid, int64_t timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    while (!tu_pid_exited(pid) && tu_now_ms() < deadline)
        tu_poll_pause();
    return tu_pid_exited(pid);
}

bool tu_wait_reaped(int pid, int64_t timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    while (tu_pid_alive(pid) && tu_now_ms() < deadline)
        tu_poll_pause();
    return !tu_pid_alive(pid);
}

bool tu_wait_state(int id, char want, int64_t timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    char state = '?';
    int ppid;
    while ((tu_proc_stat(id, &state, &ppid) < 0 || state != want) && tu_now_ms() < deadline)
        tu_poll_pause();
    return state == want;
}

int tu_pid_parent(int pid)
{
    char state;
    int ppid;
    return tu_proc_stat(pid, &state, &ppid) < 0 ? -1 : ppid;
}

int tu_proc_stat(int pid, char *state, int *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
        return -1;
    char *end;
    long v = strtol(p + 4, &end, 10);
    if (end == p + 4)
        return -1;
    *state = p[2];
    *ppid = (int)v;
    return 0;
}

/* Does pid run this program's image (a fork of it, not something exec'd)?
   A zombie's image is gone: it counts. */
static int same_image(int pid)
{
    char path[64], mine[PATH_MAX], its[PATH_MAX];
    ssize_t a = readlink("/proc/self/exe", mine, sizeof mine - 1);
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t b = readlink(path, its, sizeof its - 1);
    if (b < 0)
        return 1;
    return a == b && memcmp(mine, its, (size_t)a) == 0;
}

size_t tu_children(int parent, int *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        char state;
        int ppid;
        if (*end != '\0' || pid <= 0 || tu_proc_stat((int)pid, &state, &ppid) < 0 || ppid != parent ||
            !same_image((int)pid))
            continue;
        if (n < max)
            out[n] = (int)pid;
        n++;
    }
    closedir(d);
    return n;
}

/* What /proc/<pid>/fd/<name> points to ("pipe:[123]"); "" if unknown. */
static void fd_target(int pid, const char *name, char *out, size_t size)
{
    char path[64 + NAME_MAX];
    snprintf(path, sizeof path, "/proc/%d/fd/%.*s", pid, NAME_MAX, name);
    ssize_t n = readlink(path, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* Is this pipe of ours held by a process that runs another image?  A
   pool's pipes are held only by its own processes, forks of this program;
   such a pipe belongs to a sanitizer's helper (ThreadSanitizer's
   symbolizer), which the sanitizer opens on its own at any moment. */
static bool helper_pipe(const char *target)
{
    bool found = false;
    if (strncmp(target, "pipe:", 5) != 0)
        return false;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        char *end, path[64], its[TU_FD_TARGET];
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || same_image((int)pid))
            continue;
        snprintf(path, sizeof path, "/proc/%ld/fd", pid);
        DIR *fd = opendir(path);
        struct dirent *f;
        while (!found && fd != NULL && (f = readdir(fd)) != NULL) {
            fd_target((int)pid, f->d_name, its, sizeof its);
            found = f->d_name[0] != '.' && strcmp(its, target) == 0;
        }
        if (fd != NULL)
            closedir(fd);
    }
    closedir(d);
    return found;
}

void tu_fds_snapshot(tu_fds *snap)
{
    snap->n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && snap->n < TU_FDS_MAX) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        snap->fd[snap->n] = fd;
        fd_target((int)getpid(), e->d_name, snap->target[snap->n], sizeof snap->target[snap->n]);
        snap->n++;
    }
    closedir(d);
}

int tu_fds_new(const tu_fds *before, int *first, char *what, size_t size)
{
    static tu_fds now; /* large: not on the stack */
    int n = 0;
    tu_fds_snapshot(&now);
    for (int i = 0; i < now.n; i++) {
        bool old = false;
        for (int j = 0; j < before->n && !old; j++)
            old = before->fd[j] == now.fd[i] && strcmp(before->target[j], now.target[i]) == 0;
        if (old || helper_pipe(now.target[i]))
            continue;
        if (n++ == 0 && first != NULL) {
            *first = now.fd[i];
            snprintf(what, size, "%s", now.target[i]);
        }
    }
    return n;
}

int tu_fds_gone(const tu_fds *before, int *first)
{
    int n = 0;
    for (int i = 0; i < before->n; i++) {
        char name[16], now[TU_FD_TARGET];
        snprintf(name, sizeof name, "%d", before->fd[i]);
        fd_target((int)getpid(), name, now, sizeof now);
        if (strcmp(now, before->target[i]) != 0 && n++ == 0 && first != NULL)
            *first = before->fd[i];
    }
    return n;
}

/* ------------------------------------------------------------- blockers */

static void *blocker_main(void *arg)
{
    tu_blocker *b = arg;
    atomic_store(&b->tid, (int)gettid());
    b->rc = b->fn(b->arg);
    return NULL;
}

/* The thread's scheduler state letter, or 0 if it cannot be read. */
static char thread_state(int tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren != NULL && close_paren[1] == ' ' ? close_paren[2] : 0;
}

void tu_blocker_start(tu_blocker *b, int (*fn)(void *arg), void *arg)
{
    b->fn = fn;
    b->arg = arg;
    atomic_store(&b->tid, 0);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, blocker_main, b), 0);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    for (;;) {
        int tid = atomic_load(&b->tid);
        char st = tid != 0 ? thread_state(tid) : 0;
        if (st == 'S' || st == 'D')
            return;
        ck_assert_msg(tu_now_ms() < deadline, "a thread never blocked (state %c)", st ? st : '?');
        tu_poll_pause();
    }
}

int tu_blocker_join(tu_blocker *b)
{
    ck_assert_int_eq(pthread_join(b->thread, NULL), 0);
    return b->rc;
}

/* ---------------------------------------------------------- spin check */

static int64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void tu_assert_not_spinning(const char *what)
{
    int64_t c0 = cpu_us(), t0 = tu_now_ms();
    /* A measuring window, not a wait for something to happen. */
    struct timespec left = { 0, TU_CPU_WINDOW_MS * 1000000L };
    while (nanosleep(&left, &left) < 0)
        ;
    int64_t used = cpu_us() - c0, wall = (tu_now_ms() - t0) * 1000;
    ck_assert_msg(used * 2 < wall, "%s: this process used %lld us of CPU in %lld us", what,
                  (long long)used, (long long)wall);
}

void tu_start_symbolizer(void)
{
#ifdef TU_SANITIZED
    char where[128];
    __sanitizer_symbolize_pc(__builtin_return_address(0), "%f", where, sizeof where);
#endif
}
