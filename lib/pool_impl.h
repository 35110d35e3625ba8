/* SPDX-License-Identifier: MIT */
/*
 * pool_impl.h — what the parts of the pool share: the task record, the
 * worker slot with its window, the pool itself, and the functions one part
 * calls in another.  The parts (docs/ARCHITECTURE.md, "What each file
 * owns"):
 *
 *   pool.c      the public API: create, shutdown, destroy, stats, submit
 *   task.c      task records: settle, retry, cancels, the counters
 *   line.c      the line: waiting tasks by priority, in order; queue deadlines
 *   window.c    a worker's window of tasks: sending, taking back
 *   window_io.c its pipes: writing the window's frames, reading answers
 *   slot.c      a worker slot's life: starting, stopping, killing and
 *               reaping its worker
 *   schedule.c  who gets which task, and the timers
 *   dispatch.c  the dispatcher thread's poll loop, the fork server's
 *               events, descriptors closed under the pool
 *   resize.c    wp_pool_resize, and the dispatcher's side of it: slots
 *               coming into use and retiring
 *
 * Everything here but the queue, the cancel stack, the counters and the
 * stop state belongs to the dispatcher thread alone, so it takes no lock
 * (docs/ARCHITECTURE.md, "Threads and locks").
 */
#ifndef WP_POOL_IMPL_H
#define WP_POOL_IMPL_H

#include <assert.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "exec.h"
#include "forkserver.h"
#include "frame.h"
#include "future.h"
#include "list.h"
#include "pool.h"
#include "queue.h"
#include "worker.h"

