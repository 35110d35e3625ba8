/* SPDX-License-Identifier: MIT */
/*
 * forkserver.c — the fork server process and the pool's side of its socket
 * (see forkserver.h).  The server allocates only what its child table
 * needs and never starts a thread, so every worker it forks comes from a
 * quiet single-threaded image.  It is the one reaper of its workers (it
 * resets the signal set-up it inherited) and the subreaper of whatever their
 * tasks fork, so it can kill a worker's whole tree race-free (worker.h).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkserver.h"
#include "fsmsg.h"

/* ------------------------------------------------------- message transport */

/* The transport is fsmsg.c's; these are the server's short names for it.
   The server is never sent descriptors it wants: any that come, whole or
   cut off, are closed and the message is acted on alone. */
static int send_msg(int sock, const fs_msg *m, const int *fds, int nfds, int flags)
{
    return wp__fs_msg_send(sock, m, fds, nfds, flags, NULL);
}

static int recv_msg(int sock, fs_msg *m, int *fds, int *nfds, int flags)
{
    return wp__fs_msg_recv(sock, m, fds, nfds, NULL, flags);
}

/* ------------------------------------------------------------ the server */

/* Sent by the kernel when the thread that forked the server ends (only
   without pidfd: see watch_owner). */
#define OWNER_GONE_SIGNAL SIGUSR1

#define CHILDREN_FIRST_CAP 16 /* workers in the first child table; then it doubles */

/* The server's poll set: its socket, its signalfd, the owner's pidfd (-1,
   ignored by poll, without one). */
enum { SPFD_SOCK, SPFD_SIGNALS, SPFD_OWNER, SPFD_COUNT };

typedef struct server {
    int    sock;
    pid_t  owner;
    pid_t *children;   /* the workers, not yet reaped */
    size_t nchildren, cap;
    const worker_config *cfg;
} server;

/* Room for one more worker in the table, made before it is forked: a child
   the server does not know is taken for a stray, and killed. */
static bool reserve(server *s)
{
    if (s->nchildren < s->cap)
        return true;
    size_t cap = s->cap ? s->cap * 2 : CHILDREN_FIRST_CAP;
    pid_t *p = realloc(s->children, cap * sizeof *p);
    if (p == NULL)
        return false;
    s->children = p;
    s->cap = cap;
    return true;
}

/* The child table is an unordered array: forget and known are O(workers),
   a scan of at most MAX_WORKERS pids, once per exit or kill request —
   nothing next to the fork or the reap that comes with each. */
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
    int rc, os_error = 0; /* the reply carries the errno value, for the pool's message */
    if (slot >= s->cfg->slots) {
        rc = WP_EINVAL;
        os_error = EINVAL;
    } else if (!reserve(s)) {
        rc = WP_ENOMEM;
        os_error = ENOMEM;
    } else {
        rc = wp__worker_spawn(s->cfg, slot, &h, &os_error);
    }
    if (rc < 0) {
        reply.op = OP_SPAWN_FAILED;
        reply.value = os_error;
        send_msg(s->sock, &reply, NULL, 0, 0); /* lost only with the pool: nobody to tell */
        return;
    }
    s->children[s->nchildren++] = h.pid;
    reply.pid = h.pid;
    int fds[3] = { h.task_fd, h.result_fd, h.pidfd };
    send_msg(s->sock, &reply, fds, h.pidfd >= 0 ? 3 : 2, 0);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/*
 * Reap every child that has ended.  A worker's process group is killed
 * first, while the worker is a zombie (its pid, the group's id, cannot be
 * anyone else's yet): whatever its task forked dies with it.  A worker's
 * status goes to the pool if report; a stray (below) is reaped silently.
 * Returns how many workers were reaped.
 */
static size_t reap_ended(server *s, bool report)
{
    size_t workers = 0;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            return workers;
        }
        if (si.si_pid == 0)
            return workers;
        pid_t pid = si.si_pid;
        bool worker = forget(s, pid);
        if (worker)
            wp__kill_group(pid, -1);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (worker && report) {
            fs_msg m = { .op = OP_EXITED, .slot = FS_ANY_SLOT, .pid = pid, .value = status };
            send_msg(s->sock, &m, NULL, 0, 0);
        }
        workers += worker;
    }
}

/* A child that is not a worker is a stray from a dead worker: a process
   its tasks forked that had left its group (setsid), or an orphan the
   worker had adopted, which came to us, the workers' subreaper, when the
   worker died.  Kill it with its own group (it is not reaped: neither id
   can be reused). */
static bool kill_stray(pid_t pid, void *ctx)
{
    if (known(ctx, pid))
        return false;
    wp__kill_group(pid, -1);
    return true;
}

/* After a worker died: kill the strays until none is left (a killed
   stray's own children come to us in turn as it dies). */
static void clear_strays(server *s)
{
    while (wp__each_child(kill_stray, s) > 0) {
        siginfo_t si;
        while (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
            ; /* until one has ended */
        reap_ended(s, true);
    }
}

/* The pool is gone, or its process died: take everything down — workers
   with their groups, strays with theirs — until no child is left. */
static _Noreturn void server_exit(server *s)
{
    for (size_t i = 0; i < s->nchildren; i++)
        wp__kill_group(s->children[i], -1);
    for (;;) {
        reap_ended(s, false);
        wp__each_child(kill_stray, s);
        siginfo_t si;
        if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) < 0 && errno == ECHILD)
            _exit(0);
    }
}

