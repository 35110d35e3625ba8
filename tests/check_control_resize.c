/* SPDX-License-Identifier: MIT */
/*
 * check_control_resize.c — wp_pool_resize (issue #11; the header's
 * comment; docs/ARCHITECTURE.md, "Resizing"; check_control.c says how the
 * suite's tests work): growing starts workers at once and tasks spread to
 * them; shrinking retires workers between tasks — none fails, runs twice
 * or waits forever, a retiring worker takes no new task and gives back
 * the ones not started, and its running task keeps its deadline, cancel
 * and shutdown; a worker still starting is let become ready first;
 * growing again keeps a retiring worker.
 *
 * Runs are counted in memory shared with every worker (tu_shared_create,
 * before the pool: a forked worker inherits the mapping, an exec'd one
 * maps the same file), one counter per task: "ran exactly once" is read there, not inferred.  This file
 * also defines what check_control_resize.h declares; the stress test is
 * check_control_resize_stress.c, the edges check_control_resize_edges.c.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "check_control_resize.h"
#include "pool_impl.h" /* WINDOW_BYTES */

/* ------------------------------------------------------------- helpers */

rz_shared *rz;

void runs_map(void)
{
    rz = tu_shared_create(sizeof *rz);
}

void runs_unmap(void)
{
    tu_shared_destroy(rz, sizeof *rz);
    rz = NULL;
}

/* In a task: count a run of task i (and, the first time, when); false if
   this worker cannot see rz (an exec'd worker maps it on first use). */
static bool count_run(int i)
{
    if (rz == NULL)
        rz = tu_shared_attach();
    if (rz == NULL)
        return false;
    if (atomic_fetch_add(&rz->runs[i], 1) == 0)
        atomic_store(&rz->order[i], atomic_fetch_add(&rz->seq, 1));
    return true;
}

int rz_task(const void *arg, size_t len, wp_buf *out)
{
    rz_arg a;
    TU_TASK_ARG(a, arg, len, out);
    if (!count_run(a.index))
        return tu_no_shared(out);
    if (a.spin_us > 0)
        spin_us((unsigned)a.spin_us);
    rz_result r = { .index = a.index, .pid = (int)getpid() };
    return wp_buf_append(out, &r, sizeof r);
}

wp_future *submit_rz(wp_pool *p, int index, int spin)
{
    rz_arg a = { .index = index, .spin_us = spin };
    return tu_submit(p, rz_task, &a, sizeof a, NULL);
}

int check_ran_once(wp_future *f, int index)
{
    size_t len = 0;
    const rz_result *r = wp_future_result(f, &len);
    ck_assert_msg(wp_future_state(f) == WP_SUCCEEDED, "task %d ended %d, error %d: %s", index,
                  wp_future_state(f), wp_future_error(f), wp_future_message(f));
    ck_assert_uint_eq(len, sizeof *r);
    ck_assert_int_eq(r->index, index);
    ck_assert_msg(atomic_load(&rz->runs[index]) == 1, "task %d ran %d times", index,
                  atomic_load(&rz->runs[index]));
    return r->pid;
}

int submit_counted(wp_pool *p, const rz_arg *a, wp_future **f, atomic_int *calls)
{
    int rc = wp_submit(p, rz_task, a, sizeof *a, NULL, f);
    return rc == 0 ? wp_future_on_done(*f, count_done, calls) : rc;
}

unsigned alive_now(wp_pool *p)
{
    return tu_pool_stats(p).workers_alive;
}

/* rz_held: counts its run, then is a tu_report task (reports its pid, waits
   at its gate).  Its argument may be longer than rz_held_arg: the rest is
   padding, to make a big task. */
typedef struct rz_held_arg {
    int           index;
    tu_report_arg rep;
} rz_held_arg;

static int rz_held(const void *arg, size_t len, wp_buf *out)
{
    rz_held_arg a;
    if (len < sizeof a)
        return wp_buf_fail(out, TU_EBADARG, "bad argument");
    memcpy(&a, arg, sizeof a);
    if (!count_run(a.index))
        return tu_no_shared(out);
    return tu_report(&a.rep, sizeof a.rep, out);
}

