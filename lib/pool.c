/*
 * pool.c — the pool and its dispatcher thread (DESIGN §1 steps 2, 4, 5).
 *
 * One dispatcher thread owns every worker slot and every task that has left
 * the queue; nothing here is shared with other threads except through the
 * queue (tasks in), the cancel stack (cancel requests in), the futures
 * (outcomes out, under their own mutexes) and the stats (atomics).  So the
 * dispatcher needs no lock of its own, and every change of a slot's state
 * goes through slot_set_state() and every outcome through task_finish().
 *
 * A worker slot's life:
 *
 *   EMPTY --start--> STARTING --READY frame--> IDLE <--result-- BUSY
 *                       |                       |  --send task-->  |
 *                       +--------- died, killed, retired ----------+
 *                                        |
 *                                        v
 *                          STOPPING --reaped--> EMPTY (restart after backoff)
 *
 * A busy worker gets a second task written behind its current one, so it
 * goes from one task to the next without waiting for the dispatcher (that
 * wait costs two context switches per task).  Until the worker starts it,
 * the second task can be taken back (slot_take_back), so a cancel, a
 * deadline or a crash never takes down a task that did not run.
 *
 * A task whose worker dies keeps its place in the slot until the exit status
 * is known, so its failure message can name the signal; the pipe is drained
 * first, so a result written just before the death still counts.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkserver.h"
#include "frame.h"
#include "future.h"
#include "pool.h"
#include "queue.h"
#include "worker.h"

#define MAX_WORKERS          1024
#define DEFAULT_MAX_MESSAGE  ((size_t)64 << 20)
#define BACKOFF_FIRST_MS     10
#define BACKOFF_MAX_MS       2000
#define FAILURES_BEFORE_ESPAWN 3   /* consecutive start failures, no worker alive */
#define HEALTHY_AFTER_MS     1000  /* a worker alive this long did start well */
#define DEFAULT_START_TIMEOUT_MS 10000 /* READY must come within this */
#define MSG_MAX              192   /* a failure message the pool writes */
#define FDS_PER_WORKER       3     /* task pipe, result pipe, pidfd */
#define FDS_FIXED            16    /* wake eventfd, fork-server socket, a spawn reply's fds, slack */
#define KILL_HOW_MAX         96    /* why the pool killed a worker */

typedef struct task {
    wp_future       future;       /* first: a task is its future */
    wp_pool        *pool;
    wp_task_fn      fn;
    void           *arg;
    size_t          arg_len;
    wp_task_options opts;
    uint64_t        id;           /* this attempt's id on the wire */
    unsigned        attempts;     /* attempts started */
    int             slot;         /* in pool->slots[slot] (running or next), or -1 */
    unsigned        wires;        /* slots still writing its TASK frame (they hold a reference) */
    int64_t         due_ms;       /* held: earliest start (retry delay) */
    struct task    *next;         /* in the held list */
    struct task    *cancel_next;  /* in the cancel stack */
} task;

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_IDLE, SLOT_BUSY, SLOT_STOPPING };

typedef struct slot {
    enum slot_state state;
    worker_handle   h;           /* pid 0: none (yet) */
    worker_shared  *shared;      /* the started/skip words (worker.h) */
    task           *task;        /* the task the worker is on, or whose frame is unread */
    task           *next;        /* written behind it, not started as far as we know */
    uint64_t        skipped_id;  /* a taken-back task whose "skipped" reply is due */
    task           *writing;     /* whose TASK frame is being written */
    frame_header    out;
    size_t          out_done;
    frame_reader    in;
    int64_t         deadline_us; /* for task, to the microsecond: -1 = none */
    int64_t         spawn_at;    /* EMPTY: earliest time to start a worker */
    int64_t         ready_at;
    unsigned        tasks_done;  /* frames answered, as the worker counts them */
    bool            deliberate;  /* STOPPING: we stopped it, it did not die */
    int64_t         start_deadline; /* STARTING: ms by which READY must come */
    char            kill_how[KILL_HOW_MAX]; /* STOPPING: how the pool killed it, "" = it did not */
    int             pi_read, pi_write, pi_pid; /* indices in pool->pfds, -1 */
} slot;

typedef struct pool_counters {
    atomic_uint_fast64_t submitted, succeeded, failed, cancelled;
    atomic_uint_fast64_t timed_out, crashed, retried, workers_started;
    atomic_uint held, running, alive;
} pool_counters;

struct wp_pool {
    wp_pool_options opts;
    worker_config   wcfg;
    worker_shared  *shared;              /* MAP_SHARED, one per slot */
    wp_queue        queue;
    forkserver      fs;
    bool            use_forkserver, fs_gone;
    bool            fs_full;             /* its socket refused a request: wait for POLLOUT */
    pid_t           owner;
    pthread_t       thread;

    /* Dispatcher-only state. */
    slot           *slots;
    struct pollfd  *pfds;
    task           *held, **held_tail;   /* out of the queue, not running */
    uint64_t        last_id;
    unsigned        start_failures;      /* consecutive */
    unsigned        poll_failures;       /* consecutive ppoll failures */
    int64_t         poll_retry_at;       /* after a ppoll failure: no worker starts before (ms) */
    bool            grace_spent;         /* past the grace, everything was cancelled */
    char            spawn_error[MSG_MAX]; /* why the last start failed */

    _Atomic(task *) cancels;             /* lock-free stack of cancel requests */

    atomic_bool     closing;
    _Atomic int64_t grace_deadline;      /* -1 = none */
    pthread_mutex_t stop_mu;
    pthread_cond_t  stop_cv;
    wp_stop         stop;                /* under stop_mu */

    pool_counters   n;
};

static _Thread_local const wp_pool *dispatching; /* set on dispatcher threads */

/* ------------------------------------------------------------------ tasks */

static int task_cancel(wp_future *f);
static void task_free(wp_future *f)
{
    task *t = (task *)f;
    free(t->arg);
    free(t);
}

static void count_settled(wp_pool *p, int state, int error)
{
    if (state == WP_SUCCEEDED)
        atomic_fetch_add(&p->n.succeeded, 1);
    else if (state == WP_CANCELLED)
        atomic_fetch_add(&p->n.cancelled, 1);
    else if (state == WP_FAILED) {
        atomic_fetch_add(&p->n.failed, 1);
        if (error == WP_ETIMEDOUT)
            atomic_fetch_add(&p->n.timed_out, 1);
        else if (error == WP_ECRASHED)
            atomic_fetch_add(&p->n.crashed, 1);
    }
}

