/* SPDX-License-Identifier: MIT */
/*
 * testutil.c — the misbehaving (and well-behaved) workers the suites use,
 * and the helpers they share (testutil.h says what each is for).
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
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

#define TMP_NFTW_FDS 8 /* descriptors nftw may hold open while it removes a tree */
#define US_PER_S     1000000L
#define US_PER_MS    1000u
#define NS_PER_US    1000L

static int arg_int(const void *arg, size_t len)
{
    int v = 0;
    if (len >= sizeof v)
        memcpy(&v, arg, sizeof v);
    return v;
}

int tu_echo(const void *arg, size_t len, wp_buf *out) { return wp_buf_append(out, arg, len); }
int tu_empty(const void *arg, size_t len, wp_buf *out) { (void)arg; (void)len; (void)out; return 0; }
int tu_fail(const void *arg, size_t len, wp_buf *out) { return wp_buf_fail(out, arg_int(arg, len), "tu_fail"); }
int tu_return(const void *arg, size_t len, wp_buf *out) { (void)out; return arg_int(arg, len); }
int tu_segv(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    /* Sanitizers catch SIGSEGV and exit with a status of their own: die of
       the signal itself, as an unsanitized program would. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}
int tu_abort(const void *arg, size_t len, wp_buf *out) { (void)arg; (void)len; (void)out; abort(); }
int tu_exit(const void *arg, size_t len, wp_buf *out) { (void)out; _exit(arg_int(arg, len)); }
int tu_hang(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    for (;;)
        pause();
}
int tu_sleep(const void *arg, size_t len, wp_buf *out)
{
    int64_t ms = 0;
    if (len >= sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    tu_sleep_ms(ms);
    return wp_buf_append(out, arg, len);
}
int tu_garbage(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    static const char junk[64] = "this is not a frame, this is not a frame, this is not a frame";
    for (int fd = 3; fd < 64; fd++)
        if (write(fd, junk, sizeof junk) < 0) { /* the read end: EBADF */ }
    for (;;)
        pause(); /* the pool must kill us */
}
int tu_big_result(const void *arg, size_t len, wp_buf *out)
{
    size_t n = 0;
    if (len >= sizeof n)
        memcpy(&n, arg, sizeof n);
    char *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return 12;
    tu_pattern(buf, n, 7);
    int rc = wp_buf_append(out, buf, n);
    free(buf);
    return rc == WP_E2BIG ? 0 : rc; /* ignore E2BIG: the pool must still fail it */
}
int tu_alloc(const void *arg, size_t len, wp_buf *out)
{
    size_t n = 0;
    if (len >= sizeof n)
        memcpy(&n, arg, sizeof n);
    /* Called through a volatile pointer: a compiler may not drop the
       allocation, which is the whole point of this task. */
    void *(*volatile alloc)(size_t) = malloc;
    char *p = alloc(n);
    if (p == NULL)
        return wp_buf_fail(out, 12, "allocation failed");
    memset(p, 1, n);
    free(p);
    return 0;
}
int tu_pid(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len;
    int pid = (int)getpid();
    return wp_buf_append(out, &pid, sizeof pid);
}
int tu_count_fds(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len;
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) >= 3 && atoi(e->d_name) != dirfd(d))
            n++;
    closedir(d);
    return wp_buf_append(out, &n, sizeof n);
}
int tu_report(const void *arg, size_t len, wp_buf *out)
{
    tu_report_arg a;
    TU_TASK_ARG(a, arg, len, out);
    a.report[sizeof a.report - 1] = a.gate[sizeof a.gate - 1] = '\0';
    int pid = (int)getpid();
    if (a.report[0] != '\0') {
        int fd = open(a.report, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid)
            return wp_buf_fail(out, 5, "tu_report: cannot report");
        close(fd);
    }
    if (a.gate[0] != '\0') {
        int fd = open(a.gate, O_RDONLY | O_CLOEXEC);
        char c;
        if (fd < 0)
            return wp_buf_fail(out, 5, "tu_report: cannot open the gate");
        while (read(fd, &c, 1) < 0 && errno == EINTR)
            ;
        close(fd);
    }
    if (a.ms < 0)
        for (;;)
            pause();
    tu_sleep_ms(a.ms);
    return wp_buf_append(out, &pid, sizeof pid);
}

