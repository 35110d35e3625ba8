/* SPDX-License-Identifier: MIT */
/*
 * dispatch.c — the dispatcher thread's loop (docs/ARCHITECTURE.md, "Path
 * of a task"): build the poll set, sleep in ppoll until a pipe, the queue's
 * eventfd, the fork server or a timer needs it, then handle I/O, cancels,
 * timers and scheduling, in that order, every turn.
 *
 * Also what comes from outside the pool's own pipes: the fork server's
 * events, descriptors the program closed under the pool, and a ppoll that
 * fails (a lowered RLIMIT_NOFILE).  Loops scan every slot: O(workers) per
 * turn, as in schedule.c, and for the same reason it is fine: at most
 * MAX_WORKERS slots, a few loads each, next to the ppoll and the reads and
 * writes of a turn, which poll() itself makes O(descriptors) anyway.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool_impl.h"

/* ----------------------------------------------------------- fork server */

/* One event of the fork server's.  O(workers) for an exit (found by pid:
   a worker's slot may have been reused since; and by slot too when the
   event names one, as a relay's do: pids of different ranks may be the
   same number), O(1) otherwise. */
static void forkserver_event_in(wp_pool *p, const forkserver_event *ev)
{
    if (ev->kind == FS_EXITED) {
        for (unsigned i = 0; i < p->nslots; i++)
            if (p->slots[i].h.pid == ev->handle.pid && p->slots[i].state != SLOT_EMPTY &&
                (ev->slot == FS_ANY_SLOT || ev->slot == i))
                wp__slot_reaped(p, &p->slots[i], ev->status);
        return;
    }
    if (ev->slot >= p->nslots)
        return;
    slot *s = &p->slots[ev->slot];
    if (ev->kind == FS_SPAWN_FAILED) {
        char why[WP_MSG_MAX], err[WP_MSG_MAX];
        snprintf(why, sizeof why, "fork server cannot start a worker: %s",
                 wp__strerror(ev->os_error, err, sizeof err));
        wp__slot_set_state(p, s, SLOT_EMPTY);
        wp__start_failed(p, s, why);
        return;
    }
    assert(ev->kind == FS_SPAWNED);
    if (s->state != SLOT_STARTING && s->state != SLOT_STOPPING) {
        close(ev->handle.task_fd);
        close(ev->handle.result_fd);
        if (ev->handle.pidfd >= 0)
            close(ev->handle.pidfd);
        return;
    }
    s->h = ev->handle;
    if (s->state == SLOT_STOPPING) /* stopped before it was even forked */
        wp__slot_kill(p, s);
}

/* The fork server died: its workers die with it, and nothing reports
   their status any more.  O(workers), once. */
static void forkserver_lost(wp_pool *p)
{
    p->fs_gone = true;
    p->fs_full = false;
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->state != SLOT_EMPTY) {
            wp__slot_stop(p, s, false, 0, NULL, "died with the fork server (SIGKILL)");
            wp__slot_reaped(p, s, SIGKILL);
        }
    }
}

void wp__read_forkserver(wp_pool *p)
{
    forkserver_event ev;
    int got;
    while ((got = wp__forkserver_next(&p->fs, &ev)) > 0)
        forkserver_event_in(p, &ev);
    if (got < 0)
        forkserver_lost(p);
}

/* ---------------------------------------------------------------- polling */

static int add_pfd(wp_pool *p, int *n, int fd, short events)
{
    p->pfds[*n] = (struct pollfd){ .fd = fd, .events = events };
    return (*n)++;
}

/* The poll set (pool_impl.h, PFD_*): how many entries.  O(workers). */
static int build_poll_set(wp_pool *p)
{
    int n = 0;
    add_pfd(p, &n, atomic_load(&p->queue.wake_fd), POLLIN);
    if (p->use_forkserver && !p->fs_gone)
        add_pfd(p, &n, p->fs.sock, POLLIN | (p->fs_full ? POLLOUT : 0));
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        s->pi_read = s->h.result_fd >= 0 ? add_pfd(p, &n, s->h.result_fd, POLLIN) : -1;
        s->pi_write = s->written < s->count && s->h.task_fd >= 0
                          ? add_pfd(p, &n, s->h.task_fd, POLLOUT) : -1;
        s->pi_pid = !p->use_forkserver && s->h.pidfd >= 0 ? add_pfd(p, &n, s->h.pidfd, POLLIN) : -1;
    }
    return n;
}

static bool closed_under_us(const wp_pool *p, int pi)
{
    return pi >= 0 && (p->pfds[pi].revents & POLLNVAL);
}

/*
 * Descriptors of the pool that the program closed (POLLNVAL): their
 * numbers are not ours any more, so they are forgotten, never closed or
 * used again.  A worker that lost a pipe or its pidfd is stopped (killed by
 * pid, which stays ours until reaped); a lost wake-up eventfd is renewed;
 * a lost fork-server socket is a lost fork server.  A number the program
 * has already reused for something else cannot be told apart: then the
 * pool reads and writes what is there, as any library would.
 */
