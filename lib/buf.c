/* SPDX-License-Identifier: MIT */
/*
 * buf.c — wp_buf, the result a task function fills in its worker: bytes
 * appended up to max_message (doubling, so appends are O(1) amortised), or
 * a failure with the task's own code and message, or (for the library's
 * own task functions) a library outcome.  Declared in worker.h; the worker
 * loop (worker.c) turns it into a RESULT or FAILURE frame.
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define BUF_FIRST_CAP 256 /* bytes of a result's first allocation; then it doubles */

int wp_buf_append(wp_buf *b, const void *data, size_t len)
{
    if (b == NULL || (data == NULL && len > 0))
        return WP_EINVAL;
    if (len > b->max - b->len) {
        b->overflow = true;
        return WP_E2BIG;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : BUF_FIRST_CAP;
        while (cap < b->len + len)
            cap = cap > b->max / 2 ? b->max : cap * 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return WP_ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void buf_failed(wp_buf *b, int code, int outcome, const char *message)
{
    b->failed = true;
    b->code = code;
    b->outcome = outcome;
    snprintf(b->message, sizeof b->message, "%s", message != NULL ? message : "");
}

int wp_buf_fail(wp_buf *b, int code, const char *message)
{
    if (b != NULL)
        buf_failed(b, code, 0, message);
    return code;
}

int wp__buf_fail_outcome(wp_buf *b, int outcome, const char *message)
{
    assert(outcome < 0 && wp__worker_outcome(outcome) && outcome != WP_ETASK);
    buf_failed(b, 0, outcome, message);
    return outcome;
}
