/* SPDX-License-Identifier: MIT */
/*
 * worker.h — worker processes: how one is forked with its two pipes, and the
 * loop it runs (docs/ARCHITECTURE.md, "Path of a task" step 3, "Processes").
 * Both start methods use wp__worker_spawn: the dispatcher itself
 * (WP_START_FORK) or the fork server (WP_START_FORKSERVER).
 */
#ifndef WP_WORKER_H
#define WP_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "frame.h"
#include "util.h"

/* A task's result: the bytes it appended, or why it failed.  Lives in the
   worker; the batcher's trampoline gives each item one of its own. */
#define WP_BUF_MESSAGE_MAX FRAME_MESSAGE_MAX /* a message must fit a FAILURE frame */
struct wp_buf {
    char  *data;
    size_t len, cap;
    size_t max;       /* max_message */
    bool   overflow;  /* an append would have crossed max */
    bool   failed;    /* wp_buf_fail or wp__buf_fail_outcome was called */
    int    code;      /* wp_buf_fail: the task's own code */
    int    outcome;   /* wp__buf_fail_outcome: a WP_E* code, 0 = none */
    char   message[WP_BUF_MESSAGE_MAX];
};

/* For the library's own task functions (the batcher's trampoline): fail
   with a library outcome — the future fails with `outcome` (WP_EPROTO,
   WP_ENOMEM), not WP_ETASK with a code of the task's, so it cannot be
   taken for the user function's own failure.  Returns outcome. */
int wp__buf_fail_outcome(wp_buf *b, int outcome, const char *message) WP_INTERNAL;

/* The FAILURE outcomes a worker may send (docs/ARCHITECTURE.md, "Wire
   format"), besides WP_ECANCELED for a task it skipped. */
static inline bool wp__worker_outcome(int error)
{
    return error == WP_ETASK || error == WP_E2BIG || error == WP_ENOFUNC ||
           error == WP_EPROTO || error == WP_ENOMEM;
}

/* Exit statuses a worker uses on its own, so the pool can say why.
   WORKER_EXIT_RECYCLED is the one that is no failure: the worker answered
   its last task, found its resident set above worker_rss_limit and left
   before claiming another (docs/ARCHITECTURE.md, "Recycling by resident
   set").  The pool takes it for that only when no task of the worker was
   running: a task that calls _exit(WORKER_EXIT_RECYCLED) is a crash. */
enum {
    WORKER_EXIT_INIT_FAILED = 120, /* worker_init returned non-zero */
    WORKER_EXIT_BAD_FRAME   = 121, /* the pool sent something it cannot read */
    WORKER_EXIT_SETUP       = 122, /* could not set itself up (pipes, limits) */
    WORKER_EXIT_RECYCLED    = 123  /* past rss_limit after a task: replace me */
};

/*
 * The window: the pool may write up to WINDOW_MAX task frames into a
 * worker's pipe ahead of the one it runs, so the worker goes from task to
 * task without waiting for the dispatcher, and one write carries many.
 * Every task not yet started stays exactly takeable-back.  Each frame names
 * a claim word (its position in the window) in memory shared with the
 * worker (mapped before any fork).  The pool stores CLAIM_OFFERED(id) there
 * before writing the frame; the worker swaps it for CLAIM_STARTED(id) just
 * before running the task, the pool swaps it for CLAIM_SKIPPED(id) to take
 * the task back, and a worker that reaches a task past its queue deadline
 * swaps it for CLAIM_EXPIRED(id) instead of starting it.  All are
 * compare-and-swap from OFFERED: exactly one side wins.  Before its swap the worker records when it started, so deadlines
 * count from the real start (docs/ARCHITECTURE.md, "The window").
 */
#define WINDOW_MAX 32

/* What each of a worker's pipes is asked to hold (F_SETPIPE_SZ, best
   effort): large arguments move in fewer wake-ups. */
#define WORKER_PIPE_BYTES (1 << 20)

enum { CLAIM_OFFERED = 1, CLAIM_STARTED = 2, CLAIM_SKIPPED = 3, CLAIM_EXPIRED = 4 };
#define CLAIM_STATE_BITS 3
#define CLAIM(id, state) (((uint64_t)(id) << CLAIM_STATE_BITS) | (uint64_t)(state))
#define CLAIM_STATE(word) ((word) & ((1u << CLAIM_STATE_BITS) - 1))
#define CLAIM_ID(word)    ((word) >> CLAIM_STATE_BITS)

typedef struct worker_shared {
    atomic_uint_fast64_t claim[WINDOW_MAX];       /* CLAIM(id, ...), 0 = position free */
    _Atomic int64_t      started_us[WINDOW_MAX];  /* CLOCK_MONOTONIC, written before STARTED */
} worker_shared;

/* Swap the claim word from CLAIM_OFFERED to `to` for task id: false if the
   other side got there first.  seq_cst, so both a release (of what the
   swapper wrote before: a start time) and an acquire.  The word is in
   memory shared between processes: lock-free 64-bit atomics work across
   them (a static assert in worker.c checks they are lock-free). */
static inline bool wp__claim(atomic_uint_fast64_t *word, uint64_t id, int to)
{
    uint_fast64_t offered = CLAIM(id, CLAIM_OFFERED);
    return atomic_compare_exchange_strong(word, &offered, CLAIM(id, to));
}