static void task_settling(wp_future *f, int state, int error)
{
    count_settled(((task *)f)->pool, state, error);
}

static const future_ops task_ops = {
    .cancel = task_cancel, .free = task_free, .settling = task_settling,
};

/* Settle t for good and let go of the dispatcher's reference. */
static void task_settle(task *t, int error, int code, const char *msg,
                        void *result, size_t len)
{
    if (t->wires == 0) { /* else the rest of its frame is still being written */
        free(t->arg);
        t->arg = NULL;
    }
    wp__future_settle(&t->future, error, code, msg, result, len);
    wp_future_release(&t->future);
}

/* Hold t out of the queue until due_ms; in front when it was already on
   its way to a worker and must not lose its place. */
static void held_push(wp_pool *p, task *t, int64_t due_ms, bool in_front)
{
    t->due_ms = due_ms;
    t->slot = -1;
    if (in_front) {
        t->next = p->held;
        p->held = t;
        if (p->held_tail == &p->held)
            p->held_tail = &t->next;
    } else {
        t->next = NULL;
        *p->held_tail = t;
        p->held_tail = &t->next;
    }
    atomic_fetch_add(&p->n.held, 1);
}

static void held_unlink(wp_pool *p, task **link)
{
    task *t = *link;
    *link = t->next;
    if (p->held_tail == &t->next)
        p->held_tail = link;
    atomic_fetch_sub(&p->n.held, 1);
}

static bool retryable(int error)
{
    return error == WP_ECRASHED || error == WP_ETIMEDOUT || error == WP_ETASK;
}

/* Shutting down, and the grace it allowed has run out. */
static bool grace_over(wp_pool *p, int64_t now_ms)
{
    int64_t grace = atomic_load(&p->grace_deadline);
    return atomic_load(&p->closing) && grace >= 0 && now_ms >= grace;
}

/* An attempt ended: retry it if its options allow, or settle it. */
static void task_finish(wp_pool *p, task *t, int error, int code, const char *msg,
                        void *result, size_t len)
{
    t->slot = -1;
    if (retryable(error) && t->attempts <= t->opts.retries && !grace_over(p, wp__now_ms()) &&
        wp__future_requeue(&t->future)) {
        free(result);
        atomic_fetch_add(&p->n.retried, 1);
        unsigned doublings = t->attempts - 1 < 20 ? t->attempts - 1 : 20;
        int64_t delay = (int64_t)t->opts.retry_delay_ms << doublings;
        held_push(p, t, wp__now_ms() + delay, false);
        return;
    }
    task_settle(t, error, code, msg, result, len);
}

/* ------------------------------------------------------------------ slots */

