/* SPDX-License-Identifier: MIT */
/*
 * forkserver.h — the fork server (WP_START_FORKSERVER; docs/ARCHITECTURE.md,
 * "Processes").
 *
 * Forked once by wp_pool_create() before the dispatcher thread exists, it
 * stays single-threaded and does three things on request over an AF_UNIX
 * SOCK_SEQPACKET socket: fork a worker and pass back its pipe ends (and a
 * pidfd) with SCM_RIGHTS; kill a worker it has not reaped yet (for kernels
 * without pidfd); reap workers and report their exit status.  A worker's
 * process group dies with it, and so does any process its task left behind
 * that came to the server as their subreaper.  When the socket ends (the
 * pool stopped) or the owner process dies — it watches the process itself,
 * since a child the program forked may hold the socket open — it kills
 * all of that and exits.
 */
#ifndef WP_FORKSERVER_H
#define WP_FORKSERVER_H

#include <stdint.h>
#include <sys/types.h>

#include "worker.h"

/* The ops of the socket's messages (fsmsg.h): the pool asks OP_SPAWN and
   OP_KILL, the server answers OP_SPAWNED (with the pipe ends and a
   pidfd), OP_SPAWN_FAILED and OP_EXITED.  A relay (lib/relay.h) speaks
   the same on a relayed pool's socket. */
enum { OP_SPAWN = 1, OP_KILL, OP_SPAWNED, OP_SPAWN_FAILED, OP_EXITED };

typedef struct forkserver {
    pid_t pid;
    int   sock;   /* the pool's end, non-blocking */
} forkserver;

enum forkserver_event_kind {
    FS_SPAWNED = 1,     /* slot's worker is forked: handle is filled */
    FS_SPAWN_FAILED,    /* slot's worker could not be forked: os_error says why */
    FS_EXITED           /* pid was reaped: status */
};

/* An exit report's slot when the sender knows only the pid. */
#define FS_ANY_SLOT UINT32_MAX

typedef struct forkserver_event {
    enum forkserver_event_kind kind;
    uint32_t      slot;
    int           os_error;  /* FS_SPAWN_FAILED: an errno value, for the message */
    int           status;    /* FS_EXITED: the wait status; slot is FS_ANY_SLOT when the
                                server only knows the pid (a relay knows both) */
    worker_handle handle;    /* FS_SPAWNED; FS_EXITED: only pid */
} forkserver_event;

/* Fork the server.  0, or WP_ESPAWN (socketpair() or fork() failed). */
int  wp__forkserver_start(forkserver *fs, const worker_config *cfg) WP_INTERNAL;
/* Ask for a worker for slot.  0; WP_EAGAIN, the socket is full: ask again
   once it drains (POLLOUT); or WP_ESPAWN, the socket failed (the server is
   gone), *os_error saying how. */
int  wp__forkserver_spawn(forkserver *fs, uint32_t slot, int *os_error) WP_INTERNAL;
/* Ask it to SIGKILL slot's worker pid if it has not reaped it yet: 0,
   WP_EAGAIN or WP_ESPAWN as wp__forkserver_spawn.  The server goes by pid;
   a relay (lib/relay.h), whose pids are another rank's, by slot. */
int  wp__forkserver_kill(forkserver *fs, uint32_t slot, pid_t pid) WP_INTERNAL;
/* Next event: 1 got one (*ev), 0 none right now, WP_ESPAWN the server is
   gone (no worker can be started through it any more). */
int  wp__forkserver_next(forkserver *fs, forkserver_event *ev) WP_INTERNAL;
/* Close the socket (the server kills what is left and exits) and reap it. */
void wp__forkserver_stop(forkserver *fs) WP_INTERNAL;

#endif
