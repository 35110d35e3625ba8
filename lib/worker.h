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
 * One per worker slot, in memory shared with every worker (mapped before the
 * fork server is forked).  The pool may write a second task into a busy
 * worker's pipe so the worker never waits for the dispatcher; to take such a
 * task back it must be sure the worker has not started it.  Both sides claim
 * a task id in one word, by compare-and-swap: the worker swaps in
 * CLAIM_STARTED(id) unless it finds CLAIM_SKIP(id), the pool swaps in
 * CLAIM_SKIP(id) unless it finds CLAIM_STARTED(id).  Exactly one wins.
 */
typedef struct worker_shared {
    atomic_uint_fast64_t claim;
    char pad[64 - sizeof(atomic_uint_fast64_t)];
} worker_shared;

#define CLAIM_STARTED(id) ((uint64_t)(id) << 1)
#define CLAIM_SKIP(id)    (((uint64_t)(id) << 1) | 1u)

/* Claim task id for `want` (CLAIM_STARTED or CLAIM_SKIP of id); false if
   the other side claimed it first. */
static inline bool wp__claim(worker_shared *ws, uint64_t want, uint64_t rival)
{
    uint_fast64_t cur = atomic_load(&ws->claim);
    do
        if (cur == rival)
            return false;
    while (!atomic_compare_exchange_weak(&ws->claim, &cur, want));
    return true;
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