tu_report_arg tu_report_arg_of(int64_t ms, const tu_fifo *report, const tu_fifo *gate)
{
    tu_report_arg a;
    memset(&a, 0, sizeof a);
    a.ms = ms;
    if (report != NULL)
        snprintf(a.report, sizeof a.report, "%s", report->path);
    if (gate != NULL)
        snprintf(a.gate, sizeof a.gate, "%s", gate->path);
    return a;
}

void tu_pattern(void *buf, size_t len, unsigned seed)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)((i * 131u + seed) ^ (i >> 11));
}

int tu_pattern_ok(const void *buf, size_t len, unsigned seed)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (unsigned char)((i * 131u + seed) ^ (i >> 11)))
            return 0;
    return 1;
}

int tu_method = WP_START_FORKSERVER;

wp_pool *tu_pool_create(wp_pool_options o)
{
    wp_pool *p = NULL;
    ck_assert_int_eq(wp_pool_create(&p, &o), 0);
    ck_assert_ptr_nonnull(p);
    return p;
}

wp_pool *tu_pool_started(wp_pool_options o)
{
    wp_pool *p = tu_pool_create(o);
    tu_wait_workers(p, o.workers, o.workers);
    return p;
}

wp_pool *tu_make_pool(wp_pool_options o)
{
    o.start_method = tu_method;
    return tu_pool_started(o);
}

wp_pool_stats tu_pool_stats(wp_pool *p)
{
    wp_pool_stats s;
    ck_assert_int_eq(wp_pool_get_stats(p, &s), 0);
    return s;
}

/* Poll until the pool has `alive` workers up and `started` ever; the last
   stats read in *s.  No Check call, no allocation. */
static bool workers_poll(wp_pool *p, unsigned alive, uint64_t started, int64_t timeout_ms,
                         wp_pool_stats *s)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    memset(s, 0, sizeof *s);
    for (;;) {
        if (wp_pool_get_stats(p, s) != 0)
            return false;
        if (s->workers_alive >= alive && s->workers_started >= started)
            return true;
        if (tu_now_ms() >= deadline)
            return false;
        tu_poll_pause();
    }
}

bool tu_workers_up(wp_pool *p, unsigned alive, uint64_t started, int64_t timeout_ms)
{
    wp_pool_stats s;
    return workers_poll(p, alive, started, timeout_ms, &s);
}

void tu_wait_workers(wp_pool *p, unsigned alive, uint64_t started)
{
    wp_pool_stats s;
    bool up = workers_poll(p, alive, started, TU_DEADLINE_MS, &s);
    ck_assert_msg(up, "workers_alive %u (want %u), workers_started %llu (want %llu)",
                  s.workers_alive, alive, (unsigned long long)s.workers_started,
                  (unsigned long long)started);
}

wp_future *tu_submit(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                     const wp_task_options *opts)
{
    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, fn, arg, len, opts, &f), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

wp_future *tu_run(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                  const wp_task_options *opts)
{
    wp_future *f = tu_submit(p, fn, arg, len, opts);
    ck_assert_int_eq(wp_future_wait(f, -1), 0);
    return f;
}

void tu_wait_settled(wp_future *f)
{
    ck_assert_msg(wp_future_wait(f, TU_DEADLINE_MS) == 0, "a future did not settle in %d ms",
                  TU_DEADLINE_MS);
}