static void slot_set_state(wp_pool *p, slot *s, enum slot_state to)
{
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

static void slot_kill(wp_pool *p, slot *s)
{
    if (s->h.pid <= 0)
        return;
    if (!p->use_forkserver)
        wp__kill_group(s->h.pid, s->h.pidfd); /* with what its task forked */
    else if (s->h.pidfd >= 0)
        wp__pidfd_kill(s->h.pidfd, SIGKILL); /* the server kills its group as it reaps it */
    else
        wp__forkserver_kill(&p->fs, s->h.pid);
}

/*
 * Take back the task written behind the current one, if the worker has not
 * started it (worker.h explains the handshake).  Returns it, or NULL if it
 * has started: then the current task has finished and its frame is in the
 * pipe.
 */
static task *slot_take_back(slot *s)
{
    task *t = s->next;
    if (!wp__claim(s->shared, CLAIM_SKIP(t->id), CLAIM_STARTED(t->id)))
        return NULL;
    s->next = NULL;
    s->skipped_id = t->id;
    t->attempts--;
    return t;
}

/*
 * The worker goes away: killed now, reaped later.  deliberate: we stop it
 * (protocol error, retirement, shutdown, or for stop_task), and its tasks end
 * at once: the current with error, one not yet started goes back to the
 * front of the line.  Otherwise it died on its own, and its tasks stay to
 * learn the exit status.
 */
static void slot_stop(wp_pool *p, slot *s, bool deliberate, int error, const char *msg,
                      const char *how)
{
    if (s->state == SLOT_STOPPING || s->state == SLOT_EMPTY)
        return;
    s->deliberate = deliberate;
    snprintf(s->kill_how, sizeof s->kill_how, "%s", how);
    if (deliberate && s->next != NULL) {
        task *t = slot_take_back(s);
        if (t != NULL)
            held_push(p, t, 0, true);
        else { /* it started, so it goes down with the worker */
            t = s->next;
            s->next = NULL;
            task_finish(p, t, error, 0, msg, NULL, 0);
        }
    }
    if (deliberate && s->task != NULL) {
        task *t = s->task;
        s->task = NULL;
        task_finish(p, t, error, 0, msg, NULL, 0);
    }
    slot_kill(p, s);
    close_fd(&s->h.task_fd);
    slot_set_state(p, s, SLOT_STOPPING);
}

static bool slot_read(wp_pool *p, slot *s);
static void slot_wire_done(slot *s);

/*
 * End task t, which is in slot s, with error, disturbing no other task:
 * one not yet started is taken back; one that turns out to have finished
 * settles with what it returned (its frame is in the pipe); only a running
 * one costs the worker.
 */
static void stop_task(wp_pool *p, slot *s, task *t, int error, const char *msg)
{
    if (t == s->next) {
        if (slot_take_back(s) != NULL) {
            task_finish(p, t, error, 0, msg, NULL, 0);
            return;
        }
        slot_read(p, s); /* the current one's frame: t becomes current */
    } else if (s->next != NULL) {
        task *n = slot_take_back(s);
        if (n == NULL) {
            slot_read(p, s); /* t has finished: it settles as it ended */
            return;
        }
        held_push(p, n, 0, true);
    }
    if (s->task == t)
        slot_stop(p, s, true, error, msg, "was killed by the pool to stop its task");
}

static void start_failed(wp_pool *p, slot *s, const char *why)
{
    p->start_failures++;
    snprintf(p->spawn_error, sizeof p->spawn_error, "%s", why);
    unsigned shift = p->start_failures - 1 < 16 ? p->start_failures - 1 : 16;
    int64_t backoff = (int64_t)BACKOFF_FIRST_MS << shift;
    s->spawn_at = wp__now_ms() + (backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS);
}

/* The worker's process is gone and its status known. */
static void slot_reaped(wp_pool *p, slot *s, int status)
{
    while (s->h.result_fd >= 0 && slot_read(p, s))
        ; /* results written just before it died */
    char how[KILL_HOW_MAX], msg[MSG_MAX];
    int code = wp__describe_status(status, how, sizeof how);
    if (s->kill_how[0] != '\0' && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        snprintf(how, sizeof how, "%s", s->kill_how); /* our SIGKILL, not someone else's */
    bool never_ready = s->ready_at == 0;
    bool died_young = !s->deliberate && s->tasks_done == 0 && s->task == NULL &&
                      wp__now_ms() - s->ready_at < HEALTHY_AFTER_MS;
    if (s->next != NULL) { /* never started: it runs elsewhere */
        s->next->attempts--;
        held_push(p, s->next, 0, true);
        s->next = NULL;
    }
    if (s->task != NULL) {
        task *t = s->task;
        s->task = NULL;
        snprintf(msg, sizeof msg, "worker %d %s while running the task", (int)s->h.pid, how);
        task_finish(p, t, WP_ECRASHED, code, msg, NULL, 0);
    }
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
    slot_wire_done(s);
    s->skipped_id = 0;
    slot_set_state(p, s, SLOT_EMPTY);
    s->spawn_at = 0;
    if (never_ready || died_young)
        start_failed(p, s, msg);
    else
        p->start_failures = 0;
}

/* The slot no longer writes its TASK frame (all written, or the worker is
   gone): the task may free its argument once settled. */
static void slot_wire_done(slot *s)
{
    task *t = s->writing;
    if (t == NULL)
        return;
    s->writing = NULL;
    assert(t->wires > 0);
    if (--t->wires == 0 && wp__future_is_settled(atomic_load(&t->future.state))) {
        free(t->arg);
        t->arg = NULL;
    }
    wp_future_release(&t->future);
}

/* Write what the pipe takes of the TASK frame; the rest when it drains.
   The frame is finished even if its task is taken back meanwhile (the
   worker then skips it): a half-written frame would cost the worker. */
static void slot_write(wp_pool *p, slot *s)
{
    while (s->writing != NULL) {
        const task *t = s->writing;
        size_t total = sizeof s->out + t->arg_len;
        if (s->out_done == total) {
            slot_wire_done(s);
            return;
        }
        struct iovec iov[2];
        int n = 0;
        if (s->out_done < sizeof s->out)
            iov[n++] = (struct iovec){ (char *)&s->out + s->out_done, sizeof s->out - s->out_done };
        size_t arg_off = s->out_done > sizeof s->out ? s->out_done - sizeof s->out : 0;
        if (t->arg_len > arg_off)
            iov[n++] = (struct iovec){ (char *)t->arg + arg_off, t->arg_len - arg_off };
        ssize_t put = writev(s->h.task_fd, iov, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (put < 0) {
            slot_wire_done(s);
            /* it died, or will: the reap says how */
            slot_stop(p, s, false, 0, NULL, "was killed by the pool: its task pipe broke");
            return;
        }
        s->out_done += (size_t)put;
    }
}

/* A task's deadline counts from now, the start of its attempt. */
static int64_t task_deadline_us(const task *t)
{
    return t->opts.timeout_ms > 0 ? wp__sat_add(wp__now_us(), wp__ms_to_us(t->opts.timeout_ms)) : -1;
}

/* Send t to the worker: as its current task, or behind it as next. */
static void slot_send(wp_pool *p, slot *s, task *t)
{
    t->id = ++p->last_id;
    t->slot = (int)(s - p->slots);
    t->attempts++;
    wp__frame_header(&s->out, FRAME_TASK, t->id, t->arg_len);
    memcpy(&s->out.fn, &t->fn, sizeof t->fn);
    s->out_done = 0;
    assert(s->writing == NULL);
    s->writing = t;
    t->wires++;
    wp_future_retain(&t->future);
    if (s->task == NULL) {
        s->task = t;
        s->deadline_us = task_deadline_us(t);
        slot_set_state(p, s, SLOT_BUSY);
    } else {
        s->next = t;
    }
    slot_write(p, s);
}

/* The worker answered a task frame: the next one is now its current. */
static void slot_advance(wp_pool *p, slot *s)
{
    s->tasks_done++;
    p->start_failures = 0;
    if (s->task == NULL && s->next != NULL) {
        s->task = s->next;
        s->next = NULL;
        s->deadline_us = task_deadline_us(s->task);
        wp__future_start(&s->task->future); /* false: a cancel is on its way */
    }
    if (s->state == SLOT_BUSY && s->task == NULL && s->skipped_id == 0) {
        if (p->opts.max_tasks_per_worker > 0 && s->tasks_done >= p->opts.max_tasks_per_worker)
            slot_stop(p, s, true, 0, NULL, "was retired"); /* it exits by itself anyway */
        else
            slot_set_state(p, s, SLOT_IDLE);
    }
}

static void protocol_error(wp_pool *p, slot *s, const char *why)
{
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "worker %d broke the protocol: %s; the pool killed it",
             (int)s->h.pid, why);
    slot_stop(p, s, true, WP_EPROTO, msg, "was killed by the pool: it broke the protocol");
}

static void handle_frame(wp_pool *p, slot *s)
{
    const frame_header *h = &s->in.hdr;
    if (h->type == FRAME_READY) {
        s->ready_at = wp__now_ms();
        atomic_fetch_add(&p->n.workers_started, 1);
        slot_set_state(p, s, SLOT_IDLE);
        return;
    }
    if (s->task == NULL || h->task_id != s->task->id) { /* the skipped one's reply */
        s->skipped_id = 0;
        slot_advance(p, s);
        return;
    }
    bool outcome_ok = h->type == FRAME_RESULT || h->error == WP_ETASK ||
                      h->error == WP_E2BIG || h->error == WP_ENOFUNC;
    if (!outcome_ok) {
        protocol_error(p, s, "unknown failure code");
        return;
    }
    task *t = s->task;
    s->task = NULL;
    size_t len = (size_t)h->length;
    char *payload = wp__frame_reader_take(&s->in);
    if (h->type == FRAME_RESULT) {
        task_finish(p, t, 0, 0, NULL, payload, len);
    } else {
        task_finish(p, t, h->error, h->code, payload != NULL ? payload : "", NULL, 0);
        free(payload);
    }
    slot_advance(p, s);
}

static frame_expect slot_expects(const wp_pool *p, const slot *s)
{
    frame_expect ex = { .types = 0, .task_id = 0, .max_message = p->opts.max_message };
    if (s->state == SLOT_STARTING)
        ex.types = FRAME_BIT(FRAME_READY);
    else if (s->task != NULL || s->skipped_id != 0) {
        ex.types = FRAME_BIT(FRAME_RESULT) | FRAME_BIT(FRAME_FAILURE);
        ex.task_id = s->task != NULL ? s->task->id : s->skipped_id;
    }
    return ex;
}

/* Read what the worker sent, up to the end of one frame (a worker owes one
   frame per task: a byte more shows up on the next poll).  True if a frame
   was completed and handled. */
static bool slot_read(wp_pool *p, slot *s)
{
    frame_expect ex = slot_expects(p, s);
    for (;;) {
        size_t want;
        void *space = wp__frame_reader_space(&s->in, &want);
        ssize_t n = read(s->h.result_fd, space, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n <= 0) { /* end of file: the worker is gone or going */
            close_fd(&s->h.result_fd);
            slot_stop(p, s, false, 0, NULL, "was killed by the pool: its result pipe closed");
            return false;
        }
        if (s->state == SLOT_STOPPING && ex.task_id == 0)
            continue; /* nobody waits for it: drain */
        int rc = wp__frame_reader_advance(&s->in, (size_t)n, &ex);
        if (rc == FRAME_DONE) {
            handle_frame(p, s);
            wp__frame_reader_reset(&s->in);
            return true;
        }
        if (rc < 0) {
            protocol_error(p, s, rc == WP_E2BIG ? "result larger than max_message" : s->in.why);
            wp__frame_reader_reset(&s->in);
            return false;
        }
    }
}

static void slot_start(wp_pool *p, slot *s)
{
    s->ready_at = 0;
    s->tasks_done = 0;
    s->deliberate = false;
    s->kill_how[0] = '\0';
    s->start_deadline = wp__sat_add(wp__now_ms(), p->opts.start_timeout_ms);
    s->h = (worker_handle){ .pid = 0, .task_fd = -1, .result_fd = -1, .pidfd = -1 };
    int rc;
    if (p->use_forkserver)
        rc = p->fs_gone ? -EPIPE : wp__forkserver_spawn(&p->fs, (uint32_t)(s - p->slots));
    else
        rc = wp__worker_spawn(&p->wcfg, (unsigned)(s - p->slots), &s->h);
    if (rc == 0) {
        slot_set_state(p, s, SLOT_STARTING);
        return;
    }
    if (rc == -EAGAIN && p->use_forkserver) {
        p->fs_full = true; /* not a failed start: ask again once it drains */
        return;
    }
    char why[MSG_MAX], err[MSG_MAX];
    snprintf(why, sizeof why, "cannot start a worker: %s", wp__strerror(-rc, err, sizeof err));
    start_failed(p, s, why);
}

/* ------------------------------------------------- events from the outside */

static void forkserver_event_in(wp_pool *p, const forkserver_event *ev)
{
    if (ev->kind == FS_EXITED) {
        for (unsigned i = 0; i < p->opts.workers; i++)
            if (p->slots[i].h.pid == ev->handle.pid && p->slots[i].state != SLOT_EMPTY)
                slot_reaped(p, &p->slots[i], ev->status);
        return;
    }
    if (ev->slot >= p->opts.workers)
        return;
    slot *s = &p->slots[ev->slot];
    if (ev->kind == FS_SPAWN_FAILED) {
        char why[MSG_MAX], err[MSG_MAX];
        snprintf(why, sizeof why, "fork server cannot start a worker: %s",
                 wp__strerror(ev->error, err, sizeof err));
        slot_set_state(p, s, SLOT_EMPTY);
        start_failed(p, s, why);
        return;
    }
    if (s->state != SLOT_STARTING && s->state != SLOT_STOPPING) {
        close(ev->handle.task_fd);
        close(ev->handle.result_fd);
        if (ev->handle.pidfd >= 0)
            close(ev->handle.pidfd);
        return;
    }
    s->h = ev->handle;
    if (s->state == SLOT_STOPPING) /* stopped before it was even forked */
        slot_kill(p, s);
}

/* The fork server died: its workers die with it, and nothing reports
   their status any more. */
static void forkserver_lost(wp_pool *p)
{
    p->fs_gone = true;
    p->fs_full = false;
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->state != SLOT_EMPTY) {
            slot_stop(p, s, false, 0, NULL, "died with the fork server");
            slot_reaped(p, s, SIGKILL);
        }
    }
}