/*
 * Learn of the owner's death even while a process it forked (without exec)
 * holds our socket open, so that no end-of-file comes: a pidfd of the owner,
 * polled.  It is opened before getppid() is checked, so an owner that died
 * first is not missed, and one that is still our parent cannot have given
 * its pid to another.  Without pidfd, a parent-death signal — but the
 * kernel sends that when the *thread* that forked us ends (pools are made
 * on threads that come and go), so it only makes us look at getppid().
 * Returns the pidfd, or -1.
 */
static int watch_owner(pid_t owner)
{
    int fd = wp__pidfd_open(owner);
    if (fd < 0)
        (void)prctl(PR_SET_PDEATHSIG, OWNER_GONE_SIGNAL);
    if (getppid() != owner)
        _exit(0);
    return fd >= 0 ? fd : -1;
}

static _Noreturn void server_main(int sock, const worker_config *cfg, pid_t owner)
{
    server s = { .sock = sock, .cfg = cfg, .owner = owner };
    /* First of all, nothing of the program's signal set-up: with SIGCHLD
       ignored or SA_NOCLDWAIT the kernel would reap the workers, and their
       exit status would be lost. */
    wp__reset_signals();
    sigset_t watched;
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, OWNER_GONE_SIGNAL);
    sigprocmask(SIG_BLOCK, &watched, NULL);
    int sfd = signalfd(-1, &watched, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        _exit(1);
    /* What a terminal (^C, hang-up) or a kill of the whole process group
       sends is for the program: the server leaves when the program does. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    /* What a task leaves behind comes to us when its parent dies, not to
       init, so that it can be killed. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    int owner_fd = watch_owner(owner);
    int keep[] = { sock, sfd, owner_fd };
    wp__close_fds_except(3, keep, owner_fd >= 0 ? 3 : 2);
    __fpurge(stdout);
    __fpurge(stderr);

    for (;;) {
        struct pollfd pfd[SPFD_COUNT] = {
            [SPFD_SOCK] = { .fd = sock, .events = POLLIN },
            [SPFD_SIGNALS] = { .fd = sfd, .events = POLLIN },
            [SPFD_OWNER] = { .fd = owner_fd, .events = POLLIN },
        };
        if (poll(pfd, SPFD_COUNT, -1) < 0) {
            if (errno == EINTR)
                continue;
            server_exit(&s);
        }
        if (pfd[SPFD_OWNER].revents)
            server_exit(&s); /* the owner died */
        if (pfd[SPFD_SIGNALS].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            if (owner_fd < 0 && getppid() != owner)
                server_exit(&s);
            if (reap_ended(&s, true) > 0)
                clear_strays(&s);
        }
        if (pfd[SPFD_SOCK].revents) {
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
                wp__kill_group(m.pid, -1); /* not reaped: its pid is still its own */
        }
    }
}

/* ------------------------------------------------------- the pool's side */

int wp__forkserver_start(forkserver *fs, const worker_config *cfg)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return WP_ESPAWN;
    pid_t owner = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        server_main(sv[1], cfg, owner);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return WP_ESPAWN;
    }
    (void)wp__fd_set_nonblock(sv[0]); /* cannot fail: socketpair just made it */
    fs->pid = pid;
    fs->sock = sv[0];
    return 0;
}

/* A request to the server, never blocking: 0, WP_EAGAIN (the socket is
   full) or WP_ESPAWN (it failed: *os_error, if not NULL). */
static int request(forkserver *fs, const fs_msg *m, int *os_error)
{
    int rc = wp__fs_msg_send(fs->sock, m, NULL, 0, MSG_DONTWAIT, os_error);
    return rc == 0 || rc == WP_EAGAIN ? rc : WP_ESPAWN;
}

int wp__forkserver_spawn(forkserver *fs, uint32_t slot, int *os_error)
{
    fs_msg m = { .op = OP_SPAWN, .slot = slot };
    return request(fs, &m, os_error);
}

int wp__forkserver_kill(forkserver *fs, uint32_t slot, pid_t pid)
{
    fs_msg m = { .op = OP_KILL, .slot = slot, .pid = pid };
    return request(fs, &m, NULL);
}

int wp__forkserver_next(forkserver *fs, forkserver_event *ev)
{
    fs_msg m;
    int fds[FS_MAX_FDS], nfds, fd_error;
    int got = wp__fs_msg_recv(fs->sock, &m, fds, &nfds, &fd_error, MSG_DONTWAIT);
    if (got < 0)
        return WP_ESPAWN; /* the socket failed or closed: the server is gone */
    if (got == 0)
        return 0;
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
            ev->os_error = fd_error != 0 ? fd_error : EPROTO;
            break;
        }
        ev->kind = FS_SPAWNED;
        ev->handle.task_fd = fds[0];
        ev->handle.result_fd = fds[1];
        ev->handle.pidfd = nfds > 2 ? fds[2] : -1;
        return 1;
    case OP_SPAWN_FAILED:
        ev->kind = FS_SPAWN_FAILED;
        ev->os_error = m.value;
        break;
    case OP_EXITED:
        ev->kind = FS_EXITED;
        ev->status = m.value;
        break;
    default: /* a server of another build, or a corrupt message */
        ev->kind = FS_SPAWN_FAILED;
        ev->os_error = EPROTO;
    }
    while (nfds > 0)
        close(fds[--nfds]);
    return 1;
}

void wp__forkserver_stop(forkserver *fs)
{
    /* shutdown() ends the socket itself, not just this descriptor: the
       server sees the end even while a process the program forked holds a
       copy. */
    if (fs->sock >= 0) {
        shutdown(fs->sock, SHUT_RDWR);
        close(fs->sock);
    }
    fs->sock = -1;
    if (fs->pid > 0)
        while (waitpid(fs->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    fs->pid = 0;
}
