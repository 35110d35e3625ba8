/*
 * worker.h — worker processes: how one is forked with its two pipes, and the
 * loop it runs (DESIGN §1 step 3, §2).  Both start methods use
 * wp__worker_spawn: the dispatcher itself (WP_START_FORK) or the fork
 * server (WP_START_FORKSERVER).
 */
#ifndef WP_WORKER_H
#define WP_WORKER_H

#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* Exit statuses a worker uses on its own, so the pool can say why. */
enum {
    WORKER_EXIT_INIT_FAILED = 120, /* worker_init returned non-zero */
    WORKER_EXIT_BAD_FRAME   = 121, /* the pool sent something it cannot read */
    WORKER_EXIT_SETUP       = 122  /* could not set itself up (pipes, limits) */
};

typedef struct worker_config {
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

/* Fork one worker.  0, or -errno if pipes or fork failed.  In the child this
   never returns. */
int wp__worker_spawn(const worker_config *cfg, worker_handle *out) WP_INTERNAL;

#endif