void tu_check_echo(wp_future *f, const void *want, size_t want_len)
{
    size_t len = 12345;
    tu_wait_settled(f);
    ck_assert_msg(wp_future_state(f) == WP_SUCCEEDED, "state %d, error %d (%s)",
                  wp_future_state(f), wp_future_error(f), wp_future_message(f));
    ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert_int_eq(wp_future_code(f), 0);
    ck_assert_str_eq(wp_future_message(f), "");
    const void *r = wp_future_result(f, &len);
    ck_assert_uint_eq(len, want_len);
    if (want_len > 0) {
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(memcmp(r, want, want_len), 0);
    }
}

void tu_check_outcome(const wp_future *f, int state, int error, int code, const char *message)
{
    ck_assert_int_eq(wp_future_state(f), state);
    ck_assert_msg(wp_future_error(f) == error, "error %s (%s), not %s",
                  wp_strerror(wp_future_error(f)), wp_future_message(f), wp_strerror(error));
    ck_assert_int_eq(wp_future_code(f), code);
    if (message != NULL)
        ck_assert_str_eq(wp_future_message(f), message);
    size_t len = 12345;
    ck_assert_ptr_null(wp_future_result(f, &len));
    ck_assert_uint_eq(len, 0);
}

wp_future *tu_run_crash(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                        const wp_task_options *opts, unsigned alive, uint64_t started)
{
    wp_future *f = tu_submit(p, fn, arg, len, opts);
    int w = wp_future_wait(f, TU_DEADLINE_MS);
    tu_wait_workers(p, alive, started);
    ck_assert_msg(w == 0, "a future did not settle in %d ms", TU_DEADLINE_MS);
    return f;
}

int tu_result_int(const wp_future *f)
{
    size_t len = 0;
    const void *r = wp_future_result(f, &len);
    ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert_uint_eq(len, sizeof(int));
    int v;
    memcpy(&v, r, sizeof v);
    return v;
}

int tu_worker_pid(wp_pool *p)
{
    wp_future *f = tu_run(p, tu_pid, NULL, 0, NULL);
    int pid = tu_result_int(f);
    wp_future_release(f);
    ck_assert_int_gt(pid, 0);
    return pid;
}

bool tu_has_number(const char *text, int n)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    size_t len = strlen(num);
    for (const char *p = strstr(text, num); p != NULL; p = strstr(p + 1, num))
        if ((p == text || p[-1] < '0' || p[-1] > '9') && (p[len] < '0' || p[len] > '9'))
            return true;
    return false;
}

int tu_stats_match(const wp_pool_stats *s, tu_stats_want w, char *why, size_t size)
{
    const struct {
        const char *name;
        tu_expect   want;
        uint64_t    is;
    } f[] = {
        { "submitted", w.submitted, s->submitted },
        { "succeeded", w.succeeded, s->succeeded },
        { "failed", w.failed, s->failed },
        { "cancelled", w.cancelled, s->cancelled },
        { "timed_out", w.timed_out, s->timed_out },
        { "crashed", w.crashed, s->crashed },
        { "retried", w.retried, s->retried },
        { "workers_started", w.workers_started, s->workers_started },
        { "queued", w.queued, s->queued },
        { "running", w.running, s->running },
        { "workers_alive", w.workers_alive, s->workers_alive },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].want.set && f[i].is != f[i].want.want) {
            snprintf(why, size, "stats: %s is %llu, want %llu", f[i].name,
                     (unsigned long long)f[i].is, (unsigned long long)f[i].want.want);
            return 0;
        }
    return 1;
}

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

