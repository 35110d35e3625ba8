/* SPDX-License-Identifier: MIT */
/*
 * root.c — wp_mpi_pool_create and the root's relay thread
 * (docs/ARCHITECTURE.md, "More than one machine").
 *
 * The pool is an ordinary relayed pool (lib/relay.h): its fork server is a
 * socket whose other end this thread serves.  Slot i of the pool is local
 * slot i / R of serving rank number i % R (R serving ranks), so workers
 * spread over the ranks as the pool grows.  For each started worker the
 * thread makes two pipes, passes the pool its ends, and carries bytes:
 * what the pool writes to the task pipe goes to the worker's rank as
 * WPM_DATA, what comes back is written to the result pipe.  A worker's exit
 * report is passed on only once every byte before it is in the result pipe
 * and that pipe is closed, so the pool reads each answer before the death.
 *
 * The thread makes every MPI call of the pool (link.h's idle wait between
 * looks).  It ends when the pool closes the socket: WPM_STOP to every
 * serving rank, then it waits for each one's WPM_STOPPED, so no message is
 * left in flight when wp_pool_destroy returns and the program may call
 * MPI_Finalize.  Everything is O(workers) per turn, like the dispatcher.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "relay.h"
#include "workerpool-mpi.h"

#define MAX_SLOTS 1024 /* the pool's MAX_WORKERS */
/* Answers to the pool that wait for room in its socket: at most two a slot
   (its worker's SPAWNED and EXITED: the pool asks a slot for a worker
   again only once it has the exit), so this ring never fills. */
#define ANSWERS_MAX (4 * MAX_SLOTS)
#define WPM_DEFAULT_MAX_MESSAGE ((uint64_t)64 << 20) /* wp_pool_create's 0 */

typedef struct rslot {
    bool      up;          /* spawned, not yet reported exited */
    int32_t   pid;
    int       task_rd;     /* the relay's end of the pool's task pipe, or -1 */
    int       result_wr;   /* the relay's end of the pool's result pipe, or -1 */
    wpm_bytes out;         /* answer bytes waiting for result_wr */
    bool      exited;      /* its exit report came: pass it on once out is written */
    int       status;
} rslot;

/* One answer to the pool (relay.h): WP_RELAY_SPAWNED (with the pool's ends
   of the pipes, open until sent), _SPAWN_FAILED (value: errno value) or
   _EXITED (value: wait status). */
typedef struct answer {
    uint32_t op, slot;
    int32_t  pid, value;
    int      task_fd, result_fd;
} answer;

typedef struct relay {
    MPI_Comm  comm;
    int       sock;        /* the relay's end of the pool's socket */
    int      *ranks;       /* the serving ranks, in slot order */
    int       nranks;
    rslot     slots[MAX_SLOTS];
    wpm_sends sends;
    wpm_idle  idle;
    pthread_t thread;
    atomic_int stop_status; /* what the serving ranks' wp_mpi_serve returns */
    char      chunk[WPM_CHUNK];
    answer    answers[ANSWERS_MAX]; /* refused by the pool's full socket: sent in order */
    size_t    answers_head, nanswers;
    struct pollfd pfds[1 + 2 * MAX_SLOTS];
} relay;

static int rank_of(const relay *r, uint32_t slot)
{
    return r->ranks[slot % (uint32_t)r->nranks];
}

static uint32_t local_of(const relay *r, uint32_t slot)
{
    return slot / (uint32_t)r->nranks;
}

