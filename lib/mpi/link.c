/* SPDX-License-Identifier: MIT */
/*
 * link.c — the parts of libworkerpool-mpi both ends use (link.h): byte
 * queues for non-blocking pipes, sends in flight, receiving one message,
 * and the idle wait.
 *
 * Costs: the sends table is scanned once a turn (MPI_Testsome over it:
 * O(in flight), bounded by WPM_INFLIGHT bytes); a byte queue compacts by
 * memmove when it is more than half consumed, so each byte moves O(1)
 * times on average.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "link.h"

/* -------------------------------------------------------------- bytes */

int wpm_bytes_add(wpm_bytes *b, const void *p, size_t n)
{
    if (b->off > 0 && b->off >= b->len / 2) { /* compact: mostly consumed */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : WPM_CHUNK;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int wpm_bytes_flush(wpm_bytes *b, int fd)
{
    while (b->off < b->len) {
        ssize_t put = write(fd, b->data + b->off, b->len - b->off);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (put < 0) {
            b->off = b->len = 0;
            return -1;
        }
        b->off += (size_t)put;
    }
    b->off = b->len = 0;
    return 0;
}

bool wpm_bytes_empty(const wpm_bytes *b)
{
    return b->off == b->len;
}

void wpm_bytes_free(wpm_bytes *b)
{
    free(b->data);
    *b = (wpm_bytes){ 0 };
}

/* -------------------------------------------------------------- sends */

int wpm_send_msg(wpm_sends *q, MPI_Comm comm, int rank, const wpm_hdr *hdr, const void *data,
                 size_t n)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        wpm_send *s = realloc(q->s, cap * sizeof *s);
        if (s == NULL)
            return -1;
        q->s = s;
        q->cap = cap;
    }
    size_t len = sizeof *hdr + n;
    char *buf = malloc(len);
    if (buf == NULL)
        return -1;
    memcpy(buf, hdr, sizeof *hdr);
    if (n > 0)
        memcpy(buf + sizeof *hdr, data, n);
    wpm_send *s = &q->s[q->n++];
    s->buf = buf;
    s->len = len;
    q->bytes += len;
    /* len <= sizeof hdr + WPM_CHUNK: fits an int. */
    MPI_Isend(buf, (int)len, MPI_BYTE, rank, WPM_TAG, comm, &s->req);
    return 0;
}

size_t wpm_sends_progress(wpm_sends *q)
{
    size_t done = 0, i = 0;
    while (i < q->n) {
        int flag = 0;
        MPI_Test(&q->s[i].req, &flag, MPI_STATUS_IGNORE);
        if (!flag) {
            i++;
            continue;
        }
        q->bytes -= q->s[i].len;
        free(q->s[i].buf);
        q->s[i] = q->s[--q->n]; /* order does not matter: MPI keeps the wire's */
        done++;
    }
    return done;
}

void wpm_sends_finish(wpm_sends *q)
{
    for (size_t i = 0; i < q->n; i++) {
        MPI_Wait(&q->s[i].req, MPI_STATUS_IGNORE);
        free(q->s[i].buf);
    }
    free(q->s);
    *q = (wpm_sends){ 0 };
}

/* ---------------------------------------------------------- receiving */

int wpm_recv_msg(MPI_Comm comm, int *src, wpm_hdr *hdr, char **data, size_t *n)
{
    int flag = 0;
    MPI_Status st;
    /* Twice: Open MPI's MPI_Iprobe looks for a matching message before it
       runs its progress engine, so a message that arrived while we slept
       is found by the second look, not a millisecond later. */
    MPI_Iprobe(MPI_ANY_SOURCE, WPM_TAG, comm, &flag, &st);
    if (!flag)
        MPI_Iprobe(MPI_ANY_SOURCE, WPM_TAG, comm, &flag, &st);
    if (!flag)
        return 0;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    char *buf = malloc(count > 0 ? (size_t)count : 1);
    if (buf == NULL) /* left where it is: the next turn tries again */
        return -1;
    MPI_Recv(buf, count, MPI_BYTE, st.MPI_SOURCE, WPM_TAG, comm, MPI_STATUS_IGNORE);
    if ((size_t)count < sizeof *hdr) {
        free(buf);
        return -1;
    }
    memcpy(hdr, buf, sizeof *hdr);
    *src = st.MPI_SOURCE;
    *n = (size_t)count - sizeof *hdr;
    memmove(buf, buf + sizeof *hdr, *n);
    *data = buf;
    return 1;
}

/* --------------------------------------------------------------- idle */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void wpm_idle_wait(wpm_idle *w, bool did_something, struct pollfd *fds, nfds_t nfds)
{
    int64_t now = now_us();
    if (did_something)
        w->busy_at_us = now;
    int timeout = now - w->busy_at_us < WPM_SPIN_US ? 0 : WPM_IDLE_MS;
    if (poll(fds, nfds, timeout) > 0)
        w->busy_at_us = now; /* a pipe woke us: more may follow */
}

long wpm_read_chunk(int fd, char *buf)
{
    for (;;) {
        ssize_t got = read(fd, buf, WPM_CHUNK);
        if (got > 0)
            return (long)got;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
}

int wpm_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    (void)fcntl(fds[1], F_SETPIPE_SZ, WPM_PIPE_BYTES);
    return 0;
}