static void forget_closed_fds(wp_pool *p) /* O(workers) */
{
    if (p->pfds[PFD_WAKE].revents & POLLNVAL)
        wp__queue_renew_wake(&p->queue);
    if (p->use_forkserver && !p->fs_gone && (p->pfds[PFD_FORKSERVER].revents & POLLNVAL)) {
        p->fs.sock = -1;
        forkserver_lost(p);
    }
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        bool lost = false;
        if (closed_under_us(p, s->pi_read)) {
            s->h.result_fd = -1;
            lost = true;
        }
        if (closed_under_us(p, s->pi_write)) {
            s->h.task_fd = -1;
            lost = true;
        }
        if (closed_under_us(p, s->pi_pid)) {
            s->h.pidfd = -1;
            lost = true;
        }
        if (lost)
            wp__slot_stop(p, s, false, 0, NULL,
                          "was killed by the pool (SIGKILL): the program closed its pipes");
        s->pi_read = s->h.result_fd >= 0 ? s->pi_read : -1;
        s->pi_write = s->h.task_fd >= 0 ? s->pi_write : -1;
        s->pi_pid = s->h.pidfd >= 0 ? s->pi_pid : -1;
    }
}

/* Every descriptor poll said is ready.  O(workers). */
static void handle_io(wp_pool *p)
{
    forget_closed_fds(p);
    short fs_events = p->use_forkserver && !p->fs_gone ? p->pfds[PFD_FORKSERVER].revents : 0;
    if (fs_events & POLLOUT)
        p->fs_full = false;
    if (fs_events & ~POLLOUT)
        wp__read_forkserver(p);
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->pi_read >= 0 && p->pfds[s->pi_read].revents && s->h.result_fd >= 0)
            wp__slot_read(p, s);
        if (s->pi_write >= 0 && p->pfds[s->pi_write].revents)
            wp__slot_write(p, s);
        if (s->pi_pid >= 0 && p->pfds[s->pi_pid].revents && s->state != SLOT_EMPTY)
            wp__slot_waitpid(p, s, false);
    }
}

/*
 * ppoll failed (not EINTR): typically RLIMIT_NOFILE was lowered below the
 * poll set.  The dispatcher cannot watch its workers, so it stops them all
 * (their tasks fail WP_ESPAWN, saying why), fails waiting tasks the same
 * way (spawn_broken), and tries again with workers after a backoff.  A
 * second failure in a row means even the small set fails: sleep the
 * backoff here rather than spin.  O(workers).
 */
static void poll_failed(wp_pool *p, int err, int nfds)
{
    char msg[WP_MSG_MAX], ebuf[WP_MSG_MAX];
    snprintf(msg, sizeof msg, "the pool cannot wait for its workers: ppoll of %d descriptors: %s "
             "(RLIMIT_NOFILE below that?)", nfds, wp__strerror(err, ebuf, sizeof ebuf));
    snprintf(p->spawn_error, sizeof p->spawn_error, "%s", msg);
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        wp__slot_stop(p, s, true, WP_ESPAWN, msg,
                      "was killed by the pool (SIGKILL): it could not wait on its pipes");
        if (!p->use_forkserver && s->state == SLOT_STOPPING)
            wp__slot_waitpid(p, s, true); /* just killed: prompt */
    }
    if (p->use_forkserver && !p->fs_gone)
        wp__read_forkserver(p); /* exit reports, without poll's help */
    int64_t backoff = wp__backoff_ms(p->poll_failures + 1);
    p->poll_retry_at = wp__now_ms() + backoff;
    if (p->poll_failures++ > 0) {
        struct timespec pause;
        wp__timespec_of_us(&pause, wp__ms_to_us(backoff));
        nanosleep(&pause, NULL);
    }
}

/* ---------------------------------------------------------------- the loop */

static _Thread_local const wp_pool *dispatching; /* set on dispatcher threads */

bool wp__on_dispatcher(void)
{
    return dispatching != NULL;
}

bool wp__is_dispatcher_of(const wp_pool *p)
{
    return dispatching == p;
}

void *wp__dispatcher_main(void *arg)
{
    wp_pool *p = arg;
    dispatching = p;
    wp__handle_timers(p); /* start the workers */
    while (!wp__finished(p)) {
        int n = build_poll_set(p);
        bool want = wp__hungry(p);
        int64_t next = wp__next_timer_us(p, want);
        int64_t timeout_us = -1;
        if (next >= 0) {
            int64_t left = next - wp__now_us();
            timeout_us = left <= 0 ? 0 : left > POLL_CAP_US ? POLL_CAP_US : left;
        }
        /* A cancel pushed after this load kicks the queue (task_cancel):
           the sleep ends at once. */
        if (!wp__queue_may_sleep(&p->queue, want, wp__wake_rank(p)) ||
            atomic_load(&p->cancels) != NULL)
            timeout_us = 0;
        struct timespec ts;
        wp__timespec_of_us(&ts, timeout_us < 0 ? 0 : timeout_us);
        if (ppoll(p->pfds, (nfds_t)n, timeout_us < 0 ? NULL : &ts, NULL) < 0) {
            int err = errno;
            memset(p->pfds, 0, sizeof *p->pfds * (size_t)n);
            if (err != EINTR)
                poll_failed(p, err, n);
        } else {
            p->poll_failures = 0;
        }
        wp__queue_awake(&p->queue, p->pfds[PFD_WAKE].revents & POLLIN);
        handle_io(p);
        wp__line_drain(p);
        wp__handle_cancels(p);
        wp__handle_timers(p);
        wp__dispatch(p);
    }
    wp__line_fini(p);
    if (p->use_forkserver)
        wp__forkserver_stop(&p->fs);
    pthread_mutex_lock(&p->stop_mu);
    p->stop.stopped = true;
    pthread_cond_broadcast(&p->stop_cv);
    pthread_mutex_unlock(&p->stop_mu);
    return NULL;
}
