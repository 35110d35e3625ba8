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

#include "util.h"

/* A task's result: the bytes it appended, or why it failed.  Lives in the
   worker; the batcher's trampoline gives each item one of its own. */
#define WP_BUF_MESSAGE_MAX 1024
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
 * task back, the pool stores its id in `skip` and then reads `started`; the
 * worker stores the id in `started` and then reads `skip`.  Both sequentially
 * consistent, so either the worker sees the skip and does not run the task,
 * or the pool sees that it started: never both, never neither.
 */
typedef struct worker_shared {
    atomic_uint_fast64_t started;  /* id of the task the worker took up last */
    atomic_uint_fast64_t skip;     /* id of a task it must not run */
    char pad[64 - 2 * sizeof(atomic_uint_fast64_t)];
} worker_shared;

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