/* Slots a pool may have, and so claim-word sets a worker may be given. */
#define WORKER_SLOTS_MAX 1024

struct image;

typedef struct worker_config {
    worker_shared *shared;  /* one per slot */
    unsigned slots;
    size_t   max_message;
    unsigned max_tasks;     /* exit cleanly after this many; 0 = never */
    size_t   memory_limit;  /* RLIMIT_AS; 0 = none */
    size_t   rss_limit;     /* leave (WORKER_EXIT_RECYCLED) after a task that ends with
                               the resident set above this many bytes; 0 = none */
    int    (*init)(void *ctx);
    void    *init_ctx;
    struct image *image;    /* WP_START_EXEC and relayed: the pool's image, to find its
                               functions in this one (image.h); NULL when forked from the
                               pool: addresses are shared */
    bool     relayed;       /* the pool is another process, on another rank (lib/relay.h):
                               it claims each task itself as it sends it, so the worker
                               runs every frame it reads, shares no claim words and sees
                               no queue deadline */
} worker_config;

typedef struct worker_handle {
    pid_t pid;
    int   task_fd;    /* pool writes TASK frames here (non-blocking) */
    int   result_fd;  /* pool reads RESULT/FAILURE/READY here (non-blocking) */
    int   pidfd;      /* -1 where the kernel has no pidfd */
} worker_handle;

/*
 * A task's processes belong to its worker.  Every worker leads a process
 * group of its own; whoever reaps a worker (the fork server, or the pool
 * under WP_START_FORK) kills its group first, while the worker's pid — the
 * group's id — cannot be anyone else's yet, and a deliberate kill (deadline,
 * cancel, retirement, shutdown) takes the group at once.  A process that
 * leaves the group (setsid) escapes that, so each worker is the subreaper
 * of its tasks' processes (an orphan among them, say a double-forked
 * daemon, becomes the worker's child, not init's), and the fork server is
 * the subreaper of its workers: when a worker dies, all of that comes to
 * the server.  So every child of the server that is not a worker is a stray
 * from a dead worker; the server kills them, and what comes to it as they
 * die, whenever a worker dies and when it exits, until none is left.  It
 * exits, taking everything down, when the pool stops or the owner dies.
 *
 * What tasks see of this: wait() in a task may also return (or wait for)
 * orphans an earlier task on that worker left behind, and those that end
 * stay zombies of the worker until it is replaced.
 *
 * WP_START_FORK cannot give all of that.  The program itself is the
 * workers' parent, and a library must neither make it a subreaper (that
 * changes where the program's own orphans go) nor leave a process behind to
 * watch it.  So under WP_START_FORK:
 * - a process a task moved out of its worker's group (setsid, setpgid)
 *   outlives the worker: it goes to init, or to the program's subreaper;
 * - when the owner dies, its workers die with it (PR_SET_PDEATHSIG), but
 *   what their tasks forked lives on: nobody is left to kill the groups;
 * - a program that reaps the workers itself (SIGCHLD ignored, SA_NOCLDWAIT,
 *   waitpid(-1)) takes their exit status: only a kernel that keeps it for
 *   the pidfd's holder (Linux 6.15) still gives it; elsewhere the task fails
 *   with WP_ECRASHED, code 0, and a message saying what happened.  Such a
 *   program also makes kills by number unsafe against pid reuse: without
 *   pidfd the pool still kills the worker and its group by number; with a
 *   pidfd but before Linux 6.9, it kills the group by number only while it
 *   sees the worker unreaped, so that group may then survive;
 * - without pidfd the pool learns that a worker died from end-of-file on
 *   its pipe, which a process its task forked can hold open.
 */

/* In a new worker process, whoever started it: become a clean worker
   (its own process group, gone with its parent, subreaper of its tasks,
   default signals; with close_others every descriptor but stdio and its
   two pipes closed) and run the worker loop.  Never returns. */
_Noreturn void wp__worker_become(const worker_config *cfg, unsigned slot, pid_t parent,
                                 int task_fd, int result_fd, bool close_others) WP_INTERNAL;

/* In a worker: the function or data that is at `addr` in the pool's
   process, here — the same address when forked, found in the image when
   exec'd (image.h) — or NULL, with *why saying why if why is not NULL. */
void *wp__worker_code(uint64_t addr, bool code, const char **why) WP_INTERNAL;

/* A worker's two pipes, O_CLOEXEC, made big: 0, or WP_ESPAWN with
   *os_error (nothing left open). */
int wp__worker_pipes(int to_worker[2], int from_worker[2], int *os_error) WP_INTERNAL;
/* *out for a started worker: the pool's two ends made non-blocking, its
   pidfd (-1 where the kernel has none). */
void wp__worker_handle_of(worker_handle *out, pid_t pid, int task_fd, int result_fd) WP_INTERNAL;

/* Fork the worker for slot.  0, or WP_ESPAWN with *os_error the errno value
   of the pipe2() or fork() that failed.  In the child this never returns. */
int wp__worker_spawn(const worker_config *cfg, unsigned slot, worker_handle *out,
                     int *os_error) WP_INTERNAL;

#endif
