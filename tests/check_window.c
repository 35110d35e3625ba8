/* SPDX-License-Identifier: MIT */
/*
 * check_window.c — the window dispatcher against the corners of its claim
 * protocol: a worker that dies while a frame behind its task is half
 * written and something it forked still holds its pipes; a head taken
 * back before its stopped worker could claim it; a task that forges the
 * claim words its worker shares with the pool.
 *
 * Every test runs under both start methods (WP_TEST_BOTH).
 * Tests wait on futures, FIFOs, or poll observed state against a deadline.
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool_impl.h"
#include "testutil.h"

#define BIG_ARG      ((size_t)4 << 20) /* more than a worker's task pipe holds */
#define PATTERN_SEED 7u
#define FD_SCAN_MAX  1024
#define SHORT_MS     50    /* a deadline that passes during the test */
#define TASK_WAIT_MS 10000 /* how long a task waits for what it watches */
#define BEHIND_FORGERS 4   /* tasks queued behind two hostile ones: windows of 3 */

/* Descriptor of the worker's pipe open for `mode` (O_RDONLY: the task
   pipe, O_WRONLY: the result pipe), or -1.  A worker keeps only stdio and
   its two pipes. */
static int worker_pipe(int mode)
{
    for (int fd = 3; fd < FD_SCAN_MAX; fd++) {
        struct stat st;
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_ACCMODE) == mode && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
            return fd;
    }
    return -1;
}

/* A task echoing BIG_ARG bytes of pattern, behind whatever was submitted
   before it. */
static wp_future *submit_big_echo(wp_pool *p)
{
    char *big = malloc(BIG_ARG);
    ck_assert_ptr_nonnull(big);
    tu_pattern(big, BIG_ARG, PATTERN_SEED);
    wp_future *f = tu_submit(p, tu_echo, big, BIG_ARG, NULL);
    free(big);
    return f;
}

/* It ran elsewhere, intact. */
static void check_big_echo(wp_future *f)
{
    ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
    size_t len = 0;
    const void *r = wp_future_result(f, &len);
    ck_assert_msg(wp_future_error(f) == 0, "the task behind: %s (%s)",
                  wp_strerror(wp_future_error(f)), wp_future_message(f));
    ck_assert_uint_eq(len, BIG_ARG);
    ck_assert(tu_pattern_ok(r, len, PATTERN_SEED));
}

/* ------------------------------------------------ a stray holds the pipes */

typedef struct stray_arg {
    char report[128]; /* FIFO: the stray's pid */
} stray_arg;

/*
 * Wait until the frame behind this task is (partly) in the task pipe, fork
 * a process that leaves the worker's group and keeps the worker's pipes
 * open, then let the worker die.
 */