static void read_forkserver(wp_pool *p)
{
    forkserver_event ev;
    int got;
    while ((got = wp__forkserver_next(&p->fs, &ev)) > 0)
        forkserver_event_in(p, &ev);
    if (got < 0)
        forkserver_lost(p);
}

static void slot_waitpid(wp_pool *p, slot *s, bool block)
{
    /* It has ended or been killed: what its task forked goes too, before
       the reap frees its pid (the group's id). */
    wp__kill_group(s->h.pid, s->h.pidfd);
    int status, r = wp__reap(s->h.pid, s->h.pidfd, block, &status);
    if (r > 0)
        slot_reaped(p, s, status);
    if (r >= 0)
        return;
    /* The program reaped it, and the kernel kept no status: its task fails
       saying so, here (slot_reaped would name a status), as a crash of the
       task, not a start failure. */
    int pid = (int)s->h.pid;
    char msg[256];
    snprintf(msg, sizeof msg, "worker %d ended but its exit status was lost: the program ignores "
             "SIGCHLD or reaps children itself (waitpid(-1)); WP_START_FORK cannot survive that, "
             "use WP_START_FORKSERVER", pid);
    while (s->h.result_fd >= 0 && slot_read(p, s))
        ; /* results written just before it died */
    unsigned failures = p->start_failures;
    if (s->task != NULL) {
        task *t = s->task;
        s->task = NULL;
        s->deliberate = true;
        task_finish(p, t, WP_ECRASHED, 0, msg, NULL, 0);
    }
    slot_reaped(p, s, 0);
    if (p->start_failures > failures)
        snprintf(p->spawn_error, sizeof p->spawn_error, "worker %d ended as it started, its exit "
                 "status lost (the program reaps children: use WP_START_FORKSERVER)", pid);
}

