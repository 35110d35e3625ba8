/* SPDX-License-Identifier: MIT */
/*
 * testutil_files.c — the files a test makes and the FIFOs it holds tasks
 * on: the per-TCase temporary directory (the fixture tu_add_tests installs)
 * and each run's own in it, FIFOs a tu_report task reports to and waits at,
 * and submitting a task held there (testutil.h, "temporary files and
 * FIFOs"); memory and data shared with workers of every start method, a
 * file in that directory named in the environment (testutil.h, before
 * tu_shared_create).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define TMP_NFTW_FDS 8 /* descriptors nftw may hold open while it removes a tree */

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

void tu_tmp_begin_run(void)
{
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

/* ------------------------------------- shared with workers, every method */

enum { ENV_VALUE_MAX = 512 };

void tu_env_setf(const char *name, const char *fmt, ...)
{
    char value[ENV_VALUE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    ck_assert(w >= 0 && (size_t)w < sizeof value);
    ck_assert_int_eq(setenv(name, value, 1), 0);
}

/* The mapping TU_SHARED_ENV names ("<bytes> <path>"): its size in *bytes,
   its path in path[size]; false if there is none. */
static bool shared_named(size_t *bytes, char *path, size_t size)
{
    const char *v = getenv(TU_SHARED_ENV);
    char *end;
    if (v == NULL)
        return false;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || *end != ' ' || n == 0)
        return false;
    int w = snprintf(path, size, "%s", end + 1);
    *bytes = (size_t)n;
    return w > 0 && (size_t)w < size;
}

void *tu_shared_create(size_t bytes)
{
    char path[TU_TMP_PATH_MAX];
    tu_tmp_path(path, sizeof path, "shared");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)bytes), 0);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ck_assert_ptr_ne(mem, MAP_FAILED);
    tu_env_setf(TU_SHARED_ENV, "%zu %s", bytes, path);
    return mem;
}

void *tu_shared_attach(void)
{
    char path[TU_TMP_PATH_MAX];
    size_t bytes;
    struct stat st;
    if (!shared_named(&bytes, path, sizeof path))
        return NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    void *mem = MAP_FAILED;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size == bytes)
        mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return mem == MAP_FAILED ? NULL : mem;
}

int tu_no_shared(wp_buf *out)
{
    return wp_buf_fail(out, TU_ENOSHARED, "no memory shared with the test");
}

void tu_shared_destroy(void *mem, size_t bytes)
{
    char path[TU_TMP_PATH_MAX];
    size_t named;
    if (shared_named(&named, path, sizeof path))
        unlink(path);
    unsetenv(TU_SHARED_ENV);
    ck_assert_int_eq(munmap(mem, bytes), 0);
}