static int tu_die_with_stray(const void *arg, size_t len, wp_buf *out)
{
    stray_arg a;
    TU_TASK_ARG(a, arg, len, out);
    a.report[sizeof a.report - 1] = '\0';
    int in = worker_pipe(O_RDONLY);
    if (in < 0)
        return wp_buf_fail(out, 5, "no task pipe");
    int64_t until = tu_now_ms() + TASK_WAIT_MS;
    int pending = 0;
    while ((ioctl(in, FIONREAD, &pending) < 0 || pending == 0) && tu_now_ms() < until)
        tu_poll_pause();
    if (pending == 0)
        return wp_buf_fail(out, 5, "nothing came behind the task");
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return wp_buf_fail(out, 5, "no pipe");
    pid_t c = fork();
    if (c == 0) {
        close(ready[0]);
        int pid = (int)getpid();
        int fd = setsid() < 0 ? -1 : open(a.report, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid || write(ready[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char byte;
    if (c < 0 || read(ready[0], &byte, 1) != 1)
        return wp_buf_fail(out, 5, "the stray did not start");
    _exit(3);
}

static void kill_stray(int pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    (void)tu_wait_exited(pid, TU_DEADLINE_MS);
}

/* The worker dies while the frame behind its task is half written, and a
   process its task forked keeps the pipes open: the pool learns of the
   death from the reap alone.  The task behind runs elsewhere, intact. */
WP_TEST_BOTH(reaped_with_half_written_frame)
{
    tu_fifo report;
    tu_fifo_open(&report);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    stray_arg a;
    memset(&a, 0, sizeof a);
    snprintf(a.report, sizeof a.report, "%s", report.path);
    wp_future *dying = tu_submit(p, tu_die_with_stray, &a, sizeof a, NULL);
    wp_future *behind = submit_big_echo(p);
    int stray = tu_fifo_read_pid(&report, TU_DEADLINE_MS);
    ck_assert_int_eq(wp_future_wait(dying, TU_DEADLINE_MS), 0);
    ck_assert_msg(wp_future_error(dying) == WP_ECRASHED, "the dying task: %s (%s)",
                  wp_strerror(wp_future_error(dying)), wp_future_message(dying));
    check_big_echo(behind);
    wp_future_release(dying);
    wp_future_release(behind);
    wp_pool_destroy(p);
    kill_stray(stray);
    tu_fifo_close(&report);
}

/* -------------------------------------------- a head taken back unclaimed */

/* A head with a deadline, cancelled before its (stopped) worker claimed
   it, stays in the window as a skipped entry: its deadline goes with it,
   the dispatcher sleeps. */
WP_TEST_BOTH(skipped_head_keeps_no_deadline)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    ck_assert_msg(tu_wait_state(pid, 'T', TU_DEADLINE_MS), "worker %d did not stop", pid);
    wp_task_options o = { .timeout_ms = SHORT_MS };
    wp_future *f = tu_submit(p, tu_echo, "x", 1, &o);
    TU_POLL_UNTIL(wp_future_state(f) == WP_RUNNING); /* the head of the stopped worker */
    ck_assert_int_eq(wp_future_cancel(f), 0);
    ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(f), WP_ECANCELED);
    wp_future_release(f);
    tu_assert_not_spinning("a skipped head whose deadline passed");
    ck_assert_int_eq(kill(pid, SIGCONT), 0);
    f = tu_run(p, tu_echo, "y", 1, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* -------------------------------------------------- forged claim words */

typedef struct forge_arg {
    worker_shared *shared; /* slot 0's claim words (mapped in every worker) */
} forge_arg;

/* A hostile task: marks the task behind it started, then hangs. */
static int tu_forge_started(const void *arg, size_t len, wp_buf *out)
{
    forge_arg a;
    TU_TASK_ARG(a, arg, len, out);
    int64_t until = tu_now_ms() + TASK_WAIT_MS;
    for (bool forged = false; !forged && tu_now_ms() < until;) {
        for (unsigned i = 0; i < WINDOW_MAX && !forged; i++) {
            uint64_t w = atomic_load(&a.shared->claim[i]);
            if (CLAIM_STATE(w) == CLAIM_OFFERED)
                forged = wp__claim(&a.shared->claim[i], CLAIM_ID(w), CLAIM_STARTED);
        }
        tu_poll_pause();
    }
    for (;;)
        pause();
}

/* A task past its deadline is stopped even if it marked the task behind
   it as started: the pool cannot take that one back, and finds no answer
   before it. */
WP_TEST_BOTH(forged_start_behind_a_deadline)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    forge_arg a = { .shared = &p->shared[0] };
    wp_task_options o = { .timeout_ms = SHORT_MS };
    wp_future *hostile = NULL, *behind = NULL;
    ck_assert_int_eq(wp_submit(p, tu_forge_started, &a, sizeof a, &o, &hostile), 0);
    ck_assert_int_eq(wp_submit(p, tu_echo, "z", 1, NULL, &behind), 0);
    ck_assert_msg(wp_future_wait(hostile, TU_PROMPT_MS) == 0,
                  "a task past its deadline was not stopped");
    ck_assert_int_eq(wp_future_error(hostile), WP_ETIMEDOUT);
    ck_assert_int_eq(wp_future_wait(behind, TU_DEADLINE_MS), 0);
    wp_future_release(hostile);
    wp_future_release(behind);
    wp_pool_destroy(p);
}

/* The id of a claim word of slot `w` in state `state` (not `except`),
   waiting for one up to TASK_WAIT_MS; 0 if none came. */
static uint64_t claim_in_state(worker_shared *w, int state, uint64_t except)
{
    int64_t until = tu_now_ms() + TASK_WAIT_MS;
    do {
        for (unsigned i = 0; i < WINDOW_MAX; i++) {
            uint64_t word = atomic_load(&w->claim[i]);
            if (CLAIM_STATE(word) == (uint64_t)state && CLAIM_ID(word) != except)
                return CLAIM_ID(word);
        }
        tu_poll_pause();
    } while (tu_now_ms() < until);
    return 0;
}

typedef struct forger_arg {
    worker_shared *shared;      /* slot 0's claim words */
    int            behind;      /* the state the task behind must be in first */
    bool           half_frame;  /* and its frame must be partly in the pipe */
    bool           expired;     /* answer for that task "expired before it started" */
} forger_arg;

/* A hostile task: once the task behind it is in the given state, it writes
   answers for itself and for that task to the pool, then hangs. */
static int tu_forge_answers(const void *arg, size_t len, wp_buf *out)
{
    forger_arg a;
    TU_TASK_ARG(a, arg, len, out);
    uint64_t self = claim_in_state(a.shared, CLAIM_STARTED, 0);
    uint64_t next = claim_in_state(a.shared, a.behind, self);
    int in = worker_pipe(O_RDONLY), res = worker_pipe(O_WRONLY);
    if (self == 0 || next == 0 || in < 0 || res < 0)
        return wp_buf_fail(out, 5, "nothing to forge");
    int64_t until = tu_now_ms() + TASK_WAIT_MS;
    int pending = 0;
    while (a.half_frame && (ioctl(in, FIONREAD, &pending) < 0 || pending == 0) && tu_now_ms() < until)
        tu_poll_pause();
    frame_header h[2];
    wp__frame_header(&h[0], FRAME_RESULT, self, 0);
    wp__frame_header(&h[1], a.expired ? FRAME_FAILURE : FRAME_RESULT, next, 0);
    h[1].error = a.expired ? WP_EEXPIRED : 0;
    if (write(res, h, sizeof h) != (ssize_t)sizeof h)
        return wp_buf_fail(out, 5, "cannot forge");
    for (;;)
        pause();
}

/* A task answers for the task behind it, whose frame its worker has not
   all received: the pool kills the worker (it cannot tell where the rest
   of the frame would go), and the task behind runs elsewhere, intact. */
WP_TEST_BOTH(forged_answer_for_half_written_frame)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    forger_arg a = { .shared = &p->shared[0], .behind = CLAIM_OFFERED, .half_frame = true };
    wp_future *hostile = tu_submit(p, tu_forge_answers, &a, sizeof a, NULL);
    wp_future *behind = submit_big_echo(p);
    check_big_echo(behind);
    ck_assert_int_eq(wp_future_wait(hostile, TU_DEADLINE_MS), 0);
    wp_future_release(hostile);
    wp_future_release(behind);
    wp_pool_destroy(p);
}

/* A task answers for a task behind it that the pool took back (its worker
   was to answer "skipped"): a broken protocol, the worker is killed, and
   the next task runs on a new one. */
WP_TEST_BOTH(forged_result_for_skipped_task)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    forger_arg a = { .shared = &p->shared[0], .behind = CLAIM_SKIPPED, .half_frame = false };
    wp_future *hostile = NULL, *behind = NULL;
    ck_assert_int_eq(wp_submit(p, tu_forge_answers, &a, sizeof a, NULL, &hostile), 0);
    ck_assert_int_eq(wp_submit(p, tu_echo, "w", 1, NULL, &behind), 0);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    while (tu_pool_stats(p).queued > 0 && tu_now_ms() < deadline)
        tu_poll_pause();
    ck_assert_int_eq(wp_future_cancel(behind), 0); /* taken back: it is behind a running task */
    ck_assert_int_eq(wp_future_wait(behind, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(behind), WP_ECANCELED);
    ck_assert_int_eq(wp_future_wait(hostile, TU_DEADLINE_MS), 0);
    wp_future *next = NULL;
    ck_assert_int_eq(wp_submit(p, tu_echo, "v", 1, NULL, &next), 0);
    ck_assert_msg(wp_future_wait(next, TU_PROMPT_MS) == 0,
                  "the next task went to the worker that broke the protocol");
    ck_assert_int_eq(wp_future_error(next), 0);
    wp_future_release(next);
    wp_future_release(hostile);
    wp_future_release(behind);
    wp_pool_destroy(p);
}

/* A hostile task: keeps its own start time, in the words its worker
   shares with the pool, far in the future; hangs. */
static int tu_forge_start_time(const void *arg, size_t len, wp_buf *out)
{
    forge_arg a;
    TU_TASK_ARG(a, arg, len, out);
    for (;;) {
        for (unsigned i = 0; i < WINDOW_MAX; i++)
            if (CLAIM_STATE(atomic_load(&a.shared->claim[i])) == CLAIM_STARTED)
                atomic_store(&a.shared->started_us[i], INT64_MAX - 1);
        tu_poll_pause();
    }
}

/* A task that moves its start time cannot escape its deadline (nor make
   the pool's arithmetic on it overflow: head-of-line checks with two
   workers and tasks behind it). */
WP_TEST_BOTH(forged_start_time_keeps_deadline)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    forge_arg a[2] = { { .shared = &p->shared[0] }, { .shared = &p->shared[1] } };
    wp_task_options o = { .timeout_ms = SHORT_MS };
    wp_future *hostile[2] = { NULL, NULL };
    wp_future *behind[BEHIND_FORGERS];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(wp_submit(p, tu_forge_start_time, &a[i], sizeof a[i], &o, &hostile[i]), 0);
    for (int i = 0; i < BEHIND_FORGERS; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, "u", 1, NULL, &behind[i]), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(wp_future_wait(hostile[i], TU_PROMPT_MS) == 0,
                      "a task that moved its start time ran past its deadline");
        ck_assert_int_eq(wp_future_error(hostile[i]), WP_ETIMEDOUT);
        wp_future_release(hostile[i]);
    }
    for (int i = 0; i < BEHIND_FORGERS; i++) {
        ck_assert_int_eq(wp_future_wait(behind[i], TU_DEADLINE_MS), 0);
        wp_future_release(behind[i]);
    }
    wp_pool_destroy(p);
}