static int task_cancel(wp_future *f)
{
    task *t = (task *)f;
    if (atomic_load(&f->state) == WP_RUNNING && (t->opts.flags & WP_TASK_SHIELD))
        return WP_EBUSY;
    wp_future_retain(f);
    task *head = atomic_load(&t->pool->cancels);
    do
        t->cancel_next = head;
    while (!atomic_compare_exchange_weak(&t->pool->cancels, &head, t));
    wp__queue_kick(&t->pool->queue);
    return 0;
}

static void handle_cancels(wp_pool *p)
{
    task *t = atomic_exchange(&p->cancels, NULL);
    while (t != NULL) {
        task *next = t->cancel_next;
        task **held = &p->held;
        while (*held != NULL && *held != t)
            held = &(*held)->next;
        if (t->slot >= 0) {
            stop_task(p, &p->slots[t->slot], t, WP_ECANCELED, "cancelled");
        } else if (*held != NULL) {
            held_unlink(p, held);
            task_settle(t, WP_ECANCELED, 0, "cancelled", NULL, 0);
        } else { /* still in the queue: settle now, drop when it comes out */
            wp__future_settle(&t->future, WP_ECANCELED, 0, "cancelled", NULL, 0);
        }
        wp_future_release(&t->future);
        t = next;
    }
}

/* --------------------------------------------------------------- dispatch */

static task *next_task(wp_pool *p, int64_t now)
{
    for (task **link = &p->held; *link != NULL; link = &(*link)->next)
        if ((*link)->due_ms <= now) {
            task *t = *link;
            held_unlink(p, link);
            return t;
        }
    return wp__queue_pop(&p->queue);
}

static bool spawn_broken(const wp_pool *p)
{
    return (p->start_failures >= FAILURES_BEFORE_ESPAWN || p->poll_retry_at > 0) &&
           atomic_load(&p->n.alive) == 0;
}

/* A busy worker can take a second task behind its current one, so it
   never sits waiting for the dispatcher between tasks. */
static bool slot_takes_next(const wp_pool *p, const slot *s)
{
    unsigned max = p->opts.max_tasks_per_worker;
    return s->state == SLOT_BUSY && s->task != NULL && s->next == NULL && s->skipped_id == 0 &&
           s->writing == NULL && (max == 0 || s->tasks_done + 2 <= max);
}

/* With the queue empty, an idle worker takes over a task waiting behind
   another worker's current one (which may run for long), if it has not
   started. */
static task *steal_next(wp_pool *p)
{
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->next != NULL && s->writing != s->next && s->state == SLOT_BUSY) {
            task *t = slot_take_back(s);
            if (t != NULL)
                return t;
        }
    }
    return NULL;
}

/* Give queued tasks to workers, idle ones first; with no worker able to
   start, fail them with WP_ESPAWN rather than let them wait forever. */
static void dispatch(wp_pool *p)
{
    int64_t now = wp__now_ms();
    bool broken = spawn_broken(p);
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < p->opts.workers; i++) {
            slot *s = &p->slots[i];
            while (broken || (pass == 0 ? s->state == SLOT_IDLE : slot_takes_next(p, s))) {
                task *t = next_task(p, now);
                if (t == NULL && pass == 0 && !broken)
                    t = steal_next(p);
                if (t == NULL)
                    break;
                /* A cancel settles a task still in the queue; it is dropped
                   here.  One written behind a busy worker stays WP_PENDING
                   until it starts (slot_advance). */
                bool cancelled = pass == 0 ? !wp__future_start(&t->future)
                                           : wp_future_state(&t->future) != WP_PENDING;
                if (broken)
                    task_settle(t, WP_ESPAWN, 0, p->spawn_error, NULL, 0);
                else if (cancelled)
                    task_settle(t, WP_ECANCELED, 0, "cancelled", NULL, 0);
                else
                    slot_send(p, s, t);
            }
        }
}

static bool drained(wp_pool *p)
{
    if (!wp__queue_sealed(&p->queue) || wp__queue_count(&p->queue) > 0 || p->held != NULL)
        return false;
    for (unsigned i = 0; i < p->opts.workers; i++)
        if (p->slots[i].task != NULL || p->slots[i].next != NULL)
            return false;
    return true;
}

/* Past the shutdown grace: cancel everything but shielded running tasks
   (a shield means cancel cannot stop it; shutdown waits for it, bounded
   by its own deadline).  O(workers + queued), once per dispatcher turn
   after the grace: it finds nothing left to do after the first. */
static void cancel_everything(wp_pool *p)
{
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->next != NULL)
            stop_task(p, s, s->next, WP_ECANCELED, "the pool shut down before the task finished");
        if (s->task != NULL && !(s->task->opts.flags & WP_TASK_SHIELD))
            stop_task(p, s, s->task, WP_ECANCELED, "the pool shut down before the task finished");
    }
    task *t;
    while ((t = next_task(p, INT64_MAX)) != NULL)
        task_settle(t, WP_ECANCELED, 0, "the pool shut down before the task ran", NULL, 0);
}

/* Deadlines, the shutdown grace, and starting or stopping workers. */
static void handle_timers(wp_pool *p)
{
    int64_t now_us = wp__now_us(), now = now_us / 1000;
    if (grace_over(p, now)) {
        cancel_everything(p); /* again for late arrivals: they kick */
        p->grace_spent = true;
    }
    bool done = atomic_load(&p->closing) && drained(p);
    if (p->poll_retry_at > 0 && now >= p->poll_retry_at)
        p->poll_retry_at = 0; /* try again with workers */
    bool may_start = !done && !p->fs_full && p->poll_retry_at == 0;
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->state == SLOT_BUSY && s->task != NULL && s->deadline_us >= 0 && now_us >= s->deadline_us) {
            char msg[96];
            snprintf(msg, sizeof msg, "task ran past its deadline of %lld ms",
                     (long long)s->task->opts.timeout_ms);
            stop_task(p, s, s->task, WP_ETIMEDOUT, msg);
        }
        if (s->state == SLOT_STARTING && now >= s->start_deadline) {
            char how[KILL_HOW_MAX];
            snprintf(how, sizeof how, "was killed by the pool: not ready within %lld ms",
                     (long long)p->opts.start_timeout_ms);
            slot_stop(p, s, true, 0, NULL, how);
        }
        if (done && s->state != SLOT_EMPTY)
            slot_stop(p, s, true, 0, NULL, "was stopped at shutdown");
        if (may_start && s->state == SLOT_EMPTY && now >= s->spawn_at)
            slot_start(p, s);
        if (s->state == SLOT_STOPPING && !p->use_forkserver && s->h.pidfd < 0)
            slot_waitpid(p, s, true); /* no pidfd to wait on: it was just killed */
    }
}