/* Submit task `index`, an rz_held at h, of `size` bytes (at least an
   rz_held_arg). */
static wp_future *submit_held_sized(wp_pool *p, tu_hold *h, int index, size_t size,
                                    const wp_task_options *o)
{
    rz_held_arg a = { .index = index, .rep = tu_report_arg_of(0, &h->report, &h->gate) };
    char *buf = calloc(1, size);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, &a, sizeof a);
    wp_future *f = tu_submit(p, rz_held, buf, size, o);
    free(buf);
    return f;
}

static wp_future *submit_held_at(wp_pool *p, tu_hold *h, int index, const wp_task_options *o)
{
    return submit_held_sized(p, h, index, sizeof(rz_held_arg), o);
}

static bool has_pid(const int *pids, int n, int pid)
{
    for (int i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

/* The end of a test whose pool has n workers alive, every one it ever
   started, and no task failed. */
static void end_with_workers(wp_pool *p, unsigned n)
{
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(n), .workers_started = TU_EQ(n),
                    .failed = TU_EQ(0));
    wp_pool_destroy(p);
    runs_unmap();
}

static int shutdown_no_wait_for_grace(void *pool)
{
    return wp_pool_shutdown(pool, -1);
}

/* ------------------------------------------------------------- growing */

enum { GROW_TO = 8 };

/* Tasks waiting behind the one worker spread over the new ones at once:
   all GROW_TO run at the same time, each in a worker of its own. */
WP_TEST_BOTH(resize_grow_spreads)
{
    runs_map();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h[GROW_TO];
    wp_future *f[GROW_TO];
    for (int i = 0; i < GROW_TO; i++) {
        tu_hold_open(&h[i]);
        f[i] = submit_held_at(p, &h[i], i, NULL);
    }
    ck_assert_int_eq(wp_pool_resize(p, GROW_TO), 0);
    tu_wait_workers(p, GROW_TO, GROW_TO); /* no allocation while workers fork */
    int pids[GROW_TO];
    for (int i = 0; i < GROW_TO; i++) {
        pids[i] = tu_fifo_read_pid(&h[i].report, TU_DEADLINE_MS);
        ck_assert_msg(pids[i] > 0, "task %d never ran", i);
        ck_assert_msg(!has_pid(pids, i, pids[i]), "tasks share worker %d", pids[i]);
    }
    for (int i = 0; i < GROW_TO; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (int i = 0; i < GROW_TO; i++) {
        tu_wait_settled(f[i]);
        ck_assert_int_eq(wp_future_error(f[i]), 0);
        ck_assert_int_eq(atomic_load(&rz->runs[i]), 1);
        wp_future_release(f[i]);
        tu_hold_close(&h[i]);
    }
    end_with_workers(p, GROW_TO);
}

/* ----------------------------------------------------------- shrinking */

enum { SHRINK_FROM = 8, SHRINK_SHORT = 24, SHRINK_EARLY = 4 };

/*
 * Shrinking while every worker runs a long task.  The worker that stays
 * is the pool's first (slots at or past the new size retire:
 * docs/ARCHITECTURE.md, "Resizing"), the one it had at size 1, and its
 * long task is big enough to have its window to itself (WINDOW_BYTES), so
 * every short task waits in the line or behind a retiring worker's long
 * one.  The resize takes back all of those (the stats count all the short
 * tasks queued: that also says the resize has been applied).  Then
 * retiring workers whose long task ends (SHRINK_EARLY of them) run nothing
 * more and go; the first worker, once free, runs every short task, in the
 * order they were submitted, while the other retiring workers still hold
 * theirs; then those finish where they run, and go.
 */
WP_TEST_BOTH(resize_shrink_while_running)
{
    runs_map();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h[SHRINK_FROM];
    wp_future *held[SHRINK_FROM], *fs[SHRINK_SHORT];
    int pids[SHRINK_FROM];
    for (int i = 0; i < SHRINK_FROM; i++) {
        tu_hold_open(&h[i]);
        held[i] = i == 0 ? submit_held_sized(p, &h[0], 0, WINDOW_BYTES, NULL)
                         : submit_held_at(p, &h[i], i, NULL);
        pids[i] = tu_fifo_read_pid(&h[i].report, TU_DEADLINE_MS);
        ck_assert_int_gt(pids[i], 0);
        if (i == 0) {
            ck_assert_int_eq(wp_pool_resize(p, SHRINK_FROM), 0);
            tu_wait_workers(p, SHRINK_FROM, SHRINK_FROM); /* no allocation while they fork */
        }
    }
    for (int i = 0; i < SHRINK_SHORT; i++)
        fs[i] = submit_rz(p, SHRINK_FROM + i, 0);
    ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    TU_POLL_UNTIL(tu_pool_stats(p).queued == SHRINK_SHORT);
    for (int i = 1; i <= SHRINK_EARLY; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (int i = 1; i <= SHRINK_EARLY; i++) {
        tu_wait_settled(held[i]);
        wait_pid_exited(pids[i]);
    }
    tu_fifo_release(&h[0].gate, 1);
    ck_assert_msg(quiet_wait_all(fs, SHRINK_SHORT, TU_DEADLINE_MS),
                  "short tasks wait behind retiring workers");
    for (int i = 0; i < SHRINK_SHORT; i++) {
        ck_assert_int_eq(check_ran_once(fs[i], SHRINK_FROM + i), pids[0]);
        if (i > 0)
            ck_assert_msg(atomic_load(&rz->order[SHRINK_FROM + i]) >
                          atomic_load(&rz->order[SHRINK_FROM + i - 1]),
                          "short task %d ran before short task %d", i, i - 1);
    }
    for (int i = SHRINK_EARLY + 1; i < SHRINK_FROM; i++) {
        ck_assert_int_eq(wp_future_state(held[i]), WP_RUNNING);
        tu_fifo_release(&h[i].gate, 1);
    }
    for (int i = 0; i < SHRINK_FROM; i++) {
        tu_wait_settled(held[i]);
        ck_assert_int_eq(tu_result_int(held[i]), pids[i]); /* it finished where it ran */
        ck_assert_int_eq(atomic_load(&rz->runs[i]), 1);
    }
    TU_POLL_UNTIL(alive_now(p) == 1);
    for (int i = 1; i < SHRINK_FROM; i++)
        wait_pid_exited(pids[i]);
    ck_assert_int_eq(tu_worker_pid(p), pids[0]);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(1), .failed = TU_EQ(0),
                    .workers_started = TU_EQ(SHRINK_FROM) /* none replaced */);
    for (int i = 0; i < SHRINK_FROM; i++) {
        wp_future_release(held[i]);
        tu_hold_close(&h[i]);
    }
    for (int i = 0; i < SHRINK_SHORT; i++)
        wp_future_release(fs[i]);
    wp_pool_destroy(p);
    runs_unmap();
}

enum { PIPE_TASKS = 3000 };

/* Shrinking in the middle of a stream of short tasks, written many at a
   time into every worker's window: each runs exactly once, none fails. */
WP_TEST_BOTH(resize_shrink_pipelined)
{
    runs_map();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = SHRINK_FROM });
    wp_future **fs = calloc(PIPE_TASKS, sizeof *fs);
    ck_assert_ptr_nonnull(fs);
    for (int i = 0; i < PIPE_TASKS; i++) {
        fs[i] = submit_rz(p, i, 0);
        if (i == PIPE_TASKS / 3)
            ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    }
    ck_assert_int_eq(wp_wait_all(fs, PIPE_TASKS, TU_DEADLINE_MS * 3), 0);
    for (int i = 0; i < PIPE_TASKS; i++) {
        check_ran_once(fs[i], i);
        wp_future_release(fs[i]);
    }
    free(fs);
    TU_POLL_UNTIL(alive_now(p) == 1);
    tu_assert_stats(tu_pool_stats(p), .succeeded = TU_EQ(PIPE_TASKS), .failed = TU_EQ(0),
                    .workers_started = TU_EQ(SHRINK_FROM));
    wp_pool_destroy(p);
    runs_unmap();
}

