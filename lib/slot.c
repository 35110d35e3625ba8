/* SPDX-License-Identifier: MIT */
/*
 * slot.c — a worker slot's life: starting its worker, stopping or losing
 * it, reaping it and saying why it went (docs/ARCHITECTURE.md, "The slot").
 *
 *   EMPTY --start--> STARTING --READY frame--> IDLE <--last answer-- BUSY
 *                       |                       |  --first task-->   |
 *                       +---------- died, killed, retired -----------+
 *                                        |
 *                                        v
 *                          STOPPING --reaped--> EMPTY (restart after backoff,
 *                                                     unless the slot retires)
 *
 * Every change of state goes through wp__slot_set_state, which asserts
 * that it is one of these and keeps the running/alive counters.  A worker
 * the pool stops on purpose ends its window at once; one that died keeps
 * its window until its exit status is known, so the running task's failure
 * can name the signal, and the pipe is drained first, so an answer written
 * just before the death still counts.  A slot a resize no longer wants
 * (resize.c) is stopped between tasks and stays EMPTY.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_impl.h"

static bool legal(enum slot_state from, enum slot_state to)
{
    switch (to) {
    case SLOT_STARTING: return from == SLOT_EMPTY;
    case SLOT_IDLE:     return from == SLOT_STARTING || from == SLOT_BUSY;
    case SLOT_BUSY:     return from == SLOT_IDLE;
    case SLOT_STOPPING: return from != SLOT_EMPTY && from != SLOT_STOPPING;
    case SLOT_EMPTY:    return from != SLOT_EMPTY; /* reaped, even before its pipe said so */
    }
    return false;
}