/* ---------------------------------------------------------------- polling */

static int add_pfd(wp_pool *p, int *n, int fd, short events)
{
    p->pfds[*n] = (struct pollfd){ .fd = fd, .events = events };
    return (*n)++;
}

static int build_poll_set(wp_pool *p)
{
    int n = 0;
    add_pfd(p, &n, p->queue.wake_fd, POLLIN);
    if (p->use_forkserver && !p->fs_gone)
        add_pfd(p, &n, p->fs.sock, POLLIN | (p->fs_full ? POLLOUT : 0));
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        s->pi_read = s->h.result_fd >= 0 ? add_pfd(p, &n, s->h.result_fd, POLLIN) : -1;
        s->pi_write = s->writing != NULL ? add_pfd(p, &n, s->h.task_fd, POLLOUT) : -1;
        s->pi_pid = !p->use_forkserver && s->h.pidfd >= 0 ? add_pfd(p, &n, s->h.pidfd, POLLIN) : -1;
    }
    return n;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Microseconds until the next timer that can change something: -1 = none.
   Task deadlines are kept to the microsecond; the rest in milliseconds. */
static int64_t poll_timeout_us(wp_pool *p, bool hungry)
{
    int64_t next = -1, now = wp__now_us();
    bool closing = atomic_load(&p->closing);
    bool done = closing && drained(p);
    int64_t grace = atomic_load(&p->grace_deadline);
    /* Until handle_timers has acted on it, however late: deciding "past"
       from a second reading of the clock could skip it forever. */
    if (closing && grace >= 0 && !p->grace_spent)
        next = wp__ms_to_us(grace);
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->state == SLOT_BUSY && s->task != NULL)
            next = min_deadline(next, s->deadline_us);
        if (s->state == SLOT_EMPTY && !done && !p->fs_full && p->poll_retry_at == 0)
            next = min_deadline(next, s->spawn_at * 1000);
        if (s->state == SLOT_STARTING)
            next = min_deadline(next, wp__ms_to_us(s->start_deadline));
    }
    for (task *t = p->held; t != NULL && hungry; t = t->next)
        next = min_deadline(next, t->due_ms * 1000);
    if (p->poll_retry_at > 0)
        next = min_deadline(next, p->poll_retry_at * 1000);
    if (next < 0)
        return -1;
    int64_t left = next - now;
    return left <= 0 ? 0 : left > 60 * 1000000 ? 60 * 1000000 : left;
}

/* Would the dispatcher take a task now? */
static bool hungry(const wp_pool *p)
{
    if (spawn_broken(p))
        return true;
    for (unsigned i = 0; i < p->opts.workers; i++)
        if (p->slots[i].state == SLOT_IDLE || slot_takes_next(p, &p->slots[i]))
            return true;
    return false;
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
static void forget_closed_fds(wp_pool *p)
{
    if (p->pfds[0].revents & POLLNVAL)
        wp__queue_renew_wake(&p->queue);
    if (p->use_forkserver && !p->fs_gone && (p->pfds[1].revents & POLLNVAL)) {
        p->fs.sock = -1;
        forkserver_lost(p);
    }
    for (unsigned i = 0; i < p->opts.workers; i++) {
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
            slot_stop(p, s, false, 0, NULL, "was killed by the pool: the program closed its pipes");
        s->pi_read = s->h.result_fd >= 0 ? s->pi_read : -1;
        s->pi_write = s->h.task_fd >= 0 ? s->pi_write : -1;
        s->pi_pid = s->h.pidfd >= 0 ? s->pi_pid : -1;
    }
}

static void handle_io(wp_pool *p)
{
    forget_closed_fds(p);
    if (p->use_forkserver && !p->fs_gone && (p->pfds[1].revents & POLLOUT))
        p->fs_full = false;
    if (p->use_forkserver && !p->fs_gone && (p->pfds[1].revents & ~POLLOUT))
        read_forkserver(p);
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        if (s->pi_write >= 0 && p->pfds[s->pi_write].revents)
            slot_write(p, s);
        if (s->pi_read >= 0 && p->pfds[s->pi_read].revents && s->h.result_fd >= 0)
            slot_read(p, s);
        if (s->pi_pid >= 0 && p->pfds[s->pi_pid].revents && s->state != SLOT_EMPTY)
            slot_waitpid(p, s, false);
    }
}

static bool finished(wp_pool *p)
{
    if (!atomic_load(&p->closing) || !drained(p))
        return false;
    for (unsigned i = 0; i < p->opts.workers; i++)
        if (p->slots[i].state != SLOT_EMPTY)
            return false;
    return true;
}

/*
 * ppoll failed (not EINTR): typically RLIMIT_NOFILE was lowered below the
 * poll set.  The dispatcher cannot watch its workers, so it stops them all
 * (their tasks fail WP_ESPAWN, saying why), fails waiting tasks the same
 * way (spawn_broken), and tries again with workers after a backoff.  A
 * second failure in a row means even the small set fails: sleep the
 * backoff here rather than spin.  O(workers), on a failure only.
 */
static void poll_failed(wp_pool *p, int err, int nfds)
{
    char msg[MSG_MAX], ebuf[MSG_MAX];
    snprintf(msg, sizeof msg, "the pool cannot wait for its workers: ppoll of %d descriptors: %s "
             "(RLIMIT_NOFILE below that?)", nfds, wp__strerror(err, ebuf, sizeof ebuf));
    snprintf(p->spawn_error, sizeof p->spawn_error, "%s", msg);
    for (unsigned i = 0; i < p->opts.workers; i++) {
        slot *s = &p->slots[i];
        slot_stop(p, s, true, WP_ESPAWN, msg, "was killed by the pool: it could not wait on its pipes");
        if (!p->use_forkserver && s->state == SLOT_STOPPING)
            slot_waitpid(p, s, true); /* just killed: prompt */
    }
    if (p->use_forkserver && !p->fs_gone)
        read_forkserver(p); /* exit reports, without poll's help */
    unsigned shift = p->poll_failures < 16 ? p->poll_failures : 16;
    int64_t backoff = (int64_t)BACKOFF_FIRST_MS << shift;
    backoff = backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS;
    p->poll_retry_at = wp__now_ms() + backoff;
    if (p->poll_failures++ > 0) {
        struct timespec pause = { (time_t)(backoff / 1000), (long)(backoff % 1000) * 1000000L };
        nanosleep(&pause, NULL);
    }
}

