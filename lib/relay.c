/* SPDX-License-Identifier: MIT */
/*
 * relay.c — the private interface of relay.h: a relayed pool's socket seen
 * from the relay's end (the fork server's protocol, answered), and the
 * relay server a serving rank runs (a fork server whose workers are
 * relayed).  Thin on purpose: the pool and the fork server do the work;
 * this only lets a library outside the core speak to them
 * (docs/ARCHITECTURE.md, "More than one machine").
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "forkserver.h"
#include "fsmsg.h"
#include "image.h"
#include "relay.h"
#include "worker.h"

_Static_assert((int)WP_RELAY_SPAWN == (int)OP_SPAWN && (int)WP_RELAY_KILL == (int)OP_KILL &&
               (int)WP_RELAY_SPAWNED == (int)OP_SPAWNED &&
               (int)WP_RELAY_SPAWN_FAILED == (int)OP_SPAWN_FAILED &&
               (int)WP_RELAY_EXITED == (int)OP_EXITED, "relay.h names the fork server's ops");

/* ------------------------------------------------------------ root side */

int wp__relay_request_next(int sock, wp__relay_request *rq)
{
    fs_msg m;
    int fds[FS_MAX_FDS], nfds = 0;
    for (;;) {
        int got = wp__fs_msg_recv(sock, &m, fds, &nfds, NULL, MSG_DONTWAIT);
        while (nfds > 0) /* the pool sends none: whatever came is closed */
            close(fds[--nfds]);
        if (got == WP_EPROTO)
            continue; /* not one message: the pool's are always whole */
        if (got <= 0)
            return got < 0 ? WP_ESHUTDOWN : 0;
        if (m.op != OP_SPAWN && m.op != OP_KILL)
            continue;
        *rq = (wp__relay_request){ .op = m.op, .slot = m.slot, .pid = m.pid };
        return 1;
    }
}

static int answer(int sock, const fs_msg *m, const int *fds, int nfds)
{
    int rc = wp__fs_msg_send(sock, m, fds, nfds, MSG_DONTWAIT, NULL);
    return rc == 0 || rc == WP_EAGAIN ? rc : WP_ESHUTDOWN;
}

int wp__relay_spawned(int sock, uint32_t slot, int32_t pid, int task_fd, int result_fd)
{
    fs_msg m = { .op = OP_SPAWNED, .slot = slot, .pid = pid };
    int fds[2] = { task_fd, result_fd };
    return answer(sock, &m, fds, 2);
}

int wp__relay_spawn_failed(int sock, uint32_t slot, int os_error)
{
    fs_msg m = { .op = OP_SPAWN_FAILED, .slot = slot, .value = os_error };
    return answer(sock, &m, NULL, 0);
}

int wp__relay_exited(int sock, uint32_t slot, int32_t pid, int status)
{
    fs_msg m = { .op = OP_EXITED, .slot = slot, .pid = pid, .value = status };
    return answer(sock, &m, NULL, 0);
}

int wp__relay_image(void **desc, size_t *len)
{
    return wp__image_describe(desc, len);
}

/* ------------------------------------------------------- serving side */

/* Claim-word sets for every slot a worker may be given: a relayed worker
   never touches them, but its configuration points at one per slot. */
#define RELAY_SHARED_BYTES (sizeof(worker_shared) * WORKER_SLOTS_MAX)

struct wp__relay_server {
    forkserver    fs;
    worker_config cfg;   /* copied into the server as it forks */
    image         im;    /* the root's objects: its workers translate by them */
};

int wp__relay_server_start(wp__relay_server **out, const wp__relay_limits *limits,
                           int (*init)(void *ctx), void *ctx, const void *desc, size_t len)
{
    wp__relay_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return WP_ENOMEM;
    int rc = wp__image_parse(&srv->im, desc, len);
    if (rc < 0) {
        free(srv);
        return rc;
    }
    void *shared = mmap(NULL, RELAY_SHARED_BYTES, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        wp__image_free(&srv->im);
        free(srv);
        return WP_ENOMEM;
    }
    srv->cfg = (worker_config){
        .shared = shared,
        .slots = WORKER_SLOTS_MAX,
        .max_message = (size_t)limits->max_message,
        .max_tasks = (unsigned)limits->max_tasks,
        .memory_limit = (size_t)limits->memory_limit,
        .rss_limit = (size_t)limits->rss_limit,
        .init = init,
        .init_ctx = ctx,
        .image = &srv->im,
        .relayed = true,
    };
    if (wp__forkserver_start(&srv->fs, &srv->cfg) < 0) {
        munmap(shared, RELAY_SHARED_BYTES);
        wp__image_free(&srv->im);
        free(srv);
        return WP_ESPAWN;
    }
    *out = srv;
    return 0;
}

int wp__relay_server_fd(const wp__relay_server *srv)
{
    return srv->fs.sock;
}

int wp__relay_server_spawn(wp__relay_server *srv, uint32_t slot, int *os_error)
{
    return wp__forkserver_spawn(&srv->fs, slot, os_error);
}

int wp__relay_server_kill(wp__relay_server *srv, uint32_t slot, int32_t pid)
{
    return wp__forkserver_kill(&srv->fs, slot, pid);
}

int wp__relay_server_next(wp__relay_server *srv, wp__relay_event *ev)
{
    forkserver_event fe;
    int got = wp__forkserver_next(&srv->fs, &fe);
    if (got <= 0)
        return got;
    if (fe.handle.pidfd >= 0) /* kills go through the server, by pid */
        close(fe.handle.pidfd);
    *ev = (wp__relay_event){ .slot = fe.slot, .pid = fe.handle.pid,
                             .task_fd = fe.handle.task_fd, .result_fd = fe.handle.result_fd };
    switch (fe.kind) {
    case FS_SPAWNED:     ev->op = OP_SPAWNED; break;
    case FS_SPAWN_FAILED: ev->op = OP_SPAWN_FAILED; ev->value = fe.os_error; break;
    case FS_EXITED:      ev->op = OP_EXITED; ev->value = fe.status; break;
    }
    return 1;
}

void wp__relay_server_stop(wp__relay_server *srv)
{
    if (srv == NULL)
        return;
    wp__forkserver_stop(&srv->fs);
    munmap(srv->cfg.shared, RELAY_SHARED_BYTES);
    wp__image_free(&srv->im);
    free(srv);
}
