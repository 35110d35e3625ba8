/* SPDX-License-Identifier: MIT */
/*
 * batchwire.h — how a batch travels as one pool task (docs/ARCHITECTURE.md,
 * "Wire format"): the argument that packs its items, the trampoline that
 * runs the batch function in the worker, and the result that packs one
 * outcome per item.  Kept apart from the batcher's thread and API
 * (batcher.c), which know items and futures; this knows only bytes.
 *
 * Layout (both ends are the same binary, host byte order):
 *   argument: batch_header, then per item { uint64 len; bytes }
 *   result:   uint64 n, then per item { item_result_header; bytes }
 *             (bytes are the item's result, or its failure message)
 * The trampoline's own failures (an argument that does not parse, no memory
 * in the worker) are library outcomes, WP_EPROTO and WP_ENOMEM
 * (wp__buf_fail_outcome): the batch task fails with them, never with
 * WP_ETASK, which is the batch function's own failure.
 */
#ifndef WP_BATCHWIRE_H
#define WP_BATCHWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct batch_header {
    uint64_t fn;   /* the wp_batch_fn */
    uint64_t n;    /* items that follow */
} batch_header;

/* Bytes an argument spends beyond the items' own: the header, and per item
   its length word. */
#define BATCH_ARG_HEADER    sizeof(batch_header)
#define BATCH_ITEM_OVERHEAD sizeof(uint64_t)

typedef struct item_result_header {
    int32_t  error;  /* 0, WP_ETASK or WP_E2BIG */
    int32_t  code;   /* WP_ETASK: the item's own code (wp_buf_fail) */
    uint64_t len;    /* result or message bytes that follow */
} item_result_header;

/* Pool side: start an argument of n items for fn at arg (room for
   BATCH_ARG_HEADER bytes); returns the offset of the first item. */
size_t wp__batch_pack_header(char *arg, wp_batch_fn fn, size_t n) WP_INTERNAL;
/* Append one item at off (room for BATCH_ITEM_OVERHEAD + len bytes);
   returns the offset after it. */
size_t wp__batch_pack_item(char *arg, size_t off, const void *data, size_t len) WP_INTERNAL;

/* The task function every batch runs as, in the worker: unpack the items,
   run the batch function, pack the per-item results. */
int wp__batch_trampoline(const void *arg, size_t len, wp_buf *out) WP_INTERNAL;

/* Pool side: reading a batch's result, item by item. */
typedef struct batch_result_reader {
    const char *p;
    size_t      len, off;
    bool        ok;    /* everything read so far was well formed */
} batch_result_reader;

/* Start reading result bytes p[0 .. len) of a batch of n items. */
void wp__batch_result_begin(batch_result_reader *r, const void *p, size_t len, size_t n) WP_INTERNAL;
/* The next item's header and bytes: false once the result is malformed
   (too short, a count that is not n, a length past the end), and for
   every item after. */
bool wp__batch_result_next(batch_result_reader *r, item_result_header *h,
                           const char **bytes) WP_INTERNAL;

#endif