static void *dispatcher_main(void *arg)
{
    wp_pool *p = arg;
    dispatching = p;
    handle_timers(p); /* start the workers */
    while (!finished(p)) {
        int n = build_poll_set(p);
        bool want = hungry(p);
        int64_t timeout_us = poll_timeout_us(p, want);
        if (!wp__queue_may_sleep(&p->queue, want) || atomic_load(&p->cancels) != NULL)
            timeout_us = 0;
        struct timespec ts = { (time_t)(timeout_us / 1000000), (long)(timeout_us % 1000000) * 1000 };
        if (ppoll(p->pfds, (nfds_t)n, timeout_us < 0 ? NULL : &ts, NULL) < 0) {
            int err = errno;
            memset(p->pfds, 0, sizeof *p->pfds * (size_t)n);
            if (err != EINTR)
                poll_failed(p, err, n);
        } else {
            p->poll_failures = 0;
        }
        wp__queue_awake(&p->queue, p->pfds[0].revents & POLLIN);
        handle_io(p);
        handle_cancels(p);
        handle_timers(p);
        dispatch(p);
    }
    if (p->use_forkserver)
        wp__forkserver_stop(&p->fs);
    pthread_mutex_lock(&p->stop_mu);
    p->stop.stopped = true;
    pthread_cond_broadcast(&p->stop_cv);
    pthread_mutex_unlock(&p->stop_mu);
    return NULL;
}

/* ------------------------------------------------------------- public API */

static int normalize_options(wp_pool_options *o, const wp_pool_options *in)
{
    *o = in != NULL ? *in : (wp_pool_options){ 0 };
    if (o->start_method != WP_START_FORKSERVER && o->start_method != WP_START_FORK)
        return WP_EINVAL;
    if (o->workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (o->workers > MAX_WORKERS || o->queue_capacity > (1u << 30))
        return WP_EINVAL;
    if (o->max_message == 0)
        o->max_message = DEFAULT_MAX_MESSAGE;
    if (o->start_timeout_ms < 0)
        return WP_EINVAL;
    if (o->start_timeout_ms == 0)
        o->start_timeout_ms = DEFAULT_START_TIMEOUT_MS;
    if (o->max_message > ((size_t)1 << 40))
        return WP_EINVAL;
    return 0;
}

static void pool_free(wp_pool *p)
{
    if (p->slots != NULL)
        for (unsigned i = 0; i < p->opts.workers; i++)
            wp__frame_reader_reset(&p->slots[i].in);
    wp__queue_destroy(&p->queue);
    pthread_mutex_destroy(&p->stop_mu);
    pthread_cond_destroy(&p->stop_cv);
    if (p->shared != NULL)
        munmap(p->shared, sizeof *p->shared * p->opts.workers);
    free(p->slots);
    free(p->pfds);
    free(p);
}

static int start_dispatcher(wp_pool *p)
{
    /* Signals go to the program's threads, never to the dispatcher; a
       blocked SIGPIPE turns a write to a dead worker into EPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, dispatcher_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int wp_pool_create(wp_pool **out, const wp_pool_options *opts)
{
    if (out == NULL)
        return WP_EINVAL;
    *out = NULL;
    wp_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return WP_ENOMEM;
    int rc = normalize_options(&p->opts, opts);
    if (rc == 0)
        rc = wp__fd_budget(FDS_FIXED + FDS_PER_WORKER * p->opts.workers);
    if (rc < 0) {
        free(p);
        return rc;
    }
    rc = wp__queue_init(&p->queue, p->opts.queue_capacity);
    if (rc < 0) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->stop_mu, NULL);
    pthread_cond_init(&p->stop_cv, NULL);
    atomic_init(&p->cancels, NULL);
    atomic_init(&p->stop.callers, 0);
    atomic_init(&p->closing, false);
    atomic_init(&p->grace_deadline, -1);
    p->held_tail = &p->held;
    p->owner = wp__getpid();
    /* Shared with every worker; mapped before the fork server is forked. */
    size_t shared_len = sizeof *p->shared * p->opts.workers;
    p->shared = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p->shared == MAP_FAILED) {
        p->shared = NULL;
        pool_free(p);
        return WP_ENOMEM;
    }
    p->wcfg = (worker_config){
        .shared = p->shared,
        .slots = p->opts.workers,
        .max_message = p->opts.max_message,
        .max_tasks = p->opts.max_tasks_per_worker,
        .memory_limit = p->opts.worker_memory_limit,
        .init = p->opts.worker_init,
        .init_ctx = p->opts.worker_init_ctx,
    };
    p->slots = calloc(p->opts.workers, sizeof *p->slots);
    p->pfds = calloc(2 + 3 * (size_t)p->opts.workers, sizeof *p->pfds);
    if (p->slots == NULL || p->pfds == NULL) {
        pool_free(p);
        return WP_ENOMEM;
    }
    for (unsigned i = 0; i < p->opts.workers; i++) {
        p->slots[i].h = (worker_handle){ .pid = 0, .task_fd = -1, .result_fd = -1, .pidfd = -1 };
        p->slots[i].shared = &p->shared[i];
        wp__frame_reader_init(&p->slots[i].in);
    }
    p->use_forkserver = p->opts.start_method == WP_START_FORKSERVER;
    if (p->use_forkserver && wp__forkserver_start(&p->fs, &p->wcfg) < 0) {
        pool_free(p);
        return WP_ESPAWN;
    }
    if (start_dispatcher(p) != 0) {
        if (p->use_forkserver)
            wp__forkserver_stop(&p->fs);
        pool_free(p);
        return WP_ESPAWN;
    }
    *out = p;
    return 0;
}

bool wp__on_dispatcher(void)
{
    return dispatching != NULL;
}