void wp__slot_set_state(wp_pool *p, slot *s, enum slot_state to)
{
    assert(legal(s->state, to));
    bool was_alive = s->state == SLOT_IDLE || s->state == SLOT_BUSY;
    bool is_alive = to == SLOT_IDLE || to == SLOT_BUSY;
    if (s->state == SLOT_BUSY)
        atomic_fetch_sub(&p->n.running, 1);
    if (to == SLOT_BUSY)
        atomic_fetch_add(&p->n.running, 1);
    if (was_alive != is_alive)
        atomic_fetch_add(&p->n.alive, is_alive ? 1u : (unsigned)-1);
    s->state = to;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void wp__slot_kill(wp_pool *p, slot *s)
{
    if (s->h.pid <= 0)
        return;
    if (!p->use_forkserver)
        wp__kill_group(s->h.pid, s->h.pidfd); /* with what its task forked */
    else if (s->h.pidfd >= 0)
        wp__pidfd_kill(s->h.pidfd, SIGKILL); /* the server kills its group as it reaps it */
    else if (wp__forkserver_kill(&p->fs, (uint32_t)(s - p->slots), s->h.pid) == WP_EAGAIN)
        /* No pidfd (a relay's workers, on another rank): the kill is a
           message, and a full socket refuses it; it is asked again once
           the socket drains (handle_timers), or the worker would live on
           and its slot wait for its exit forever (docs/ARCHITECTURE.md,
           "More than one machine"). */
        s->kill_again = p->fs_full = true;
    else
        s->kill_again = false;
}

void wp__slot_stop(wp_pool *p, slot *s, bool deliberate, int error, const char *msg,
                   const char *how)
{
    if (s->state == SLOT_STOPPING || s->state == SLOT_EMPTY)
        return;
    s->deliberate = deliberate;
    snprintf(s->kill_how, sizeof s->kill_how, "%s", how);
    close_fd(&s->h.task_fd); /* no half frame is finished now */
    /* Before the kill: tasks taken back now can no longer start, so only
       the running one goes down with the worker. */
    if (deliberate)
        wp__window_resolve(p, s, error, 0, msg);
    wp__slot_kill(p, s);
    wp__slot_set_state(p, s, SLOT_STOPPING);
}

/* Doublings past which the backoff is BACKOFF_MAX_MS anyway. */
#define BACKOFF_DOUBLINGS_MAX 16

int64_t wp__backoff_ms(unsigned n)
{
    assert(n >= 1);
    return wp__backoff(BACKOFF_FIRST_MS, n - 1, BACKOFF_DOUBLINGS_MAX, BACKOFF_MAX_MS);
}

void wp__start_failed(wp_pool *p, slot *s, const char *why)
{
    p->start_failures++;
    snprintf(p->spawn_error, sizeof p->spawn_error, "%s", why);
    s->spawn_at = wp__now_ms() + wp__backoff_ms(p->start_failures);
}

void wp__slot_reaped(wp_pool *p, slot *s, int status)
{
    assert(s->state != SLOT_EMPTY);
    while (s->h.result_fd >= 0 && wp__slot_read(p, s))
        ; /* answers written just before it died */
    char how[KILL_HOW_MAX], msg[WP_MSG_MAX];
    int code = wp__describe_status(status, how, sizeof how);
    if (s->kill_how[0] != '\0' && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        snprintf(how, sizeof how, "%s", s->kill_how); /* our SIGKILL, not someone else's */
    bool never_ready = s->ready_at == 0;
    /* It answered a task, found itself past worker_rss_limit and left
       before claiming another (worker.c): nothing was running, so nothing
       fails, what it was sent goes back to the front of the line (the
       resolve below), and it is no failed start — the replacement starts
       at once.  With a task running, that task exited with this status
       itself: a crash like any other. */
    bool recycled = p->opts.worker_rss_limit > 0 && !s->deliberate && !never_ready &&
                    WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_RECYCLED &&
                    wp__slot_head_started(s) < 0;
    if (recycled)
        atomic_fetch_add(&p->n.workers_recycled, 1);
    /* A worker that had a task to run is not counted as a failed start
       (only one that died idle, soon after READY). */
    bool died_young = !recycled && !s->deliberate && s->tasks_done == 0 && s->live == 0 &&
                      wp__now_ms() - s->ready_at < HEALTHY_AFTER_MS;
    snprintf(msg, sizeof msg, "worker %d %s while running the task", (int)s->h.pid, how);
    wp__window_resolve(p, s, WP_ECRASHED, code, msg);
    if (never_ready && WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_INIT_FAILED)
        snprintf(msg, sizeof msg, "worker_init failed in worker %d", (int)s->h.pid);
    else if (s->kill_how[0] != '\0' && strcmp(how, s->kill_how) == 0)
        snprintf(msg, sizeof msg, "worker %d %s", (int)s->h.pid, how);
    else
        snprintf(msg, sizeof msg, "worker %d %s %s", (int)s->h.pid, how,
                 never_ready ? "before it was ready" : "right after it started");
    close_fd(&s->h.task_fd);
    close_fd(&s->h.result_fd);
    close_fd(&s->h.pidfd);
    wp__frame_reader_reset(&s->in);
    s->h.pid = 0;
    assert(s->count == 0 && s->live == 0 && s->pos_used == 0);
    wp__slot_set_state(p, s, SLOT_EMPTY);
    s->spawn_at = 0;
    if (never_ready || died_young)
        wp__start_failed(p, s, msg);
    else
        p->start_failures = 0;
}

void wp__slot_start(wp_pool *p, slot *s)
{
    assert(s->state == SLOT_EMPTY && s->h.pid == 0 && s->count == 0 && s->pos_used == 0);
    s->ready_at = 0;
    s->tasks_done = 0;
    s->deliberate = false;
    s->leaving = false;
    s->kill_again = false;
    s->kill_how[0] = '\0';
    s->start_deadline = wp__sat_add(wp__now_ms(), p->opts.start_timeout_ms);
    s->h = (worker_handle){ .pid = 0, .task_fd = -1, .result_fd = -1, .pidfd = -1 };
    int rc, os_error = EPIPE; /* the fork server is gone */
    if (p->use_forkserver)
        rc = p->fs_gone ? WP_ESPAWN : wp__forkserver_spawn(&p->fs, (uint32_t)(s - p->slots), &os_error);
    else if (p->use_exec)
        rc = wp__exec_spawn(&p->exec, (unsigned)(s - p->slots), &s->h, &os_error);
    else
        rc = wp__worker_spawn(&p->wcfg, (unsigned)(s - p->slots), &s->h, &os_error);
    if (rc == 0) {
        wp__slot_set_state(p, s, SLOT_STARTING);
        return;
    }
    if (rc == WP_EAGAIN) { /* the fork server's socket is full */
        p->fs_full = true; /* not a failed start: ask again once it drains */
        return;
    }
    char why[WP_MSG_MAX], err[WP_MSG_MAX];
    snprintf(why, sizeof why, "cannot start a worker: %s", wp__strerror(os_error, err, sizeof err));
    wp__start_failed(p, s, why);
}

void wp__slot_waitpid(wp_pool *p, slot *s, bool block)
{
    assert(s->h.pid > 0 && s->state != SLOT_EMPTY);
    /* It has ended or been killed: what its task forked goes too, before
       the reap frees its pid (the group's id). */
    wp__kill_group(s->h.pid, s->h.pidfd);
    int status;
    switch (wp__reap(s->h.pid, s->h.pidfd, block, &status)) {
    case REAP_DONE:
        wp__slot_reaped(p, s, status);
        return;
    case REAP_NOT_YET:
        return;
    case REAP_LOST:
        break;
    }
    /* The program reaped it, and the kernel kept no status: its task fails
       saying so, here (slot_reaped would name a status), as a crash of the
       task, not a start failure. */
    int pid = (int)s->h.pid;
    char msg[WP_MSG_MAX + KILL_HOW_MAX];
    snprintf(msg, sizeof msg, "worker %d ended but its exit status was lost: the program ignores "
             "SIGCHLD or reaps children itself (waitpid(-1)); WP_START_FORK cannot survive that, "
             "use WP_START_FORKSERVER", pid);
    while (s->h.result_fd >= 0 && wp__slot_read(p, s))
        ; /* answers written just before it died */
    unsigned failures = p->start_failures;
    if (wp__slot_head_started(s) >= 0)
        s->deliberate = true; /* a task ran: not a failed start */
    wp__window_resolve(p, s, WP_ECRASHED, 0, msg);
    wp__slot_reaped(p, s, 0);
    if (p->start_failures > failures)
        snprintf(p->spawn_error, sizeof p->spawn_error, "worker %d ended as it started, its exit "
                 "status lost (the program reaps children: use WP_START_FORKSERVER)", pid);
}
