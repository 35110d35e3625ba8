/* SPDX-License-Identifier: MIT */
/*
 * serve.c — wp_mpi_serve: a serving rank (docs/ARCHITECTURE.md, "More than
 * one machine").
 *
 * It learns the root's configuration and image description (one
 * broadcast), starts a relay server (lib/relay.h: a fork server whose
 * workers are relayed) and then, on the calling thread, does what the
 * root asks: start a worker for a local slot, kill one, write task bytes
 * into a worker's pipe, close it; and tells the root what happens here:
 * a worker started (its pid) or could not, the bytes it answers, its exit.
 * A worker's exit goes to the root only after every byte it wrote before
 * dying: the result pipe is read dry first.  WPM_STOP ends it all: the
 * fork server stops, which kills every worker and what they forked.
 * O(local workers) per turn.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "link.h"
#include "relay.h"
#include "workerpool-mpi.h"

#define LOCAL_MAX 1024 /* local slots: the pool's MAX_WORKERS at most */

typedef struct sslot {
    bool      up;          /* spawned, not yet exited */
    bool      want;        /* a spawn the fork server's full socket refused: ask again */
    bool      asked;       /* a spawn the fork server has not answered yet */
    bool      kill;        /* a kill the fork server's full socket refused: ask again */
    bool      eof;         /* the pool closed the task pipe: close ours once out is written */
    int32_t   pid;
    int       task_wr;     /* the worker's task pipe, or -1 */
    int       result_rd;   /* the worker's result pipe, or -1 */
    wpm_bytes out;         /* task bytes waiting for task_wr */
} sslot;

typedef struct server {
    MPI_Comm          comm;
    int               root;
    wp__relay_server *srv;     /* NULL when it could not start: every spawn fails */
    int               start_error;
    sslot             slots[LOCAL_MAX];
    wpm_sends         sends;
    wpm_idle          idle;
    char              chunk[WPM_CHUNK];
    struct pollfd     pfds[1 + 2 * LOCAL_MAX];
} server;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void tell(server *sv, uint32_t op, uint32_t slot, int32_t pid, int32_t value,
                 const void *data, size_t n)
{
    wpm_hdr h = { .op = op, .slot = slot, .pid = pid, .value = value };
    (void)wpm_send_msg(&sv->sends, sv->comm, sv->root, &h, data, n);
}

/* Send whatever the worker has written; false at its end of file. */
static bool drain(server *sv, uint32_t slot)
{
    sslot *s = &sv->slots[slot];
    while (s->result_rd >= 0) {
        long got = wpm_read_chunk(s->result_rd, sv->chunk);
        if (got == 0)
            return true;
        if (got < 0) {
            close_fd(&s->result_rd);
            return false;
        }
        tell(sv, WPM_DATA, slot, s->pid, 0, sv->chunk, (size_t)got);
    }
    return false;
}

static void spawn(server *sv, uint32_t slot)
{
    sslot *s = &sv->slots[slot];
    if (s->up) { /* its last worker is not reaped yet: the pool backs off and asks again */
        tell(sv, WPM_SPAWN_FAILED, slot, 0, EBUSY, NULL, 0);
        return;
    }
    int os_error = 0;
    int rc = sv->srv == NULL ? WP_ESPAWN : wp__relay_server_spawn(sv->srv, slot, &os_error);
    s->want = rc == WP_EAGAIN;
    s->asked = rc == 0;
    if (rc < 0 && rc != WP_EAGAIN)
        tell(sv, WPM_SPAWN_FAILED, slot, 0, sv->srv == NULL ? sv->start_error : os_error, NULL, 0);
}

/* ------------------------------------------------- the fork server's side */

/* Slot i's worker ended with wait status: its answers, then the report. */
static void exited(server *sv, uint32_t i, int status)
{
    sslot *s = &sv->slots[i];
    (void)drain(sv, i); /* every answer it wrote goes before its exit */
    close_fd(&s->result_rd);
    close_fd(&s->task_wr);
    wpm_bytes_free(&s->out);
    tell(sv, WPM_EXITED, i, s->pid, status, NULL, 0);
    *s = (sslot){ .task_wr = -1, .result_rd = -1 };
}

static void server_event(server *sv, const wp__relay_event *ev)
{
    if (ev->op != WP_RELAY_EXITED && ev->slot < LOCAL_MAX)
        sv->slots[ev->slot].asked = false;
    if (ev->op == WP_RELAY_SPAWNED && ev->slot < LOCAL_MAX && !sv->slots[ev->slot].up) {
        sslot *s = &sv->slots[ev->slot];
        *s = (sslot){ .up = true, .pid = ev->pid, .task_wr = ev->task_fd, .result_rd = ev->result_fd };
        tell(sv, WPM_SPAWNED, ev->slot, ev->pid, 0, NULL, 0);
        return;
    }
    if (ev->op == WP_RELAY_SPAWNED) { /* a slot we did not ask for: not ours to run */
        close(ev->task_fd);
        close(ev->result_fd);
        (void)wp__relay_server_kill(sv->srv, ev->slot, ev->pid);
        return;
    }
    if (ev->op == WP_RELAY_SPAWN_FAILED) {
        tell(sv, WPM_SPAWN_FAILED, ev->slot, 0, ev->value, NULL, 0);
        return;
    }
    for (uint32_t i = 0; i < LOCAL_MAX; i++) { /* exited: found by pid, O(local workers) */
        if (sv->slots[i].up && sv->slots[i].pid == ev->pid) {
            exited(sv, i, ev->value);
            return;
        }
    }
}

