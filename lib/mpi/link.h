/* SPDX-License-Identifier: MIT */
/*
 * link.h — what both ends of libworkerpool-mpi share (docs/ARCHITECTURE.md,
 * "More than one machine"): the messages between the root's relay thread
 * and a serving rank, the byte queue that holds what a pipe cannot take
 * yet, the sends in flight, and the relay's idle wait.
 *
 * One MPI tag on a communicator of our own (MPI_Comm_dup of the program's),
 * one message per event: a wpm_hdr, then for WPM_DATA the bytes.  MPI keeps
 * the order of the messages between two ranks on one tag, which is all the
 * ordering the relay needs: a worker's bytes arrive in order, and its exit
 * report after its last bytes.
 */
#ifndef WPM_LINK_H
#define WPM_LINK_H

#include <mpi.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WPM_TAG        0x7770          /* our tag, on our own communicator */
#define WPM_MAGIC      0x4d504d57u     /* "WMPM": a configuration from this library */
#define WPM_VERSION    1u
#define WPM_CHUNK      (64 * 1024)     /* most pipe bytes read into one WPM_DATA */
#define WPM_INFLIGHT   (8 * 1024 * 1024) /* send bytes in flight past which pipes wait */
#define WPM_SPIN_US    200             /* after activity, look again at once this long */
#define WPM_IDLE_MS    1               /* then poll the pipes this long between looks at MPI */
#define WPM_PIPE_BYTES (1 << 20)       /* as a worker's pipes (worker.h) */

enum wpm_op {
    /* root -> serving rank */
    WPM_SPAWN = 1,   /* start a worker for local slot */
    WPM_KILL,        /* SIGKILL local slot's worker pid */
    WPM_EOF,         /* the pool closed the worker's task pipe */
    WPM_STOP,        /* the pool is gone: stop everything, answer WPM_STOPPED */
    /* serving rank -> root */
    WPM_SPAWNED,     /* local slot's worker is pid */
    WPM_SPAWN_FAILED,/* value: errno value */
    WPM_EXITED,      /* pid ended, value: its wait status (after its last bytes) */
    WPM_STOPPED,     /* the last message a serving rank sends */
    /* both ways */
    WPM_DATA         /* bytes of local slot's task pipe (to it) or result pipe (from it) */
};

typedef struct wpm_hdr {
    uint32_t op, slot;  /* slot: the worker's slot on its serving rank */
    int32_t  pid, value;
} wpm_hdr;

/* The configuration the root broadcasts (then `image_len` bytes of its
   image description, when status is 0). */
typedef struct wpm_config {
    uint32_t magic, version;
    int32_t  status;            /* 0, or the WP_E* code every rank returns */
    uint32_t workers;           /* per serving rank */
    uint64_t max_message, max_tasks, memory_limit, rss_limit;
    uint64_t image_len;
} wpm_config;

/* Bytes waiting for a non-blocking descriptor. */
typedef struct wpm_bytes {
    char  *data;
    size_t off, len, cap;   /* data[off .. len) waits */
} wpm_bytes;

/* Append n bytes: 0 or -1 (no memory). */
int  wpm_bytes_add(wpm_bytes *b, const void *p, size_t n);
/* Write what waits to fd: 0 (all or some: check wpm_bytes_empty), or -1
   (the other end is gone: what waited is dropped). */
int  wpm_bytes_flush(wpm_bytes *b, int fd);
bool wpm_bytes_empty(const wpm_bytes *b);
void wpm_bytes_free(wpm_bytes *b);

/* Sends in flight: each message is copied, sent with MPI_Isend and freed
   once MPI says it is done. */
typedef struct wpm_send {
    MPI_Request req;
    void       *buf;
    size_t      len;
} wpm_send;

typedef struct wpm_sends {
    wpm_send *s;
    size_t    n, cap;
    size_t    bytes;   /* of the messages in flight */
} wpm_sends;

/* Send hdr (and n bytes of data) to rank: 0, or -1 (no memory). */
int  wpm_send_msg(wpm_sends *q, MPI_Comm comm, int rank, const wpm_hdr *hdr, const void *data,
                  size_t n);
/* Retire the finished sends: how many finished.  O(in flight). */
size_t wpm_sends_progress(wpm_sends *q);
/* Wait for them all, then free the table. */
void wpm_sends_finish(wpm_sends *q);

/* One message from anyone, if one has come: 1 (*src, *hdr, and *data —
   malloc'd, the caller frees — with *n bytes), 0 none, -1 no memory or a
   message too short to be ours (dropped). */
int  wpm_recv_msg(MPI_Comm comm, int *src, wpm_hdr *hdr, char **data, size_t *n);

/* The idle wait: after a turn that did something, look again at once for
   WPM_SPIN_US; then sleep in poll on the fds, WPM_IDLE_MS at most, since
   MPI's messages come without a descriptor to wait on. */
typedef struct wpm_idle {
    int64_t busy_at_us;
} wpm_idle;

void wpm_idle_wait(wpm_idle *w, bool did_something, struct pollfd *fds, nfds_t nfds);

/* Read up to WPM_CHUNK bytes of fd into buf: >0 bytes, 0 none now, -1 end
   of file or error (the descriptor is done). */
long wpm_read_chunk(int fd, char *buf);

/* A pipe between the relay and the pool: O_CLOEXEC, both ends non-blocking
   (the pool's dispatcher never blocks on a worker's pipe), made as big as
   a worker's (WPM_PIPE_BYTES, best effort).  0 or -1 (errno). */
int  wpm_pipe(int fds[2]);

#endif
