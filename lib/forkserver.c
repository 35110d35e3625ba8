/*
 * forkserver.c — the fork server process and the pool's side of its socket
 * (see forkserver.h).  The server allocates only what its child table
 * needs and never starts a thread, so every worker it forks comes from a
 * quiet single-threaded image.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkserver.h"
#include "fsmsg.h"

enum { OP_SPAWN = 1, OP_KILL, OP_SPAWNED, OP_SPAWN_FAILED, OP_EXITED };

/* ------------------------------------------------------- message transport */

/* The transport is fsmsg.c's; these are the server's short names for it.
   The server is never sent descriptors it wants: any that come, whole or
   cut off, are closed and the message is acted on alone. */
static int send_msg(int sock, const fs_msg *m, const int *fds, int nfds, int flags)
{
    return wp__fs_msg_send(sock, m, fds, nfds, flags);
}

static int recv_msg(int sock, fs_msg *m, int *fds, int *nfds, int flags)
{
    return wp__fs_msg_recv(sock, m, fds, nfds, NULL, flags);
}

/* ------------------------------------------------------------ the server */

typedef struct server {
    int    sock;
    pid_t *children;
    size_t nchildren, cap;
    const worker_config *cfg;
} server;

static void remember(server *s, pid_t pid)
{
    if (s->nchildren == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        pid_t *p = realloc(s->children, cap * sizeof *p);
        if (p == NULL)
            return; /* it still dies with us through PR_SET_PDEATHSIG */
        s->children = p;
        s->cap = cap;
    }
    s->children[s->nchildren++] = pid;
}

static bool forget(server *s, pid_t pid)
{
    for (size_t i = 0; i < s->nchildren; i++)
        if (s->children[i] == pid) {
            s->children[i] = s->children[--s->nchildren];
            return true;
        }
    return false;
}

static bool known(const server *s, pid_t pid)
{
    for (size_t i = 0; i < s->nchildren; i++)
        if (s->children[i] == pid)
            return true;
    return false;
}

static void serve_spawn(server *s, uint32_t slot)
{
    worker_handle h;
    fs_msg reply = { .op = OP_SPAWNED, .slot = slot };
    int rc = slot < s->cfg->slots ? wp__worker_spawn(s->cfg, slot, &h) : -EINVAL;
    if (rc < 0) {
        reply.op = OP_SPAWN_FAILED;
        reply.value = -rc;
        send_msg(s->sock, &reply, NULL, 0, 0);
        return;
    }
    remember(s, h.pid);
    reply.pid = h.pid;
    int fds[3] = { h.task_fd, h.result_fd, h.pidfd };
    send_msg(s->sock, &reply, fds, h.pidfd >= 0 ? 3 : 2, 0);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static void reap_children(server *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (!forget(s, pid))
            continue;
        fs_msg m = { .op = OP_EXITED, .pid = pid, .value = status };
        send_msg(s->sock, &m, NULL, 0, 0);
    }
}

static _Noreturn void server_exit(server *s)
{
    for (size_t i = 0; i < s->nchildren; i++)
        kill(s->children[i], SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    _exit(0);
}

static _Noreturn void server_main(int sock, const worker_config *cfg)
{
    server s = { .sock = sock, .cfg = cfg };
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        _exit(1);
    /* A terminal's ^C is for the program; the server leaves when it does. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int keep[] = { sock, sfd };
    wp__close_fds_except(3, keep, 2);
    __fpurge(stdout);
    __fpurge(stderr);

    for (;;) {
        struct pollfd pfd[2] = { { .fd = sock, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            server_exit(&s);
        }
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            reap_children(&s);
        }
        if (pfd[0].revents) {
            fs_msg m;
            int fds[FS_MAX_FDS], nfds;
            int got = recv_msg(sock, &m, fds, &nfds, MSG_DONTWAIT);
            if (got < 0)
                server_exit(&s);
            if (got == 0)
                continue;
            while (nfds > 0)
                close(fds[--nfds]);
            if (m.op == OP_SPAWN)
                serve_spawn(&s, m.slot);
            else if (m.op == OP_KILL && known(&s, m.pid))
                kill(m.pid, SIGKILL);
        }
    }
}

/* ------------------------------------------------------- the pool's side */

int wp__forkserver_start(forkserver *fs, const worker_config *cfg)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        server_main(sv[1], cfg);
    }
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -e;
    }
    wp__fd_set_nonblock(sv[0]);
    fs->pid = pid;
    fs->sock = sv[0];
    return 0;
}

int wp__forkserver_spawn(forkserver *fs, uint32_t slot)
{
    fs_msg m = { .op = OP_SPAWN, .slot = slot };
    return send_msg(fs->sock, &m, NULL, 0, MSG_DONTWAIT) == 0 ? 0 : -errno;
}

int wp__forkserver_kill(forkserver *fs, pid_t pid)
{
    fs_msg m = { .op = OP_KILL, .pid = pid };
    return send_msg(fs->sock, &m, NULL, 0, MSG_DONTWAIT) == 0 ? 0 : -errno;
}

int wp__forkserver_next(forkserver *fs, forkserver_event *ev)
{
    fs_msg m;
    int fds[FS_MAX_FDS], nfds, fd_error;
    int got = wp__fs_msg_recv(fs->sock, &m, fds, &nfds, &fd_error, MSG_DONTWAIT);
    if (got <= 0)
        return got;
    memset(ev, 0, sizeof *ev);
    ev->slot = m.slot;
    ev->handle.pid = m.pid;
    ev->handle.task_fd = ev->handle.result_fd = ev->handle.pidfd = -1;
    switch (m.op) {
    case OP_SPAWNED:
        if (fd_error != 0 || nfds < 2) {
            /* The worker exists, but without its pipes it is no use: it
               sees end-of-file and exits, and its exit is reported. */
            ev->kind = FS_SPAWN_FAILED;
            ev->error = fd_error != 0 ? fd_error : EPROTO;
            break;
        }
        ev->kind = FS_SPAWNED;
        ev->handle.task_fd = fds[0];
        ev->handle.result_fd = fds[1];
        ev->handle.pidfd = nfds > 2 ? fds[2] : -1;
        return 1;
    case OP_SPAWN_FAILED:
        ev->kind = FS_SPAWN_FAILED;
        ev->error = m.value;
        break;
    case OP_EXITED:
        ev->kind = FS_EXITED;
        ev->status = m.value;
        break;
    default:
        ev->kind = FS_SPAWN_FAILED;
        ev->error = EPROTO;
    }
    while (nfds > 0)
        close(fds[--nfds]);
    return 1;
}

void wp__forkserver_stop(forkserver *fs)
{
    if (fs->sock >= 0)
        close(fs->sock);
    fs->sock = -1;
    if (fs->pid > 0)
        while (waitpid(fs->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    fs->pid = 0;
}