#define MAX_WORKERS              1024
#define DEFAULT_MAX_MESSAGE      ((size_t)64 << 20)
#define BACKOFF_FIRST_MS         10
#define BACKOFF_MAX_MS           2000
#define FAILURES_BEFORE_ESPAWN   3     /* consecutive start failures, no worker alive */
#define HEALTHY_AFTER_MS         1000  /* a worker alive this long did start well */
#define DEFAULT_START_TIMEOUT_MS 10000 /* READY must come within this */
#define KILL_HOW_MAX             96    /* why the pool killed a worker */
#define FDS_PER_WORKER           3     /* task pipe, result pipe, pidfd */
#define FDS_FIXED                16    /* wake eventfd, fork-server socket, a spawn reply's fds, slack */
#define POLL_CAP_US              (60 * 1000000LL) /* longest single sleep: a safety net */
#define RUN_SAMPLE_MAX_US        (60 * 1000000LL) /* a reported run time counts at most this
                                                     much in the average (a task can write any
                                                     number in its worker's answers) */
#define MAX_MESSAGE_LIMIT        ((size_t)1 << 40) /* largest max_message accepted */

/* The dispatcher's poll set (dispatch.c), rebuilt every turn: the queue's
   eventfd, the fork server's socket when there is one, then per worker
   its result pipe, its task pipe while frames wait to be written, and
   (WP_START_FORK) its pidfd — so at most PFD_FIXED + PFD_PER_WORKER *
   workers entries. */
enum { PFD_WAKE = 0, PFD_FORKSERVER = 1, PFD_FIXED = 2 };
#define PFD_PER_WORKER 3

/*
 * Window sizing (docs/ARCHITECTURE.md, "The window"): a worker gets as many
 * tasks ahead as it runs in about WINDOW_BUDGET_US, by the pool's running
 * average of task run times, at least 2 and at most WINDOW_MAX.  Behind a
 * task that has run HOL_US, all but one waiting task are taken back for
 * other workers (and an idle worker steals that one).
 */
#define WINDOW_BUDGET_US 200
#define WINDOW_MIN       2
#define HOL_US           1000
#define HOL_KEEP         2     /* window entries left to a head past HOL_US: it and one behind */
#define WINDOW_BYTES     WORKER_PIPE_BYTES /* argument bytes a window holds before it takes
                                      no more (what one pipe holds): big tasks spread over workers */
#define RUN_AVG_SHIFT    3     /* running average: new = old + (sample - old) / 8 */
#define READ_BUF_BYTES   (64 * 1024) /* result bytes the dispatcher reads at a time */
#define WRITE_IOVS       64    /* iovecs per writev: 32 frames */
#define ARG_INLINE_MAX   64    /* arguments this small share the task's allocation */

/* Priority levels: wp_task_options.priority - WP_PRIORITY_MIN, so 0 is the
   lowest and LEVELS - 1 the highest. */
#define LEVELS (WP_PRIORITY_MAX - WP_PRIORITY_MIN + 1)
/* The queue rank of a task with a queue deadline (queue.h, "Ranks"): above
   every level, so that it always wakes the dispatcher to set its timer. */
#define RANK_DEADLINE LEVELS

/* task.expiring_at of a task in no deadline heap. */
#define NOT_EXPIRING SIZE_MAX

/* What a task keeps of its wp_task_options (not the reserved words). */
typedef struct task_options {
    int64_t  timeout_ms;
    int64_t  queue_timeout_ms;
    unsigned retries;
    unsigned retry_delay_ms;
    unsigned flags;
} task_options;

typedef struct task {
    wp_future       future;       /* first: a task is its future */
    wp_pool        *pool;
    wp_task_fn      fn;
    void           *arg;
    size_t          arg_len;
    task_options    opts;
    uint64_t        id;           /* this attempt's id on the wire */
    unsigned        attempts;     /* attempts started */
    int             slot;         /* in pool->slots[slot]'s window, or -1 */
    unsigned        wires;        /* window entries whose frame of it is not fully written */
    bool            arg_inline;   /* arg lives in this record (small ones): never freed alone */
    bool            queued;       /* still counted by the queue: in its ring or in a line */
    unsigned        level;        /* priority level, 0 .. LEVELS - 1 */
    uint64_t        seq;          /* its place in the line, given as it left the queue */
    int64_t         expire_us;    /* queue deadline: not started by then, never (µs); 0 = none */
    size_t          expiring_at;  /* its place in pool->expiring, or NOT_EXPIRING */
    int64_t         due_ms;       /* held: earliest start (retry delay) */
    wp_list         held_node;    /* in a line or held list of the pool, or on no list */
    struct task    *cancel_next;  /* in the cancel stack (not a wp_list: see task_cancel) */
} task;

/* a is ahead of b in the line: higher priority, or the same and earlier.
   The one order of waiting tasks, in lines, held lists and windows. */
static inline bool wp__task_before(const task *a, const task *b)
{
    return a->level != b->level ? a->level > b->level : a->seq < b->seq;
}

/* One frame sent to a worker and not answered yet. */
typedef struct win_entry {
    task        *t;        /* holds a reference; still its frame's task even when skipped */
    bool         skipped;  /* taken back: the worker will answer "skipped" */
    unsigned     pos;      /* its claim word in the worker's shared memory */
    frame_header hdr;      /* the TASK frame (hdr.task_id: the id the answer carries) */
} win_entry;

enum slot_state { SLOT_EMPTY, SLOT_STARTING, SLOT_IDLE, SLOT_BUSY, SLOT_STOPPING };

typedef struct slot {
    enum slot_state state;
    worker_handle   h;            /* pid 0: none (yet) */
    worker_shared  *shared;       /* claim words (worker.h) */
    win_entry       win[WINDOW_MAX];
    unsigned        head, count;  /* entries win[head .. head+count) mod WINDOW_MAX, oldest first */
    unsigned        written;      /* of those, how many frames are fully written (from head) */
    size_t          out_done;     /* bytes written of the next frame */
    uint32_t        pos_used;     /* claim positions in use, one bit each */
    unsigned        live;         /* entries not skipped */
    unsigned        live_at[LEVELS]; /* of those, how many of each priority level */
    size_t          bytes;        /* argument bytes of the window's frames */
    frame_reader    in;
    int64_t         deadline_us;  /* for the head task: -1 = none */
    int64_t         head_at_us;   /* when the head entry became the head */
    int64_t         head_start_us; /* its start as first seen, -1 = not yet */
    int64_t         spawn_at;     /* EMPTY: earliest time to start a worker */
    int64_t         ready_at;
    int64_t         start_deadline; /* STARTING: ms by which READY must come */
    unsigned        tasks_done;   /* tasks answered, as the worker counts them */
    bool            deliberate;   /* STOPPING: we stopped it, it did not die */
    bool            leaving;      /* relayed: its last answer said it leaves (FRAME_LEAVING) */
    bool            kill_again;   /* its kill found the fork server's socket full: ask again */
    char            kill_how[KILL_HOW_MAX]; /* STOPPING: how the pool killed it, "" = it did not */
    int             pi_read, pi_write, pi_pid; /* indices in pool->pfds, -1 */
} slot;

/*
 * The counters behind wp_pool_get_stats.  Each is a seq_cst read-modify-
 * write on its own, and a reader takes a snapshot of independent counts,
 * not one consistent state.  What the header promises — a future's outcome
 * is counted before the future is seen settled — comes from the settling
 * thread's own order: task_settling (the count) runs before
 * wp__future_settle's release store of the state, so whoever acquires the
 * settled state sees the count.  submitted is written by producers, the
 * rest by the dispatcher alone.
 */
typedef struct pool_counters {
    atomic_uint_fast64_t submitted, succeeded, failed, cancelled;
    atomic_uint_fast64_t timed_out, crashed, retried, workers_started, expired;
    atomic_uint_fast64_t workers_recycled; /* slot.c: left past worker_rss_limit */
    atomic_uint held, running, alive;
} pool_counters;

struct wp_pool {
    wp_pool_options opts;
    worker_config   wcfg;
    worker_shared  *shared;              /* MAP_SHARED, one per slot */
    wp_queue        queue;
    forkserver      fs;
    exec_start      exec;                /* WP_START_EXEC: what each worker's spawn passes on */
    bool            use_forkserver, fs_gone;
    bool            use_exec;
    bool            relayed;             /* workers on other ranks: fs is a relay (lib/relay.h) */
    void          (*relay_stop)(void *ctx); /* relayed: called once the pool is done with fs */
    void           *relay_ctx;
    bool            fs_full;             /* its socket refused a request: wait for POLLOUT */
    pid_t           owner;
    pthread_t       thread;

    /* Dispatcher-only state. */
    slot           *slots;
    struct pollfd  *pfds;
    char           *rbuf;                /* READ_BUF_BYTES: results read at a time */
    /* The line (line.c): tasks out of the queue and in no window. */
    wp_list         line[LEVELS];        /* per level: never sent yet, in submit order */
    wp_list         held[LEVELS];        /* per level: back from a window or waiting to retry, by seq */
    uint64_t        seq;                 /* the last place in the line given */
    unsigned        live_at[LEVELS];     /* every slot's live_at, summed */
    unsigned        stuck;               /* slots that may have a task behind a long head
                                            (schedule.c, unstick): counted each turn */
    task          **expiring;            /* min-heap by expire_us; each holds a reference */
    int64_t         dispatched_ms;       /* when wp__dispatch last looked at the line */
    size_t          expiring_n, expiring_cap;
    uint64_t        last_id;
    int64_t         run_avg_us;          /* running average of task run times */
    unsigned        start_failures;      /* consecutive */
    unsigned        poll_failures;       /* consecutive ppoll failures */
    int64_t         poll_retry_at;       /* after a ppoll failure: no worker starts before (ms) */
    bool            grace_spent;         /* past the grace, everything was cancelled */
    char            spawn_error[WP_MSG_MAX]; /* why the last start failed */

    _Atomic(task *) cancels;             /* lock-free stack of cancel requests */

    atomic_bool     closing;
    _Atomic int64_t grace_deadline;      /* -1 = none */
    pthread_mutex_t stop_mu;
    pthread_cond_t  stop_cv;
    wp_stop         stop;                /* under stop_mu */

    pool_counters   n;

    /* Resizing (resize.c; docs/ARCHITECTURE.md, "Resizing").  slots, pfds
       and shared are mapped for MAX_WORKERS at create and touched only as
       slots come into use, so the worker count can change without moving
       them (the fork server and every worker share `shared` from create
       on).  opts.workers is the size asked at create, read there only;
       target is the size asked last, and the dispatcher applies it once
       per turn (wp__resize_apply): slots [0, want) are wanted, slots
       [want, nslots) retire. */
    _Atomic unsigned target;             /* workers asked for: create, then wp_pool_resize
                                            (stored under stop_mu) */
    unsigned        want;                /* dispatcher: target as last applied */
    unsigned        nslots;              /* dispatcher: slots that may be in use (past them all
                                            are EMPTY): the bound of every loop over slots */
    unsigned        slots_made;          /* dispatcher: slots initialised so far, ever */
};

/* ---------------------------------------------------------------- task.c */
/* Free t's argument once nothing needs it (settled, no frame of it being
   written), unless it lives in the record itself. */
void wp__task_drop_arg(task *t) WP_INTERNAL;
extern const future_ops wp__task_ops WP_INTERNAL;
/* Settle t for good and let go of the dispatcher's reference. */
void wp__task_settle(task *t, int error, int code, const char *msg, void *result,
                     size_t len) WP_INTERNAL;
/* An attempt ended: retry it if its options allow, or settle it. */
void wp__task_finish(wp_pool *p, task *t, int error, int code, const char *msg, void *result,
                     size_t len) WP_INTERNAL;
/* Shutting down, and the grace it allowed has run out. */
bool wp__grace_over(wp_pool *p, int64_t now_ms) WP_INTERNAL;
/* Cancel requests (any thread) and their handling (dispatcher). */
void wp__handle_cancels(wp_pool *p) WP_INTERNAL;

/* ---------------------------------------------------------------- line.c */
void wp__line_init(wp_pool *p) WP_INTERNAL;
/* Let go of the queue deadlines' references (the dispatcher ends). */
void wp__line_fini(wp_pool *p) WP_INTERNAL;
/* Take everything the queue holds into the lines, in submit order. */
void wp__line_drain(wp_pool *p) WP_INTERNAL;
/* Hold t, out of any window, until due_ms, in its place by seq. */
void wp__held_push(wp_pool *p, task *t, int64_t due_ms) WP_INTERNAL;
/* Take t out of the line or held list it is in. */
void wp__line_remove(wp_pool *p, task *t) WP_INTERNAL;
/* The task to start next (highest priority, then earliest; held ones due
   by now_ms), taken out of the line, or NULL.  Tasks past their queue
   deadline met on the way are settled WP_EEXPIRED. */
task *wp__next_task(wp_pool *p, int64_t now_ms) WP_INTERNAL;
/* The same task, left where it is. */
task *wp__line_peek(wp_pool *p, int64_t now_ms) WP_INTERNAL;
/* Settle t, in no line and no window, WP_EEXPIRED (it never started). */
void wp__task_expire(task *t) WP_INTERNAL;
/* Queue deadlines that have come: settle or take back their tasks. */
void wp__expire_due(wp_pool *p, int64_t now_us) WP_INTERNAL;
/* The next queue deadline (µs), -1 = none. */
int64_t wp__expire_next_us(const wp_pool *p) WP_INTERNAL;
/* The earliest due time of a held task (ms), -1 = none.  O(held). */
int64_t wp__held_next_due_ms(wp_pool *p, int64_t after_ms) WP_INTERNAL;
void wp__expiring_forget(wp_pool *p, task *t) WP_INTERNAL;

/* -------------------------------------------------------------- window.c */
/* Entry i of s's window, oldest first (i < s->count).  O(1). */
static inline win_entry *wp__entry_at(slot *s, unsigned i)
{
    assert(i < s->count);
    return &s->win[(s->head + i) % WINDOW_MAX];
}
/* The entry's frame is all written: its task no longer needs its argument
   for it. */
void wp__entry_wire_done(win_entry *e) WP_INTERNAL;
/* The worker answered the head: it leaves the window, the next is head. */
void wp__window_answered(slot *s) WP_INTERNAL;
/* How many more tasks the slot takes now (its window's room). */
unsigned wp__slot_room(const wp_pool *p, slot *s, int64_t now_us) WP_INTERNAL;
/* Append t to the window (written by wp__slot_write). */
void wp__slot_send(wp_pool *p, slot *s, task *t) WP_INTERNAL;
/* End t (in s's window) with error, disturbing no other task. */
void wp__stop_task(wp_pool *p, slot *s, task *t, int error, const char *msg) WP_INTERNAL;
/* End t with error only if its worker has not started it (a shield):
   true if it was taken back. */
bool wp__slot_take_back_task(wp_pool *p, slot *s, task *t, int error, const char *msg) WP_INTERNAL;
/* Take back the first task not started behind the head, if any (for an
   idle worker). */
task *wp__slot_steal(slot *s) WP_INTERNAL;
/* Before t joins s's window: take back the tasks not started there that
   are behind t in the line (wp__task_before), so that none starts before
   t.  True if any was taken back. */
bool wp__slot_yield(wp_pool *p, slot *s, const task *t) WP_INTERNAL;
/* The worker stops or died: tasks not started go back to the front of
   the line, in order; a started one ends with error, code and msg. */
void wp__window_resolve(wp_pool *p, slot *s, int error, int code, const char *msg) WP_INTERNAL;
/* Tasks behind a head that has run HOL_US go back for other workers. */
void wp__slot_unblock(wp_pool *p, slot *s, int64_t now_us) WP_INTERNAL;
/* The head task's start, from the worker's own clock reading as first
   seen (never later than the pool's clock then): -1 if it has not
   started. */
int64_t wp__slot_head_started(slot *s) WP_INTERNAL;
/* The head's task if it is live, else NULL. */
task *wp__slot_head_task(slot *s) WP_INTERNAL;
/* The first live task behind the head (the one a steal takes), or NULL. */
task *wp__slot_stealable(slot *s) WP_INTERNAL;
/* The newest live task a shutdown may cancel (not a shielded running
   head), or NULL. */
task *wp__slot_cancellable(slot *s) WP_INTERNAL;

/* ----------------------------------------------------------- window_io.c */
/* Write what the pipe takes of the window's unwritten frames. */
void wp__slot_write(wp_pool *p, slot *s) WP_INTERNAL;
/* Read and handle what the worker sent; true if a frame was handled. */
bool wp__slot_read(wp_pool *p, slot *s) WP_INTERNAL;

/* ---------------------------------------------------------------- slot.c */
void wp__slot_set_state(wp_pool *p, slot *s, enum slot_state to) WP_INTERNAL;
void wp__slot_start(wp_pool *p, slot *s) WP_INTERNAL;
void wp__slot_stop(wp_pool *p, slot *s, bool deliberate, int error, const char *msg,
                   const char *how) WP_INTERNAL;
void wp__slot_reaped(wp_pool *p, slot *s, int status) WP_INTERNAL;
void wp__slot_waitpid(wp_pool *p, slot *s, bool block) WP_INTERNAL;
void wp__start_failed(wp_pool *p, slot *s, const char *why) WP_INTERNAL;
/* The wait after the n-th failure in a row (n >= 1): BACKOFF_FIRST_MS,
   doubling, at most BACKOFF_MAX_MS. */
int64_t wp__backoff_ms(unsigned n) WP_INTERNAL;
void wp__slot_kill(wp_pool *p, slot *s) WP_INTERNAL;

/* ------------------------------------------------------------ schedule.c */
bool wp__spawn_broken(const wp_pool *p) WP_INTERNAL;
/* Give waiting tasks to workers; write what each worker got in one go. */
void wp__dispatch(wp_pool *p) WP_INTERNAL;
/* Deadlines, head-of-line, the shutdown grace, starting/stopping workers. */
void wp__handle_timers(wp_pool *p) WP_INTERNAL;
/* Microseconds until the next timer that can change something: -1 = none. */
int64_t wp__next_timer_us(wp_pool *p, bool hungry) WP_INTERNAL;
/* The queue rank from which a submit must wake a sleeping dispatcher. */
unsigned wp__wake_rank(const wp_pool *p) WP_INTERNAL;
/* Would the dispatcher take a task now? */
bool wp__hungry(const wp_pool *p) WP_INTERNAL;
/* Shutting down, nothing left to run, every worker gone. */
bool wp__finished(wp_pool *p) WP_INTERNAL;

/* -------------------------------------------------------------- resize.c */
/* The worker count 0 stands for: the online CPUs, at least 1. */
unsigned wp__online_cpus(void) WP_INTERNAL;
/* Is s a slot the pool no longer wants (past the size last applied)?  It
   gets no task, is not started, and stops once its window is empty. */
static inline bool wp__slot_retiring(const wp_pool *p, const slot *s)
{
    return (unsigned)(s - p->slots) >= p->want;
}
/* The dispatcher, once per turn (first thing in wp__handle_timers): apply
   the size last asked for.  O(slots in use). */
void wp__resize_apply(wp_pool *p) WP_INTERNAL;
/* s has nothing left to run (READY, or its window emptied): IDLE, or
   stopped if it retires. */
void wp__slot_idle(wp_pool *p, slot *s) WP_INTERNAL;

/* ------------------------------------------------------------ dispatch.c */
void *wp__dispatcher_main(void *arg) WP_INTERNAL;
/* Is this thread p's dispatcher? */
bool wp__is_dispatcher_of(const wp_pool *p) WP_INTERNAL;
void wp__read_forkserver(wp_pool *p) WP_INTERNAL;

#endif
