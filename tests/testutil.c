/* SPDX-License-Identifier: MIT */
/*
 * testutil.c — the misbehaving (and well-behaved) workers the suites use,
 * and the helpers that make, drive and check a pool: creating it and
 * waiting for its workers, submitting, checking outcomes and stats, and
 * crowds of submitting threads (testutil.h says what each is for).
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        { "expired", w.expired, s->expired },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].want.set && f[i].is != f[i].want.want) {
            snprintf(why, size, "stats: %s is %llu, want %llu", f[i].name,
                     (unsigned long long)f[i].is, (unsigned long long)f[i].want.want);
            return 0;
        }
    return 1;
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