enum { REGROW = 4 };

/* Growing again before the retiring workers stopped keeps them: nothing
   is stopped or started, and they take tasks again. */
WP_TEST_BOTH(resize_regrow_keeps_retiring)
{
    runs_map();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = REGROW });
    tu_hold h[REGROW];
    wp_future *held[REGROW];
    int pids[REGROW];
    for (int i = 0; i < REGROW; i++) {
        tu_hold_open(&h[i]);
        held[i] = submit_held_at(p, &h[i], i, NULL);
        pids[i] = tu_fifo_read_pid(&h[i].report, TU_DEADLINE_MS);
        ck_assert_int_gt(pids[i], 0);
    }
    ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    ck_assert_int_eq(wp_pool_resize(p, REGROW), 0);
    for (int i = 0; i < REGROW; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (int i = 0; i < REGROW; i++) {
        tu_wait_settled(held[i]);
        ck_assert_int_eq(tu_result_int(held[i]), pids[i]);
    }
    /* Every worker of the four is still there, and runs tasks again. */
    wp_future *again[REGROW];
    for (int i = 0; i < REGROW; i++) {
        tu_hold_open(&h[i]);
        again[i] = submit_held_at(p, &h[i], REGROW + i, NULL);
    }
    int now[REGROW];
    for (int i = 0; i < REGROW; i++) {
        now[i] = tu_fifo_read_pid(&h[i].report, TU_DEADLINE_MS);
        ck_assert_msg(has_pid(pids, REGROW, now[i]) && !has_pid(now, i, now[i]),
                      "task %d ran in worker %d", i, now[i]);
    }
    for (int i = 0; i < REGROW; i++)
        tu_fifo_release(&h[i].gate, 1);
    for (int i = 0; i < REGROW; i++) {
        tu_wait_settled(again[i]);
        ck_assert_int_eq(wp_future_error(again[i]), 0);
        wp_future_release(held[i]);
        wp_future_release(again[i]);
        tu_hold_close(&h[i]);
    }
    end_with_workers(p, REGROW);
}