/*
 * The fork server died (a task can kill its parent): its workers die with
 * it (PR_SET_PDEATHSIG) and nothing will report them or answer a spawn
 * any more, so this rank does, as the pool does for its own fork server
 * (docs/ARCHITECTURE.md, "More than one machine"): every worker exited,
 * SIGKILL, after what it wrote; every spawn asked failed; and so does
 * every spawn from now on.  Without this the root's pool waits for those
 * reports forever: its tasks there never settle, its shutdown never ends.
 * O(local workers), once.
 */
static void server_lost(server *sv)
{
    wp__relay_server_stop(sv->srv); /* reaps it */
    sv->srv = NULL;
    sv->start_error = EPIPE;
    for (uint32_t i = 0; i < LOCAL_MAX; i++) {
        sslot *s = &sv->slots[i];
        if (s->up)
            exited(sv, i, SIGKILL); /* a wait status: killed by SIGKILL */
        if (s->asked || s->want)
            tell(sv, WPM_SPAWN_FAILED, i, 0, EPIPE, NULL, 0);
        s->asked = s->want = false;
    }
}

static bool server_events(server *sv)
{
    bool did = false;
    wp__relay_event ev;
    int got = 0;
    while (sv->srv != NULL && (got = wp__relay_server_next(sv->srv, &ev)) > 0) {
        server_event(sv, &ev);
        did = true;
    }
    if (sv->srv != NULL && got < 0) {
        server_lost(sv);
        did = true;
    }
    return did;
}

/* ------------------------------------------------------ the root's side */

/* One message of the root's; false on WPM_STOP (*status: its value). */
static bool root_message(server *sv, const wpm_hdr *h, const char *data, size_t n, int *status)
{
    if (h->op == WPM_STOP) {
        *status = h->value;
        return false;
    }
    if (h->slot >= LOCAL_MAX)
        return true;
    sslot *s = &sv->slots[h->slot];
    switch (h->op) {
    case WPM_SPAWN:
        spawn(sv, h->slot);
        break;
    case WPM_KILL:
        if (s->up && s->pid == h->pid && sv->srv != NULL) /* refused: pump_pipes asks again */
            s->kill = wp__relay_server_kill(sv->srv, h->slot, h->pid) == WP_EAGAIN;
        break;
    case WPM_DATA:
        if (s->up && s->task_wr >= 0 && wpm_bytes_add(&s->out, data, n) == 0 &&
            wpm_bytes_flush(&s->out, s->task_wr) < 0)
            close_fd(&s->task_wr); /* it died: its exit is on its way */
        break;
    case WPM_EOF:
        if (s->up && s->pid == h->pid)
            s->eof = true;
        break;
    default:
        break;
    }
    return true;
}

static bool root_messages(server *sv, bool *stop, int *status)
{
    bool did = false;
    int src;
    wpm_hdr h;
    char *data;
    size_t n;
    while (!*stop && wpm_recv_msg(sv->comm, &src, &h, &data, &n) > 0) {
        did = true;
        if (src == sv->root && !root_message(sv, &h, data, n, status))
            *stop = true;
        free(data);
    }
    return did;
}

/* ------------------------------------------------------------- the pipes */

static bool pump_pipes(server *sv)
{
    bool did = false;
    for (uint32_t i = 0; i < LOCAL_MAX; i++) {
        sslot *s = &sv->slots[i];
        if (s->want && sv->srv != NULL) {
            spawn(sv, i);
            did = true;
        }
        if (!s->up)
            continue;
        if (s->kill && sv->srv != NULL) { /* lost, the worker would live on: its slot waits */
            s->kill = wp__relay_server_kill(sv->srv, i, s->pid) == WP_EAGAIN;
            did = true;
        }
        if (s->task_wr >= 0 && !wpm_bytes_empty(&s->out)) {
            if (wpm_bytes_flush(&s->out, s->task_wr) < 0)
                close_fd(&s->task_wr);
            did = true;
        }
        if (s->eof && wpm_bytes_empty(&s->out))
            close_fd(&s->task_wr); /* the worker sees the end: it leaves */
        if (s->result_rd >= 0 && sv->sends.bytes < WPM_INFLIGHT) {
            size_t before = sv->sends.n;
            (void)drain(sv, i); /* its end of file waits for the exit report */
            did |= sv->sends.n != before;
        }
    }
    return did;
}