/* A task answers "expired" for the task behind it, which its worker has
   not refused (its claim word is not CLAIM_EXPIRED): a broken protocol,
   not an expiry; the task behind runs on the replacement. */
WP_TEST_BOTH(forged_expired_answer)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    forger_arg a = { .shared = &p->shared[0], .behind = CLAIM_OFFERED, .expired = true };
    wp_future *hostile = tu_submit(p, tu_forge_answers, &a, sizeof a, NULL);
    wp_future *behind = tu_submit(p, tu_echo, "u", 1, NULL);
    tu_check_echo(behind, "u", 1);
    ck_assert_int_eq(wp_future_wait(hostile, TU_DEADLINE_MS), 0);
    tu_assert_stats(tu_pool_stats(p), .expired = TU_EQ(0), .workers_started = TU_EQ(2));
    wp_future_release(hostile);
    wp_future_release(behind);
    wp_pool_destroy(p);
}

/* A done-callback that holds the dispatcher thread until the test writes
   to its pipe (no library call may be made meanwhile). */
typedef struct dispatcher_stop {
    int entered[2], go[2];
} dispatcher_stop;

static void hold_dispatcher(wp_future *f, void *ctx)
{
    (void)f;
    dispatcher_stop *d = ctx;
    char c = 1;
    if (write(d->entered[1], &c, 1) == 1)
        (void)tu_read_int(d->go[0], TU_DEADLINE_MS);
}