bool wp__pool_must_not_wait(const wp_pool *p)
{
    return dispatching == p || wp__getpid() != p->owner;
}

unsigned wp__pool_workers(const wp_pool *p)
{
    return p->opts.workers;
}

size_t wp__pool_max_message(const wp_pool *p)
{
    return p->opts.max_message;
}

bool wp__pool_closing(wp_pool *p)
{
    return atomic_load(&p->closing);
}

int wp_pool_shutdown(wp_pool *pool, int64_t grace_ms)
{
    if (pool == NULL)
        return WP_EINVAL;
    wp__stop_enter(&pool->stop);
    if (wp__pool_must_not_wait(pool)) {
        wp__stop_leave(&pool->stop_mu, &pool->stop_cv, &pool->stop);
        return WP_EBUSY;
    }
    int64_t deadline = wp__deadline_after(grace_ms < 0 ? -1 : grace_ms);
    pthread_mutex_lock(&pool->stop_mu);
    atomic_store(&pool->grace_deadline,
                 wp__grace_deadline(!atomic_load(&pool->closing),
                                    atomic_load(&pool->grace_deadline), deadline));
    atomic_store(&pool->closing, true);
    wp__queue_close(&pool->queue);
    wp__queue_kick(&pool->queue);
    wp__await_stop(&pool->stop_mu, &pool->stop_cv, &pool->stop, pool->thread);
    return 0;
}

void wp_pool_destroy(wp_pool *pool)
{
    if (pool == NULL || wp_pool_shutdown(pool, -1) != 0)
        return;
    /* Shutdowns other threads began may still be on their way out. */
    wp__await_callers(&pool->stop_mu, &pool->stop_cv, &pool->stop);
    pool_free(pool);
}

int wp_pool_get_stats(wp_pool *pool, wp_pool_stats *out)
{
    if (pool == NULL || out == NULL)
        return WP_EINVAL;
    const pool_counters *n = &pool->n;
    *out = (wp_pool_stats){
        .submitted = atomic_load(&n->submitted),
        .succeeded = atomic_load(&n->succeeded),
        .failed = atomic_load(&n->failed),
        .cancelled = atomic_load(&n->cancelled),
        .timed_out = atomic_load(&n->timed_out),
        .crashed = atomic_load(&n->crashed),
        .retried = atomic_load(&n->retried),
        .workers_started = atomic_load(&n->workers_started),
        .queued = wp__queue_count(&pool->queue) + atomic_load(&n->held),
        .running = atomic_load(&n->running),
        .workers_alive = atomic_load(&n->alive),
    };
    return 0;
}

static int check_task_options(const wp_task_options *o)
{
    if (o->timeout_ms < 0 || (o->flags & ~(unsigned)(WP_TASK_NOWAIT | WP_TASK_SHIELD)) != 0)
        return WP_EINVAL;
    return 0;
}

/* One task of wp_submit or wp_submit_many, its arguments checked. */
static int submit_one(wp_pool *pool, wp_task_fn fn, const void *arg, size_t arg_len,
                      const wp_task_options *opts, bool nowait, wp_future **out)
{
    if (arg_len > pool->opts.max_message)
        return WP_E2BIG;
    task *t = calloc(1, sizeof *t);
    if (t == NULL || (arg_len > 0 && (t->arg = malloc(arg_len)) == NULL)) {
        free(t);
        return WP_ENOMEM;
    }
    if (arg_len > 0)
        memcpy(t->arg, arg, arg_len);
    t->arg_len = arg_len;
    t->fn = fn;
    t->pool = pool;
    t->opts = *opts;
    t->slot = -1;
    wp__future_init(&t->future, &task_ops);
    if (out != NULL)
        wp_future_retain(&t->future);

    atomic_fetch_add(&pool->n.submitted, 1);
    int rc = wp__queue_push(&pool->queue, t, nowait);
    if (rc < 0) {
        atomic_fetch_sub(&pool->n.submitted, 1);
        if (out != NULL)
            wp_future_release(&t->future);
        wp_future_release(&t->future);
        return rc;
    }
    if (out != NULL)
        *out = &t->future;
    return 0;
}

/* The checks wp_submit and wp_submit_many share: WP_EINVAL, WP_ESHUTDOWN
   or 0, and whether pushes must not block. */
static int submit_check(wp_pool *pool, wp_task_fn fn, const wp_task_options *opts, bool *nowait)
{
    if (pool == NULL || fn == NULL || check_task_options(opts) < 0)
        return WP_EINVAL;
    if (wp__getpid() != pool->owner)
        return WP_ESHUTDOWN; /* a worker's copy of the pool runs nothing */
    /* On a dispatcher thread (a done-callback) a full queue may only drain
       through this very thread: answer WP_EAGAIN rather than wait. */
    *nowait = (opts->flags & WP_TASK_NOWAIT) != 0 || wp__on_dispatcher();
    return 0;
}

static const wp_task_options default_task_options;

int wp_submit(wp_pool *pool, wp_task_fn fn, const void *arg, size_t arg_len,
              const wp_task_options *opts, wp_future **out)
{
    if (out != NULL)
        *out = NULL;
    if (opts == NULL)
        opts = &default_task_options;
    bool nowait;
    int rc = submit_check(pool, fn, opts, &nowait);
    if (rc == 0 && arg == NULL && arg_len > 0)
        rc = WP_EINVAL;
    return rc < 0 ? rc : submit_one(pool, fn, arg, arg_len, opts, nowait, out);
}

int wp_submit_many(wp_pool *pool, wp_task_fn fn, const wp_item *items, size_t n,
                   const wp_task_options *opts, wp_future **out, size_t *accepted)
{
    if (accepted != NULL)
        *accepted = 0;
    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = NULL;
    if (opts == NULL)
        opts = &default_task_options;
    bool nowait;
    int rc = submit_check(pool, fn, opts, &nowait);
    if (rc == 0 && items == NULL && n > 0)
        rc = WP_EINVAL;
    /* Task by task: the queue carries them to the dispatcher, which writes
       every task it has for a worker in one go, so items travel and run
       together without a chunk size. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (items[i].data == NULL && items[i].len > 0)
            rc = WP_EINVAL;
        else
            rc = submit_one(pool, fn, items[i].data, items[i].len, opts, nowait,
                            out != NULL ? &out[i] : NULL);
        if (rc == 0 && accepted != NULL)
            *accepted = i + 1;
    }
    return rc;
}
