/*
 * testutil.c — the misbehaving (and well-behaved) workers the suites use.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

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
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
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
    char *p = malloc(n);
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

wp_pool *tu_pool(unsigned workers, int start_method)
{
    wp_pool *p = NULL;
    wp_pool_options o = { .workers = workers, .start_method = start_method };
    ck_assert_int_eq(wp_pool_create(&p, &o), 0);
    return p;
}

wp_future *tu_run(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                  const wp_task_options *opts)
{
    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, fn, arg, len, opts, &f), 0);
    ck_assert_int_eq(wp_future_wait(f, -1), 0);
    return f;
}

int tu_pid_alive(int pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}
