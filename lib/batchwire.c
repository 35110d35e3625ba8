/* SPDX-License-Identifier: MIT */
/*
 * batchwire.c — a batch's bytes (see batchwire.h): packing the argument on
 * the pool's side, the trampoline that unpacks it and runs the batch
 * function in the worker, and reading the packed results back.  Every read
 * of the bytes is bounds-checked and done with memcpy (nothing in them is
 * aligned); all of it is O(items + bytes).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchwire.h"
#include "worker.h"

/* ------------------------------------------------------- the pool's side */

size_t wp__batch_pack_header(char *arg, wp_batch_fn fn, size_t n)
{
    batch_header h = { 0, n };
    memcpy(&h.fn, &fn, sizeof fn);
    memcpy(arg, &h, sizeof h);
    return sizeof h;
}

size_t wp__batch_pack_item(char *arg, size_t off, const void *data, size_t len)
{
    uint64_t word = len;
    memcpy(arg + off, &word, sizeof word);
    if (len > 0)
        memcpy(arg + off + sizeof word, data, len);
    return off + sizeof word + len;
}

void wp__batch_result_begin(batch_result_reader *r, const void *p, size_t len, size_t n)
{
    uint64_t count = 0;
    r->p = p;
    r->len = len;
    r->off = sizeof count;
    r->ok = len >= sizeof count;
    if (r->ok)
        memcpy(&count, p, sizeof count);
    r->ok = r->ok && count == n;
}

bool wp__batch_result_next(batch_result_reader *r, item_result_header *h, const char **bytes)
{
    if (r->ok && r->len - r->off >= sizeof *h) {
        memcpy(h, r->p + r->off, sizeof *h);
        r->off += sizeof *h;
        r->ok = h->len <= r->len - r->off;
    } else {
        r->ok = false;
    }
    if (!r->ok)
        return false;
    *bytes = r->p + r->off;
    r->off += (size_t)h->len;
    return true;
}

/* ----------------------------------------------------- the worker's side */

static int pack_item_result(wp_buf *out, const wp_buf *r)
{
    item_result_header h = { 0, 0, r->len };
    const void *bytes = r->data;
    if (r->overflow) {
        h.error = WP_E2BIG;
        bytes = "item result larger than max_message";
    } else if (r->failed) {
        h.error = WP_ETASK;
        h.code = r->code;
        bytes = r->message;
    }
    if (h.error != 0)
        h.len = strlen(bytes);
    int rc = wp_buf_append(out, &h, sizeof h);
    return rc < 0 ? rc : wp_buf_append(out, bytes, (size_t)h.len);
}

/* The items of an argument into items[0 .. n): 0, or WP_EPROTO (on out)
   if the bytes do not hold n of them. */
static int unpack_items(const char *p, const char *end, wp_item *items, size_t n, wp_buf *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t ilen;
        if ((size_t)(end - p) < sizeof ilen)
            return wp__buf_fail_outcome(out, WP_EPROTO, "batch argument truncated");
        memcpy(&ilen, p, sizeof ilen);
        p += sizeof ilen;
        if (ilen > (uint64_t)(end - p))
            return wp__buf_fail_outcome(out, WP_EPROTO, "batch argument truncated");
        items[i] = (wp_item){ .data = p, .len = (size_t)ilen };
        p += ilen;
    }
    return 0;
}

int wp__batch_trampoline(const void *arg, size_t len, wp_buf *out)
{
    batch_header h;
    if (len < sizeof h)
        return wp__buf_fail_outcome(out, WP_EPROTO, "batch argument too short");
    memcpy(&h, arg, sizeof h);
    const char *why = NULL;
    void *here = wp__worker_code(h.fn, true, &why); /* exec'd: the pool's address, found here */
    if (here == NULL) {
        char msg[WP_MSG_MAX];
        snprintf(msg, sizeof msg, "batch function %#llx: %s", (unsigned long long)h.fn, why);
        return wp__buf_fail_outcome(out, WP_ENOFUNC, msg);
    }
    wp_batch_fn fn;
    memcpy(&fn, &here, sizeof fn);
    size_t n = (size_t)h.n;
    /* A count past what the bytes could hold is caught by unpack_items;
       one that cannot even be allocated fails here first. */
    wp_item *items = calloc(n ? n : 1, sizeof *items);
    wp_buf *bufs = calloc(n ? n : 1, sizeof *bufs);
    wp_buf **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    int rc = 0;
    if (items == NULL || bufs == NULL || ptrs == NULL)
        rc = wp__buf_fail_outcome(out, WP_ENOMEM, "out of memory unpacking the batch");
    if (rc == 0)
        rc = unpack_items((const char *)arg + sizeof h, (const char *)arg + len, items, n, out);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bufs[i].max = out->max;
        ptrs[i] = &bufs[i];
    }
    if (rc == 0)
        rc = fn(items, n, ptrs); /* non-zero, whatever it is: the batch's own failure */
    if (rc == 0) {
        uint64_t count = n;
        int packed = wp_buf_append(out, &count, sizeof count);
        for (size_t i = 0; packed == 0 && i < n; i++)
            packed = pack_item_result(out, &bufs[i]);
        /* Past max_message the worker reports WP_E2BIG from the overflow
           flag; no memory is a library outcome. */
        if (packed == WP_ENOMEM)
            rc = wp__buf_fail_outcome(out, WP_ENOMEM, "out of memory packing the results");
    }
    for (size_t i = 0; bufs != NULL && i < n; i++)
        free(bufs[i].data);
    free(items);
    free(bufs);
    free(ptrs);
    return rc;
}