/* What runs on a retiring worker keeps its deadline and its cancel, and a
   shutdown waits for it.  Task 0 holds the first worker (the one that
   stays); tasks 1 to 3 run on the workers that retire. */
WP_TEST_BOTH(resize_retiring_keeps_control)
{
    runs_map();
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    tu_hold h[REGROW];
    wp_future *f[REGROW];
    const wp_task_options deadline = { .timeout_ms = 300 };
    for (int i = 0; i < REGROW; i++) {
        tu_hold_open(&h[i]);
        f[i] = submit_held_at(p, &h[i], i, i == 1 ? &deadline : NULL);
        ck_assert_int_gt(tu_fifo_read_pid(&h[i].report, TU_DEADLINE_MS), 0);
        if (i == 0) {
            ck_assert_int_eq(wp_pool_resize(p, REGROW), 0);
            tu_wait_workers(p, REGROW, REGROW); /* no allocation while they fork */
        }
    }
    ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    cancel_promptly(f[2]);
    check_cancelled(f[2]);
    tu_wait_settled(f[1]);
    ck_assert_int_eq(wp_future_error(f[1]), WP_ETIMEDOUT);
    tu_blocker b;
    tu_blocker_start(&b, shutdown_no_wait_for_grace, p);
    tu_fifo_release(&h[0].gate, 1);
    tu_fifo_release(&h[3].gate, 1);
    ck_assert_int_eq(tu_blocker_join(&b), 0);
    for (int i = 0; i < REGROW; i++) {
        ck_assert_int_eq(atomic_load(&rz->runs[i]), 1);
        if (i == 0 || i == 3)
            ck_assert_int_eq(wp_future_error(f[i]), 0);
        wp_future_release(f[i]);
        tu_hold_close(&h[i]);
    }
    tu_assert_stats(tu_pool_stats(p), .succeeded = TU_EQ(2), .failed = TU_EQ(1),
                    .timed_out = TU_EQ(1), .cancelled = TU_EQ(1), .workers_alive = TU_EQ(0),
                    .workers_started = TU_EQ(REGROW) /* none replaced */);
    wp_pool_destroy(p);
    runs_unmap();
}

