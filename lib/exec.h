/* SPDX-License-Identifier: MIT */
/*
 * exec.h — WP_START_EXEC: workers that are fresh images of the program,
 * started with posix_spawn and exec, never forked from it
 * (docs/ARCHITECTURE.md, "Exec start").
 *
 * The pool side prepares once, at wp_pool_create: the claim words in a
 * memfd (an exec'd worker cannot inherit an anonymous mapping), and a
 * second memfd holding the worker's configuration and the pool's image
 * description (image.h).  Each start is one posix_spawn of
 * /proc/self/exe: the worker's two pipe ends and the two memfds land on
 * descriptors EXEC_FD_TASK .. EXEC_FD_CONFIG, nothing else is inherited,
 * every signal is at its default and none blocked, and the worker leads a
 * process group of its own.  An environment variable, EXEC_ROLE_ENV, names
 * its slot and the pool's pid.
 *
 * The worker side is a constructor: it runs as the new image is loaded,
 * before main, so a program needs no change.  Without EXEC_ROLE_ENV (every
 * ordinary start of the program) it returns at once; with it, it becomes
 * the worker if the pool's pid named there is really this process's
 * parent, and exits otherwise: it never returns.
 */
#ifndef WP_EXEC_H
#define WP_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "worker.h"

#define EXEC_ROLE_ENV "WORKERPOOL_EXEC_WORKER"

/* Where the worker finds what the pool gave it. */
enum { EXEC_FD_TASK = 3, EXEC_FD_RESULT, EXEC_FD_SHARED, EXEC_FD_CONFIG, EXEC_FD_FIRST_FREE };

#define EXEC_CONFIG_MAGIC   0x43455057u /* "WPEC" */
#define EXEC_CONFIG_VERSION 1u
#define EXEC_CONFIG_MAX     ((size_t)64 << 20) /* bytes a worker reads, at most */

/* The configuration's bytes: this, then the image description. */
typedef struct exec_config {
    uint32_t magic, version;
    uint64_t max_message, memory_limit, rss_limit;
    uint32_t max_tasks, slots;
    uint64_t init, init_ctx;    /* worker_init and its ctx, as the pool's addresses */
    uint64_t shared_bytes;      /* of the claim-word memfd */
} exec_config;

typedef struct exec_start {
    int   shared_fd, config_fd;
    char  argv0[64];            /* the program's name, for ps(1) */
} exec_start;

/* Pool side, at create: the claim words (*shared, shared_bytes, mapped
   MAP_SHARED from a memfd) and the configuration memfd.  0, WP_ENOMEM,
   WP_ESPAWN (no memfd), or WP_EINVAL when worker_init is not code of a
   loaded object or worker_init_ctx is neither NULL nor in one (a heap or
   stack pointer cannot mean anything in another image). */
int wp__exec_prepare(exec_start *x, const worker_config *cfg, void **shared,
                     size_t shared_bytes) WP_INTERNAL;
void wp__exec_release(exec_start *x) WP_INTERNAL;

/* Start the worker of `slot`: as wp__worker_spawn (worker.h), by
   posix_spawn.  0, or WP_ESPAWN with *os_error. */
int wp__exec_spawn(const exec_start *x, unsigned slot, worker_handle *out,
                   int *os_error) WP_INTERNAL;

/* Worker side: the configuration's bytes checked and read into *cfg (the
   image description, parsed, in *im; init and init_ctx still the pool's
   addresses).  0 or WP_EPROTO / WP_ENOMEM.  No I/O: fuzzed. */
int wp__exec_config_parse(const void *bytes, size_t len, exec_config *cfg, image *im) WP_INTERNAL;

#endif