static nfds_t poll_set(server *sv)
{
    nfds_t n = 0;
    if (sv->srv != NULL)
        sv->pfds[n++] = (struct pollfd){ .fd = wp__relay_server_fd(sv->srv), .events = POLLIN };
    for (uint32_t i = 0; i < LOCAL_MAX; i++) {
        const sslot *s = &sv->slots[i];
        if (s->up && s->result_rd >= 0)
            sv->pfds[n++] = (struct pollfd){ .fd = s->result_rd, .events = POLLIN };
        if (s->up && s->task_wr >= 0 && !wpm_bytes_empty(&s->out))
            sv->pfds[n++] = (struct pollfd){ .fd = s->task_wr, .events = POLLOUT };
    }
    return n;
}

/* ---------------------------------------------------------------- serve */

/* Out of memory where the root would wait for this rank forever: end the
   whole job, saying why (MPI_Abort), rather than hang it. */
static _Noreturn void give_up(MPI_Comm comm, const char *why)
{
    fprintf(stderr, "wp_mpi_serve: %s: ending the job\n", why);
    MPI_Abort(comm, 1);
    abort();
}

/* The root's configuration and image, then the relay server: 0 (sv->srv
   may still be NULL, with start_error), or the root's refusal. */
static int configure(server *sv, const wp_pool_options *opts)
{
    wpm_config c;
    MPI_Bcast(&c, (int)sizeof c, MPI_BYTE, sv->root, sv->comm);
    if (c.magic != WPM_MAGIC || c.version != WPM_VERSION)
        return WP_EPROTO; /* not this library's root: nothing more will come */
    if (c.status < 0)
        return c.status;
    if (c.image_len > (uint64_t)INT32_MAX)
        return WP_EPROTO;
    char *desc = malloc(c.image_len > 0 ? (size_t)c.image_len : 1);
    if (desc == NULL) /* the broadcast cannot be matched: end the job, saying why */
        give_up(sv->comm, "no memory for the root's image description");
    MPI_Bcast(desc, (int)c.image_len, MPI_BYTE, sv->root, sv->comm);
    wp__relay_limits lim = { .max_message = c.max_message, .max_tasks = c.max_tasks,
                             .memory_limit = c.memory_limit, .rss_limit = c.rss_limit };
    int rc = wp__relay_server_start(&sv->srv, &lim, opts != NULL ? opts->worker_init : NULL,
                                    opts != NULL ? opts->worker_init_ctx : NULL, desc,
                                    (size_t)c.image_len);
    free(desc);
    if (rc < 0) {
        sv->srv = NULL;
        sv->start_error = rc == WP_ENOMEM ? ENOMEM : rc == WP_EPROTO ? EPROTO : EAGAIN;
    }
    return 0;
}

int wp_mpi_serve(MPI_Comm comm, int root, const wp_pool_options *opts)
{
    int inited = 0, rank = -1, size = 0;
    MPI_Initialized(&inited);
    if (!inited || comm == MPI_COMM_NULL)
        return WP_EINVAL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank == root || size < 2 || root < 0 || root >= size)
        return WP_EINVAL;
    server *sv = calloc(1, sizeof *sv);
    if (sv == NULL) /* the root waits in the collectives below: end the job */
        give_up(comm, "no memory for the relay");
    sv->root = root;
    for (uint32_t i = 0; i < LOCAL_MAX; i++)
        sv->slots[i] = (sslot){ .task_wr = -1, .result_rd = -1 };
    MPI_Comm_dup(comm, &sv->comm);
    /* A write to a dead worker's pipe must be EPIPE, not a SIGPIPE that
       ends the rank: blocked on this thread while it serves (the process's
       disposition is the program's), and one that came meanwhile is taken
       back before the mask is (unless the program had one pending). */
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigset_t before;
    sigpending(&before);
    int status = configure(sv, opts);
    if (status == 0) {
        bool stop = false;
        while (!stop) {
            bool did = root_messages(sv, &stop, &status);
            did |= server_events(sv);
            did |= pump_pipes(sv);
            did |= wpm_sends_progress(&sv->sends) > 0;
            if (!stop)
                wpm_idle_wait(&sv->idle, did, sv->pfds, poll_set(sv));
        }
        wp__relay_server_stop(sv->srv); /* every worker and its tree, reaped */
        for (uint32_t i = 0; i < LOCAL_MAX; i++) {
            close_fd(&sv->slots[i].task_wr);
            close_fd(&sv->slots[i].result_rd);
            wpm_bytes_free(&sv->slots[i].out);
        }
        tell(sv, WPM_STOPPED, 0, 0, 0, NULL, 0);
        wpm_sends_finish(&sv->sends);
    }
    MPI_Comm_free(&sv->comm);
    free(sv);
    if (!sigismember(&before, SIGPIPE)) {
        struct timespec none = { 0, 0 };
        while (sigtimedwait(&pipe_only, NULL, &none) == SIGPIPE)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return status;
}
