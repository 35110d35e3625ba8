/* SPDX-License-Identifier: MIT */
/*
 * relay.h — the private interface through which libworkerpool-mpi puts a
 * pool's workers on other MPI ranks (docs/ARCHITECTURE.md, "More than one
 * machine").  Not installed, not part of the API: these are exported from
 * libworkerpool.so under the version node WP_PRIVATE only so that the
 * add-on, a separate library built from the same tree, reaches them; any
 * release may change them.  The core knows nothing of MPI.
 *
 * The idea: a relayed pool is an ordinary pool whose fork server is a
 * socket served by a relay instead of a forked process.  The relay answers
 * the fork server's protocol (forkserver.h, OP_*) and moves bytes: each
 * worker's two pipes end in the relay, which carries what the pool writes
 * to a worker on another rank and what that worker answers back.  On that
 * rank a relay server — a real fork server, whose workers are "relayed" —
 * starts the workers.  Everything the pool does (deadlines, cancel, retries,
 * crash reports, recycling, stats) is the ordinary code; the differences:
 *   - the pool claims a task as it sends it (a relayed worker cannot share
 *     its claim words), so a window holds one task and a sent task cannot
 *     be taken back: cancelling it kills its worker;
 *   - exit reports and kills name the slot as well as the pid, since pids
 *     of different ranks may be the same number;
 *   - the worker finds task functions by the root's image description, as
 *     an exec'd worker does (image.h).
 */
#ifndef WP_RELAY_H
#define WP_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

#define WP_RELAY_API __attribute__((visibility("default")))

/* The fork server's ops (forkserver.h, OP_*), by these names outside it. */
enum {
    WP_RELAY_SPAWN = 1, WP_RELAY_KILL, WP_RELAY_SPAWNED, WP_RELAY_SPAWN_FAILED, WP_RELAY_EXITED
};

/* ------------------------------------------------------------ root side */

/* A pool whose fork server is sock (one end of an AF_UNIX SOCK_SEQPACKET
   socketpair; the relay serves the other).  On success the pool owns sock
   (the dispatcher shuts it down and closes it as it ends) and calls
   stop(ctx) once, from wp_pool_destroy, after that: the relay's cue to
   finish.  On failure sock is still the caller's.  opts as for
   wp_pool_create; start_method is not used.  0 or wp_pool_create's codes. */
int wp__relay_pool_create(wp_pool **out, const wp_pool_options *opts, int sock,
                          void (*stop)(void *ctx), void *ctx) WP_RELAY_API;

/* What the pool asked (WP_RELAY_SPAWN or WP_RELAY_KILL, slot, pid). */
typedef struct wp__relay_request {
    uint32_t op, slot;
    int32_t  pid;
} wp__relay_request;

/* Next request on sock, never blocking: 1 (*rq), 0 none now, WP_ESHUTDOWN
   the pool closed it (it is done). */
int wp__relay_request_next(int sock, wp__relay_request *rq) WP_RELAY_API;

/* The answers.  spawned passes task_fd (the pool writes tasks there) and
   result_fd (it reads answers there) to the pool; the caller closes its
   copies.  0, WP_EAGAIN (the socket is full: try again) or WP_ESHUTDOWN. */
int wp__relay_spawned(int sock, uint32_t slot, int32_t pid, int task_fd, int result_fd) WP_RELAY_API;
int wp__relay_spawn_failed(int sock, uint32_t slot, int os_error) WP_RELAY_API;
int wp__relay_exited(int sock, uint32_t slot, int32_t pid, int status) WP_RELAY_API;

/* This process's image description (image.h), malloc'd: 0, WP_ENOMEM or
   WP_E2BIG. */
int wp__relay_image(void **desc, size_t *len) WP_RELAY_API;

/* ------------------------------------------------------- serving side */

/* The root pool's settings that its workers apply themselves. */
typedef struct wp__relay_limits {
    uint64_t max_message, max_tasks, memory_limit, rss_limit;
} wp__relay_limits;

typedef struct wp__relay_server wp__relay_server;

/* What the relay server reports, as forkserver_event. */
typedef struct wp__relay_event {
    uint32_t op;         /* WP_RELAY_SPAWNED, _SPAWN_FAILED or _EXITED */
    uint32_t slot;       /* not for an exit: find it by pid */
    int32_t  pid;
    int32_t  value;      /* spawn failed: errno value; exited: wait status */
    int      task_fd;    /* spawned: write tasks here (non-blocking) */
    int      result_fd;  /* spawned: read answers here (non-blocking) */
} wp__relay_event;

/* Start a fork server whose workers run the tasks of the pool that the
   image description desc (wp__relay_image, on the root) describes, with
   its limits, running init(ctx) (this process's own function) first.
   0, WP_EPROTO (desc is not a description), WP_ENOMEM or WP_ESPAWN. */
int wp__relay_server_start(wp__relay_server **out, const wp__relay_limits *limits,
                           int (*init)(void *ctx), void *ctx, const void *desc,
                           size_t len) WP_RELAY_API;
/* Its socket, to poll for POLLIN: events wait. */
int wp__relay_server_fd(const wp__relay_server *srv) WP_RELAY_API;
/* Ask for a worker for slot; kill slot's worker pid: 0, WP_EAGAIN or WP_ESPAWN. */
int wp__relay_server_spawn(wp__relay_server *srv, uint32_t slot, int *os_error) WP_RELAY_API;
int wp__relay_server_kill(wp__relay_server *srv, uint32_t slot, int32_t pid) WP_RELAY_API;
/* Next event: 1 (*ev), 0 none now, WP_ESPAWN the server is gone. */
int wp__relay_server_next(wp__relay_server *srv, wp__relay_event *ev) WP_RELAY_API;
/* Stop it (every worker and whatever they forked dies) and free it. */
void wp__relay_server_stop(wp__relay_server *srv) WP_RELAY_API;

#endif