/* gated_pool's worker_init: the worker reports its pid, then waits at a
   gate.  Its ctx names the environment variable that holds the two FIFOs'
   paths, "<report> <gate>" (tu_env_setf: under every start method). */
static char gate_var[] = "WP_TEST_START_GATE";

static int init_at_gate(void *ctx)
{
    const char *v = getenv(ctx);
    char paths[2 * TU_TMP_PATH_MAX];
    char *gate = NULL;
    if (v != NULL && snprintf(paths, sizeof paths, "%s", v) < (int)sizeof paths)
        gate = strchr(paths, ' ');
    if (gate == NULL)
        return 1;
    *gate++ = '\0';
    int pid = (int)getpid(), rfd = open(paths, O_WRONLY | O_CLOEXEC);
    int gfd = open(gate, O_RDONLY | O_CLOEXEC);
    char byte;
    bool ok = rfd >= 0 && gfd >= 0 && write(rfd, &pid, sizeof pid) == (ssize_t)sizeof pid &&
              read(gfd, &byte, 1) == 1;
    if (rfd >= 0)
        close(rfd);
    if (gfd >= 0)
        close(gfd);
    return ok ? 0 : 1;
}

wp_pool *gated_pool(unsigned workers, tu_hold *g)
{
    tu_hold_open(g);
    tu_env_setf(gate_var, "%s %s", g->report.path, g->gate.path);
    return tu_pool_create((wp_pool_options){ .workers = workers, .start_method = tu_method,
                                             .worker_init = init_at_gate,
                                             .worker_init_ctx = gate_var });
}

enum { STARTING_TO = 4 };

/* Shrinking while new workers are still starting: each is let become
   ready, then retires at once, taking no task (not a failed start). */
WP_TEST_BOTH(resize_shrink_while_starting)
{
    runs_map();
    tu_hold g;
    wp_pool *p = gated_pool(1, &g);
    int first = tu_fifo_read_pid(&g.report, TU_DEADLINE_MS);
    ck_assert_int_gt(first, 0);
    tu_fifo_release(&g.gate, 1);
    tu_wait_workers(p, 1, 1);
    ck_assert_int_eq(wp_pool_resize(p, STARTING_TO), 0);
    int pids[STARTING_TO - 1];
    for (int i = 0; i < STARTING_TO - 1; i++) /* forked, and held in worker_init */
        ck_assert_int_gt(pids[i] = tu_fifo_read_pid(&g.report, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_pool_resize(p, 1), 0);
    wp_future *fs[SHRINK_SHORT];
    for (int i = 0; i < SHRINK_SHORT; i++)
        fs[i] = submit_rz(p, i, 0);
    tu_fifo_release(&g.gate, STARTING_TO - 1);
    for (int i = 0; i < STARTING_TO - 1; i++)
        wait_pid_exited(pids[i]);
    ck_assert(quiet_wait_all(fs, SHRINK_SHORT, TU_DEADLINE_MS));
    for (int i = 0; i < SHRINK_SHORT; i++) {
        ck_assert_int_eq(check_ran_once(fs[i], i), first);
        wp_future_release(fs[i]);
    }
    TU_POLL_UNTIL(alive_now(p) == 1);
    tu_assert_stats(tu_pool_stats(p), .workers_alive = TU_EQ(1), .failed = TU_EQ(0),
                    .workers_started = TU_EQ(STARTING_TO) /* each did become ready */);
    wp_pool_destroy(p);
    tu_hold_close(&g);
    runs_unmap();
}

/* ---------------------------------------------------------- its tests */

TU_PART(control_add_resize_tests,
        TU_TEST(resize_grow_spreads),
        TU_TEST(resize_shrink_while_running),
        TU_TEST(resize_shrink_pipelined),
        TU_TEST(resize_regrow_keeps_retiring),
        TU_TEST(resize_retiring_keeps_control),
        TU_TEST(resize_shrink_while_starting))
