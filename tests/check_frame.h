/* SPDX-License-Identifier: MIT */
/*
 * check_frame.h — what the files of the frame suite share: building frames
 * and feeding them to a reader (check_frame.c; it says how the suite's
 * tests work), and each file's part of the table.
 */
#ifndef WP_CHECK_FRAME_H
#define WP_CHECK_FRAME_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <stdio.h>
#include <stdlib.h>

#include "frame.h"
#include "testutil.h"

#define HDR sizeof(frame_header)

/* A small deterministic PRNG (xorshift64*), independent of rand():
   seeded, the next number, one below n (0 if n is 0). */
void     rng_seed(uint64_t s);
uint64_t rng(void);
size_t   rng_below(size_t n);

/* Build header + payload into a fresh buffer; *len gets its size.
   build_frame: the header of a frame of this type, id and length plen. */
unsigned char *build(const frame_header *h, const void *payload, size_t plen, size_t *len);
unsigned char *build_frame(enum frame_type type, uint64_t id, const void *payload,
                           size_t plen, size_t *len);

/*
 * Feed buf to r in chunks: chunk(i) says how many bytes to offer next (it is
 * cut to what the reader has room for).  Stops at the first result other
 * than FRAME_MORE.  *used gets the bytes consumed.
 */
typedef size_t (*chunker)(size_t step);
size_t chunk_all(size_t step);    /* all at once */
size_t chunk_one(size_t step);    /* byte by byte */
size_t chunk_random(size_t step); /* random splits, mostly small */
int feed(frame_reader *r, const unsigned char *buf, size_t len, chunker chunk,
         const frame_expect *ex, size_t *used);

/* What a worker may be sent, and what it may send for task id. */
extern const frame_expect to_worker;
frame_expect from_worker(uint64_t id);

/* Feed a whole frame with the given header; returns the reader's answer.
   The reader is left as the frame left it (caller resets).  feed_frame:
   a frame made here, with the length its header announces and plen bytes
   of payload. */
int feed_header(frame_reader *r, const frame_header *h, const void *payload, size_t plen,
                const frame_expect *ex);
int feed_frame(frame_reader *r, enum frame_type type, uint64_t task_id, uint64_t length,
               const void *payload, size_t plen, const frame_expect *ex);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn frame_add_valid_tests, frame_add_invalid_tests, frame_add_fuzz_tests;

#endif