/* The pool's slot for local slot `local` of rank `src`, or MAX_SLOTS. */
static uint32_t slot_of(const relay *r, int src, uint32_t local)
{
    for (int i = 0; i < r->nranks; i++)
        if (r->ranks[i] == src) {
            uint64_t slot = (uint64_t)local * (uint64_t)r->nranks + (uint64_t)i;
            return slot < MAX_SLOTS ? (uint32_t)slot : MAX_SLOTS;
        }
    return MAX_SLOTS;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void send_ctl(relay *r, uint32_t slot, uint32_t op, int32_t pid)
{
    wpm_hdr h = { .op = op, .slot = local_of(r, slot), .pid = pid };
    (void)wpm_send_msg(&r->sends, r->comm, rank_of(r, slot), &h, NULL, 0);
}

/* --------------------------------------------------- the pool's socket */

/* 0, WP_EAGAIN (the socket is full) or WP_ESHUTDOWN. */
static int answer_send(relay *r, const answer *a)
{
    if (a->op == WP_RELAY_SPAWNED)
        return wp__relay_spawned(r->sock, a->slot, a->pid, a->task_fd, a->result_fd);
    if (a->op == WP_RELAY_SPAWN_FAILED)
        return wp__relay_spawn_failed(r->sock, a->slot, a->value);
    return wp__relay_exited(r->sock, a->slot, a->pid, a->value);
}

static void answer_done(answer *a)
{
    if (a->op == WP_RELAY_SPAWNED) { /* the pool has its own copies now, or none */
        close(a->task_fd);
        close(a->result_fd);
    }
}

/* Send the answers that waited, oldest first: true when none waits. */
static bool answers_flush(relay *r)
{
    while (r->nanswers > 0) {
        answer *a = &r->answers[r->answers_head];
        if (answer_send(r, a) == WP_EAGAIN)
            return false;
        answer_done(a);
        r->answers_head = (r->answers_head + 1) % ANSWERS_MAX;
        r->nanswers--;
    }
    return true;
}

/*
 * Answer the pool, in order.  Its socket is non-blocking and holds a few
 * hundred messages: a burst (a thousand workers starting, or dying at
 * shutdown) overflows it, and a lost SPAWNED or EXITED leaves its slot
 * waiting forever, the pool's shutdown with it (docs/ARCHITECTURE.md,
 * "More than one machine").  So what it refuses waits here, and goes
 * before anything newer.
 */
static void tell_pool(relay *r, answer a)
{
    if (answers_flush(r) && answer_send(r, &a) != WP_EAGAIN) {
        answer_done(&a);
        return;
    }
    if (r->nanswers == ANSWERS_MAX) { /* cannot happen (ANSWERS_MAX): never block */
        answer_done(&a);
        return;
    }
    r->answers[(r->answers_head + r->nanswers) % ANSWERS_MAX] = a;
    r->nanswers++;
}

static void spawn_failed(relay *r, uint32_t slot, int os_error)
{
    tell_pool(r, (answer){ .op = WP_RELAY_SPAWN_FAILED, .slot = slot, .value = os_error,
                           .task_fd = -1, .result_fd = -1 });
}

/* false once the pool has closed it. */
static bool pool_requests(relay *r, bool *did)
{
    wp__relay_request rq;
    int got;
    while ((got = wp__relay_request_next(r->sock, &rq)) > 0) {
        *did = true;
        if (rq.slot >= MAX_SLOTS)
            continue;
        if (rq.op == WP_RELAY_SPAWN)
            send_ctl(r, rq.slot, WPM_SPAWN, 0);
        else if (rq.op == WP_RELAY_KILL && r->slots[rq.slot].up && r->slots[rq.slot].pid == rq.pid)
            send_ctl(r, rq.slot, WPM_KILL, rq.pid);
    }
    return got == 0;
}

/* ---------------------------------------------- a serving rank's events */

static void spawned(relay *r, uint32_t slot, int32_t pid)
{
    rslot *s = &r->slots[slot];
    int tp[2], rp[2];
    if (s->up) { /* a second worker for a slot the pool has one in: not the pool's */
        send_ctl(r, slot, WPM_KILL, pid); /* its exit comes back, for no pid of ours */
        return;
    }
    if (wpm_pipe(tp) < 0) {
        int err = errno;
        send_ctl(r, slot, WPM_KILL, pid);
        spawn_failed(r, slot, err);
        return;
    }
    if (wpm_pipe(rp) < 0) {
        int err = errno;
        close(tp[0]);
        close(tp[1]);
        send_ctl(r, slot, WPM_KILL, pid);
        spawn_failed(r, slot, err);
        return;
    }
    *s = (rslot){ .up = true, .pid = pid, .task_rd = tp[0], .result_wr = rp[1] };
    tell_pool(r, (answer){ .op = WP_RELAY_SPAWNED, .slot = slot, .pid = pid, .task_fd = tp[1],
                           .result_fd = rp[0] });
}

/* Pass the exit on once the answers before it are in the pipe. */
static void maybe_exited(relay *r, uint32_t slot)
{
    rslot *s = &r->slots[slot];
    if (!s->exited || !wpm_bytes_empty(&s->out))
        return;
    close_fd(&s->result_wr); /* end of file first: every answer is there */
    close_fd(&s->task_rd);
    wpm_bytes_free(&s->out);
    tell_pool(r, (answer){ .op = WP_RELAY_EXITED, .slot = slot, .pid = s->pid,
                           .value = s->status, .task_fd = -1, .result_fd = -1 });
    *s = (rslot){ .task_rd = -1, .result_wr = -1 };
}

static void rank_message(relay *r, int src, const wpm_hdr *h, const char *data, size_t n)
{
    uint32_t slot = slot_of(r, src, h->slot);
    if (slot >= MAX_SLOTS)
        return;
    rslot *s = &r->slots[slot];
    switch (h->op) {
    case WPM_SPAWNED:
        spawned(r, slot, h->pid);
        break;
    case WPM_SPAWN_FAILED:
        spawn_failed(r, slot, h->value);
        break;
    case WPM_DATA:
        if (s->up && s->result_wr >= 0 && wpm_bytes_add(&s->out, data, n) == 0 &&
            wpm_bytes_flush(&s->out, s->result_wr) < 0)
            close_fd(&s->result_wr); /* the pool closed its end: nobody reads */
        break;
    case WPM_EXITED:
        if (s->up && s->pid == h->pid) {
            s->exited = true;
            s->status = h->value;
            if (s->result_wr < 0)
                wpm_bytes_free(&s->out);
            maybe_exited(r, slot);
        }
        break;
    default:
        break;
    }
}

static bool rank_messages(relay *r, int *stopped)
{
    bool did = false;
    int src;
    wpm_hdr h;
    char *data;
    size_t n;
    while (wpm_recv_msg(r->comm, &src, &h, &data, &n) > 0) {
        did = true;
        if (h.op == WPM_STOPPED)
            ++*stopped;
        else
            rank_message(r, src, &h, data, n);
        free(data);
    }
    return did;
}

/* ------------------------------------------------------------- the pipes */

static bool pump_pipes(relay *r)
{
    bool did = false;
    for (uint32_t i = 0; i < MAX_SLOTS; i++) {
        rslot *s = &r->slots[i];
        if (!s->up)
            continue;
        if (!wpm_bytes_empty(&s->out) && s->result_wr >= 0) {
            if (wpm_bytes_flush(&s->out, s->result_wr) < 0)
                close_fd(&s->result_wr);
            did = true;
        }
        if (s->result_wr < 0)
            wpm_bytes_free(&s->out);
        maybe_exited(r, i);
        if (!s->up || s->task_rd < 0 || r->sends.bytes >= WPM_INFLIGHT)
            continue;
        long got = wpm_read_chunk(s->task_rd, r->chunk);
        if (got > 0) {
            wpm_hdr h = { .op = WPM_DATA, .slot = local_of(r, i) };
            (void)wpm_send_msg(&r->sends, r->comm, rank_of(r, i), &h, r->chunk, (size_t)got);
            did = true;
        } else if (got < 0) { /* the pool closed the task pipe: so does the worker's */
            close_fd(&s->task_rd);
            send_ctl(r, i, WPM_EOF, s->pid);
            did = true;
        }
    }
    return did;
}

static nfds_t poll_set(relay *r)
{
    nfds_t n = 0;
    r->pfds[n++] = (struct pollfd){ .fd = r->sock,
                                    .events = POLLIN | (r->nanswers > 0 ? POLLOUT : 0) };
    for (uint32_t i = 0; i < MAX_SLOTS; i++) {
        const rslot *s = &r->slots[i];
        if (s->up && s->task_rd >= 0)
            r->pfds[n++] = (struct pollfd){ .fd = s->task_rd, .events = POLLIN };
        if (s->up && s->result_wr >= 0 && !wpm_bytes_empty(&s->out))
            r->pfds[n++] = (struct pollfd){ .fd = s->result_wr, .events = POLLOUT };
    }
    return n;
}

/* Stop every serving rank (their wp_mpi_serve returns status) and wait
   for each one's last message, so that nothing is in flight after. */
static void finish(relay *r, int status)
{
    for (; r->nanswers > 0; r->nanswers--) { /* the pool is gone: nobody to tell */
        answer_done(&r->answers[r->answers_head]);
        r->answers_head = (r->answers_head + 1) % ANSWERS_MAX;
    }
    wpm_hdr stop = { .op = WPM_STOP, .value = status };
    for (int i = 0; i < r->nranks; i++)
        (void)wpm_send_msg(&r->sends, r->comm, r->ranks[i], &stop, NULL, 0);
    int stopped = 0;
    while (stopped < r->nranks) {
        bool did = rank_messages(r, &stopped);
        did |= wpm_sends_progress(&r->sends) > 0;
        wpm_idle_wait(&r->idle, did, NULL, 0);
    }
    /* After the last message: a worker that started meanwhile got pipes too. */
    for (uint32_t i = 0; i < MAX_SLOTS; i++) {
        close_fd(&r->slots[i].task_rd);
        close_fd(&r->slots[i].result_wr);
        wpm_bytes_free(&r->slots[i].out);
        r->slots[i].up = false;
    }
    wpm_sends_finish(&r->sends);
    MPI_Comm_free(&r->comm);
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    bool open = true;
    int stopped = 0; /* a serving rank stops only when told: none before the end */
    while (open) {
        bool did = false;
        open = pool_requests(r, &did);
        did |= r->nanswers > 0 && answers_flush(r);
        did |= rank_messages(r, &stopped);
        did |= pump_pipes(r);
        did |= wpm_sends_progress(&r->sends) > 0;
        if (open)
            wpm_idle_wait(&r->idle, did, r->pfds, poll_set(r));
    }
    /* The pool is gone, and with it every pipe's other end (or it was
       never made: stop_status says why). */
    finish(r, atomic_load(&r->stop_status));
    return NULL;
}

static void relay_free(relay *r)
{
    if (r->sock >= 0)
        close(r->sock);
    free(r->ranks);
    free(r);
}

/* The pool's stop callback (relay.h): the pool closed its end, so the
   thread stops the serving ranks and ends. */
static void relay_stop(void *ctx)
{
    relay *r = ctx;
    pthread_join(r->thread, NULL);
    relay_free(r);
}

/* ------------------------------------------------------------- create */

/* The workers per serving rank: opts->workers, 0 = online CPUs. */
static unsigned per_rank(const wp_pool_options *o)
{
    if (o->workers > 0)
        return o->workers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

static relay *relay_new(MPI_Comm comm, int root, int size)
{
    relay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->ranks = malloc((size_t)size * sizeof *r->ranks);
    if (r->ranks == NULL) {
        free(r);
        return NULL;
    }
    for (int i = 0; i < size; i++)
        if (i != root)
            r->ranks[r->nranks++] = i;
    for (uint32_t i = 0; i < MAX_SLOTS; i++)
        r->slots[i] = (rslot){ .task_rd = -1, .result_wr = -1 };
    r->comm = comm;
    r->sock = -1;
    return r;
}

/* Broadcast the configuration: every serving rank learns status, and,
   when it is 0, the limits and the image description.  Returns status,
   or WP_ENOMEM when the description could not be made. */
static int broadcast(MPI_Comm comm, int root, int status, const wp_pool_options *o)
{
    void *desc = NULL;
    size_t len = 0;
    if (status == 0 && wp__relay_image(&desc, &len) < 0)
        status = WP_ENOMEM;
    wpm_config c = { .magic = WPM_MAGIC, .version = WPM_VERSION, .status = status,
                     .workers = per_rank(o), .image_len = status == 0 ? len : 0,
                     .max_message = o->max_message, .max_tasks = o->max_tasks_per_worker,
                     .memory_limit = o->worker_memory_limit, .rss_limit = o->worker_rss_limit };
    if (c.max_message == 0)
        c.max_message = WPM_DEFAULT_MAX_MESSAGE;
    MPI_Bcast(&c, (int)sizeof c, MPI_BYTE, root, comm);
    if (status == 0)
        MPI_Bcast(desc, (int)len, MPI_BYTE, root, comm);
    free(desc);
    return status;
}

int wp_mpi_pool_create(wp_pool **out, MPI_Comm comm, int root, const wp_pool_options *opts)
{
    int inited = 0, rank = -1, size = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&inited);
    if (!inited || comm == MPI_COMM_NULL)
        return WP_EINVAL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank != root || size < 2)
        return WP_EINVAL; /* no collective begun: nobody waits on this call */
    MPI_Query_thread(&level);
    wp_pool_options o = opts != NULL ? *opts : (wp_pool_options){ 0 };
    int status = out == NULL || level < MPI_THREAD_SERIALIZED ||
                         (uint64_t)per_rank(&o) * (uint64_t)(size - 1) > MAX_SLOTS
                     ? WP_EINVAL : 0;
    MPI_Comm dup;
    MPI_Comm_dup(comm, &dup); /* collective: the serving ranks make theirs */
    relay *r = status == 0 ? relay_new(dup, root, size) : NULL;
    int sv[2] = { -1, -1 };
    if (status == 0 && r == NULL)
        status = WP_ENOMEM;
    if (status == 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        status = WP_ESPAWN;
    status = broadcast(dup, root, status, &o);
    if (status < 0) { /* the serving ranks return it too: nothing started */
        if (sv[0] >= 0) {
            close(sv[0]);
            close(sv[1]);
        }
        if (r != NULL) {
            free(r->ranks);
            free(r);
        }
        MPI_Comm_free(&dup);
        return status;
    }
    r->sock = sv[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals are for the program's threads */
    int trc = pthread_create(&r->thread, NULL, relay_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (trc != 0) { /* no thread: stop the serving ranks from here */
        close(sv[0]);
        finish(r, WP_ESPAWN);
        relay_free(r);
        return WP_ESPAWN;
    }
    o.workers = per_rank(&o) * (unsigned)r->nranks;
    o.start_method = 0;
    o.worker_init = NULL;
    o.worker_init_ctx = NULL;
    int rc = wp__relay_pool_create(out, &o, sv[0], relay_stop, r);
    if (rc < 0) { /* the thread sees the end, stops the serving ranks with rc */
        atomic_store(&r->stop_status, rc);
        close(sv[0]);
        relay_stop(r);
    }
    return rc;
}
