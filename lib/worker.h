/*
 * worker.h — worker processes: how one is forked with its two pipes, and the
 * loop it runs (DESIGN §1 step 3, §2).  Both start methods use
 * wp__worker_spawn: the dispatcher itself (WP_START_FORK) or the fork
 * server (WP_START_FORKSERVER).
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
    bool   failed;    /* wp_buf_fail was called */
    int    code;
    char   message[WP_BUF_MESSAGE_MAX];
};

/* Exit statuses a worker uses on its own, so the pool can say why. */
enum {
    WORKER_EXIT_INIT_FAILED = 120, /* worker_init returned non-zero */
    WORKER_EXIT_BAD_FRAME   = 121, /* the pool sent something it cannot read */
    WORKER_EXIT_SETUP       = 122  /* could not set itself up (pipes, limits) */
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
 * the task back.  Both are compare-and-swap from OFFERED: exactly one side
 * wins.  Before its swap the worker records when it started, so deadlines
 * count from the real start (docs/ARCHITECTURE.md, "The window").
 */
#define WINDOW_MAX 32

enum { CLAIM_OFFERED = 1, CLAIM_STARTED = 2, CLAIM_SKIPPED = 3 };
#define CLAIM(id, state) (((uint64_t)(id) << 2) | (uint64_t)(state))

typedef struct worker_shared {
    atomic_uint_fast64_t claim[WINDOW_MAX];       /* CLAIM(id, ...), 0 = position free */
    _Atomic int64_t      started_us[WINDOW_MAX];  /* CLOCK_MONOTONIC, written before STARTED */
} worker_shared;

/* Swap the claim word from CLAIM_OFFERED to `to` for task id: false if the
   other side got there first. */
static inline bool wp__claim(atomic_uint_fast64_t *word, uint64_t id, int to)
{
    uint_fast64_t offered = CLAIM(id, CLAIM_OFFERED);
    return atomic_compare_exchange_strong(word, &offered, CLAIM(id, to));
}

typedef struct worker_config {
    worker_shared *shared;  /* one per slot */
    unsigned slots;
    size_t   max_message;
    unsigned max_tasks;     /* exit cleanly after this many; 0 = never */
    size_t   memory_limit;  /* RLIMIT_AS; 0 = none */
    int    (*init)(void *ctx);
    void    *init_ctx;
} worker_config;

typedef struct worker_handle {
    pid_t pid;
    int   task_fd;    /* pool writes TASK frames here (non-blocking) */
    int   result_fd;  /* pool reads RESULT/FAILURE/READY here (non-blocking) */
    int   pidfd;      /* -1 where the kernel has no pidfd */
} worker_handle;

/* Fork the worker for slot.  0, or -errno if pipes or fork failed.  In the
   child this never returns. */
int wp__worker_spawn(const worker_config *cfg, unsigned slot, worker_handle *out) WP_INTERNAL;

#endif
