/* SPDX-License-Identifier: MIT */
/*
 * frame.h — the wire format between the pool and its workers
 * (docs/ARCHITECTURE.md, "Wire format").
 *
 * A frame is a fixed header followed by `length` payload bytes, host byte
 * order (both ends are the same binary).  This module only builds and
 * validates frames; it does no I/O, so it can be fuzzed directly.  The
 * reader is incremental: the caller asks where the next bytes go
 * (wp__frame_reader_space), reads into that space however it likes, and
 * reports how many arrived (wp__frame_reader_advance).  Every length is
 * checked against max_message before anything is allocated.
 */
#ifndef WP_FRAME_H
#define WP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FRAME_MAGIC 0x31465057u /* "WPF1" */

enum frame_type {
    FRAME_TASK    = 1, /* pool -> worker: run fn on the payload */
    FRAME_RESULT  = 2, /* worker -> pool: the task succeeded, payload = result */
    FRAME_FAILURE = 3, /* worker -> pool: error/code, payload = message */
    FRAME_READY   = 4  /* worker -> pool: started, worker_init succeeded */
};

#define FRAME_BIT(t) (1u << (t))
#define FRAME_FROM_WORKER (FRAME_BIT(FRAME_RESULT) | FRAME_BIT(FRAME_FAILURE) | FRAME_BIT(FRAME_READY))
#define FRAME_TO_WORKER   FRAME_BIT(FRAME_TASK)

/* Longest failure message carried; longer ones are cut. */
#define FRAME_MESSAGE_MAX 1024

typedef struct frame_header {
    uint32_t magic;
    uint32_t type;
    uint64_t task_id;
    uint64_t fn;      /* TASK: address of the task function */
    int32_t  error;   /* FAILURE: the outcome, a WP_E* code */
    int32_t  code;    /* FAILURE: the task's own code */
    uint64_t length;  /* payload bytes that follow */
    int64_t  expire_us; /* TASK: not to be started at or after this CLOCK_MONOTONIC time
                           (µs; the task's queue deadline), 0 = no limit; RESULT and
                           FAILURE: FRAME_LEAVING or 0 */
} frame_header;

/* An answer's expire_us when its worker leaves right after it: a relayed
   worker past worker_rss_limit says so, since its pool claims the next task
   as it sends it (lib/relay.h) and must send none. */
#define FRAME_LEAVING 1

void wp__frame_header(frame_header *h, enum frame_type type, uint64_t task_id,
                      uint64_t length) WP_INTERNAL;

/* Which frames a reader accepts next. */
typedef struct frame_expect {
    unsigned types;       /* FRAME_BIT() mask */
    uint64_t task_id;     /* RESULT/FAILURE must carry this id (0 = none expected) */
    size_t   max_message; /* payload limit */
} frame_expect;

typedef struct frame_reader {
    frame_header hdr;
    size_t       have;     /* bytes received of header + payload */
    char        *payload;  /* allocated once the header has been validated */
    const char  *why;      /* what was wrong, after an error */
} frame_reader;

enum { FRAME_MORE = 0, FRAME_DONE = 1 };

void  wp__frame_reader_init(frame_reader *r) WP_INTERNAL;
/* Free the payload (unless taken) and reset for the next frame. */
void  wp__frame_reader_reset(frame_reader *r) WP_INTERNAL;
/* Where the next bytes go, and at most how many belong to this frame. */
void *wp__frame_reader_space(frame_reader *r, size_t *len) WP_INTERNAL;
/* n bytes arrived in the space.  FRAME_MORE, FRAME_DONE (hdr and payload
   complete), WP_EPROTO (bad magic, type or task id; r->why says which),
   WP_E2BIG (length over the limit) or WP_ENOMEM. */
int   wp__frame_reader_advance(frame_reader *r, size_t n, const frame_expect *ex) WP_INTERNAL;
/* Take ownership of the completed payload (NULL if empty). */
char *wp__frame_reader_take(frame_reader *r) WP_INTERNAL;

#endif