/* The worker reaches a task past its queue deadline before the pool's
   timer could take it back (the dispatcher is held in a done-callback):
   it refuses it (CLAIM_EXPIRED), and the task fails WP_EEXPIRED, never
   run. */
WP_TEST_BOTH(worker_refuses_past_queue_deadline)
{
    enum { QUEUE_MS = 1000 }; /* the dispatcher is held well before this */
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h;
    tu_hold_open(&h);
    wp_future *busy = tu_submit_held(p, &h, NULL, NULL);
    int64_t t0 = tu_now_ms();
    wp_task_options o = { .queue_timeout_ms = QUEUE_MS };
    wp_future *late = tu_submit(p, tu_echo, "t", 1, &o);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    while (tu_pool_stats(p).queued > 0 && tu_now_ms() < deadline)
        tu_poll_pause(); /* in the window, behind busy */
    dispatcher_stop d;
    ck_assert_int_eq(pipe(d.entered), 0);
    ck_assert_int_eq(pipe(d.go), 0);
    wp_future *g = tu_submit(p, tu_echo, "g", 1, NULL); /* waits: no room */
    ck_assert_int_eq(wp_future_on_done(g, hold_dispatcher, &d), 0);
    ck_assert_int_eq(wp_future_cancel(g), 0);
    char c;
    ck_assert_int_eq(read(d.entered[0], &c, 1), 1); /* the dispatcher is held */
    ck_assert_msg(tu_now_ms() - t0 < QUEUE_MS, "too slow to hold the dispatcher in time");
    while (tu_now_ms() <= t0 + QUEUE_MS)
        tu_poll_pause(); /* the deadline itself: what the worker checks */
    tu_fifo_release(&h.gate, 1);
    uint64_t refused = claim_in_state(&p->shared[0], CLAIM_EXPIRED, 0);
    int one = 1;
    ck_assert_int_eq(write(d.go[1], &one, sizeof one), (ssize_t)sizeof one);
    ck_assert_uint_ne(refused, 0);
    tu_wait_settled(late); /* by the worker's answer or the pool's timer: both say so */
    tu_check_outcome(late, WP_FAILED, WP_EEXPIRED, 0, NULL);
    tu_wait_settled(busy);
    tu_assert_stats(tu_pool_stats(p), .expired = TU_EQ(1), .workers_started = TU_EQ(1));
    for (int i = 0; i < 2; i++) {
        close(d.entered[i]);
        close(d.go[i]);
    }
    wp_future_release(g);
    wp_future_release(late);
    wp_future_release(busy);
    tu_hold_close(&h);
    wp_pool_destroy(p);
}

int main(void)
{
    const tu_suite suite = { .name = "window", .timeout_s = 60, .fork_only = true };
    const tu_test tests[] = {
        TU_TEST(reaped_with_half_written_frame),
        TU_TEST(skipped_head_keeps_no_deadline),
        TU_TEST(forged_start_behind_a_deadline),
        TU_TEST(forged_answer_for_half_written_frame),
        TU_TEST(forged_result_for_skipped_task),
        TU_TEST(forged_start_time_keeps_deadline),
        TU_TEST(forged_expired_answer),
        TU_TEST(worker_refuses_past_queue_deadline),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