uint64_t tu_seed(void)
{
    const char *env = getenv("WP_TEST_SEED");
    if (env != NULL && *env != '\0')
        return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

uint64_t tu_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t tu_rand_below(uint64_t *state, uint64_t n)
{
    return n == 0 ? 0 : tu_rand(state) % n;
}

unsigned tu_slowdown(void)
{
    return TU_ASAN ? TU_ASAN_SLOWDOWN : TU_TSAN ? TU_TSAN_SLOWDOWN : 1;
}

unsigned tu_scaled(unsigned n)
{
    uint64_t v = n / tu_slowdown();
    const char *env = getenv("WP_TEST_SCALE");
    if (env != NULL && *env != '\0')
        v = v * strtoull(env, NULL, 10) / 100;
    return v == 0 ? 1 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

int64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_us(uint64_t us)
{
    struct timespec ts = { .tv_sec = (time_t)(us / US_PER_S),
                           .tv_nsec = (long)(us % US_PER_S) * NS_PER_US };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void tu_sleep_ms(int64_t ms)
{
    tu_sleep_us(ms > 0 ? (uint64_t)ms * US_PER_MS : 0);
}

void tu_poll_pause(void)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------ temporary files */

static char tmp_base[32]; /* the test case's directory (the fixture's), or "" */
static char tmp_run[96];  /* the running test's, in it, or "" until made */

void tu_tmp_setup(void)
{
    snprintf(tmp_base, sizeof tmp_base, "/tmp/wp-test-XXXXXX");
    if (mkdtemp(tmp_base) == NULL)
        tmp_base[0] = '\0';
    tmp_run[0] = '\0';
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

void tu_tmp_teardown(void)
{
    if (tmp_base[0] != '\0')
        nftw(tmp_base, remove_one, TMP_NFTW_FDS, FTW_DEPTH | FTW_PHYS);
    tmp_base[0] = tmp_run[0] = '\0';
}

void tu_begin(int method)
{
    tu_method = method;
    tmp_run[0] = '\0';
}

void tu_tmp_path(char *buf, size_t n, const char *name)
{
    ck_assert_msg(tmp_base[0] != '\0', "no temporary directory (tu_tmp_setup)");
    if (tmp_run[0] == '\0') {
        snprintf(tmp_run, sizeof tmp_run, "%s/t-XXXXXX", tmp_base);
        ck_assert_ptr_nonnull(mkdtemp(tmp_run));
    }
    int w = snprintf(buf, n, "%s/%s", tmp_run, name);
    ck_assert(w > 0 && (size_t)w < n);
}

void tu_fifo_open(tu_fifo *f)
{
    if (tmp_base[0] != '\0')
        snprintf(f->dir, sizeof f->dir, "%s/f-XXXXXX", tmp_base);
    else
        snprintf(f->dir, sizeof f->dir, "/tmp/wp-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/fifo", f->dir);
    ck_assert_int_eq(mkfifo(f->path, 0600), 0);
    f->fd = open(f->path, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(f->fd, 0);
}

void tu_fifo_close(tu_fifo *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->path);
    rmdir(f->dir);
}

void tu_hold_open(tu_hold *h)
{
    tu_fifo_open(&h->report);
    tu_fifo_open(&h->gate);
}

void tu_hold_close(tu_hold *h)
{
    tu_fifo_close(&h->report);
    tu_fifo_close(&h->gate);
}

int tu_read_int(int fd, int64_t timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    char buf[sizeof(int)];
    size_t have = 0;
    while (have < sizeof buf) {
        int64_t left = deadline - tu_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    int v;
    memcpy(&v, buf, sizeof v);
    return v;
}

int tu_fifo_read_pid(tu_fifo *f, int64_t timeout_ms)
{
    return tu_read_int(f->fd, timeout_ms);
}

void tu_fifo_release(tu_fifo *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        ssize_t rc;
        do
            rc = write(f->fd, "x", 1);
        while (rc < 0 && errno == EINTR);
        ck_assert_int_eq(rc, 1);
    }
}

static TCase *new_tcase(Suite *s, const tu_suite *def, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, def->timeout_s);
    tcase_add_unchecked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
    if (def->setup != NULL)
        tcase_add_checked_fixture(tc, def->setup, NULL);
    suite_add_tcase(s, tc);
    return tc;
}

void tu_add_tests(Suite *s, const tu_suite *def, const tu_test *tests, size_t n)
{
    /* The groups made so far (TU_CASE): the TCase of an entry's group is
       that of the first entry of the group. */
    TCase **made = calloc(n, sizeof *made);
    if (made == NULL) {
        fputs("tu_add_tests: out of memory\n", stderr);
        exit(EXIT_FAILURE);
    }
    for (size_t i = 0; i < n; i++) {
        if (tests[i].tcase == NULL) {
            tcase_add_both(new_tcase(s, def, tests[i].name), tests[i].fn);
            continue;
        }
        size_t first = 0;
        while (tests[first].tcase == NULL || strcmp(tests[first].tcase, tests[i].tcase) != 0)
            first++;
        if (made[first] == NULL)
            made[first] = new_tcase(s, def, tests[i].tcase);
        tcase_add_test(made[first], tests[i].fn);
    }
    free(made);
}

int tu_main(tu_suite def, const tu_test *tests, size_t n)
{
    Suite *s = suite_create(def.name);
    tu_add_tests(s, &def, tests, n);
    return tu_run_suite(s, def.fork);
}

int tu_run_suite(Suite *s, enum fork_status fork_status)
{
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, fork_status);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ----------------------------------------------- many submitting threads */

typedef struct crowd_member {
    const tu_crowd *c;
    unsigned        thread;
    unsigned        failed, wrong; /* submits that failed, outcomes that were wrong */
    int             first_rc;      /* the first failed submit's code */
    pthread_t       tid;
} crowd_member;

static void *crowd_main(void *arg)
{
    crowd_member *m = arg;
    const tu_crowd *c = m->c;
    wp_future **fs = calloc(c->per_thread, sizeof *fs);
    if (fs == NULL) {
        m->failed = c->per_thread;
        m->first_rc = WP_ENOMEM;
        return NULL;
    }
    for (unsigned i = 0; i < c->per_thread; i++) {
        int rc = c->submit(c->ctx, m->thread, i, &fs[i]);
        if (rc != 0 && m->failed++ == 0)
            m->first_rc = rc;
        if (rc != 0)
            fs[i] = NULL;
    }
    /* No deadline of its own: Check's timeout of the test is the hang
       detector. */
    for (unsigned i = 0; i < c->per_thread; i++) {
        if (fs[i] == NULL)
            continue;
        if (wp_future_wait(fs[i], -1) != 0 || !c->ok(c->ctx, m->thread, i, fs[i]))
            m->wrong++;
        wp_future_release(fs[i]);
    }
    free(fs);
    return NULL;
}

void tu_run_crowd(const tu_crowd *c)
{
    crowd_member *m = calloc(c->threads, sizeof *m);
    ck_assert_ptr_nonnull(m);
    for (unsigned t = 0; t < c->threads; t++) {
        m[t] = (crowd_member){ .c = c, .thread = t };
        ck_assert_int_eq(pthread_create(&m[t].tid, NULL, crowd_main, &m[t]), 0);
    }
    for (unsigned t = 0; t < c->threads; t++)
        ck_assert_int_eq(pthread_join(m[t].tid, NULL), 0);
    crowd_member bad = { .c = c, .thread = c->threads };
    for (unsigned t = 0; t < c->threads && bad.thread == c->threads; t++)
        if (m[t].failed != 0 || m[t].wrong != 0)
            bad = m[t];
    free(m);
    ck_assert_msg(bad.thread == c->threads,
                  "thread %u: %u of %u submits failed (the first: %s), %u outcomes wrong",
                  bad.thread, bad.failed, c->per_thread, wp_strerror(bad.first_rc), bad.wrong);
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

wp_future *tu_submit_held(wp_pool *p, tu_hold *h, const wp_task_options *o, int *pid)
{
    tu_report_arg a = tu_report_arg_of(0, &h->report, &h->gate);
    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, tu_report, &a, sizeof a, o, &f), 0);
    int who = tu_fifo_read_pid(&h->report, TU_DEADLINE_MS);
    ck_assert_int_gt(who, 0);
    if (pid != NULL)
        *pid = who;
    return f;
}
