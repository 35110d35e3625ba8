/* SPDX-License-Identifier: MIT */
/*
 * frame.c — building and validating wire frames (see frame.h).  No I/O and
 * no knowledge of pools, so a fuzzer or a unit test can feed it any bytes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "frame.h"

void wp__frame_header(frame_header *h, enum frame_type type, uint64_t task_id,
                      uint64_t length)
{
    memset(h, 0, sizeof *h);
    h->magic = FRAME_MAGIC;
    h->type = (uint32_t)type;
    h->task_id = task_id;
    h->length = length;
}

void wp__frame_reader_init(frame_reader *r)
{
    memset(r, 0, sizeof *r);
}

void wp__frame_reader_reset(frame_reader *r)
{
    free(r->payload);
    wp__frame_reader_init(r);
}

void *wp__frame_reader_space(frame_reader *r, size_t *len)
{
    if (r->have < sizeof r->hdr) {
        *len = sizeof r->hdr - r->have;
        return (char *)&r->hdr + r->have;
    }
    size_t got = r->have - sizeof r->hdr;
    *len = (size_t)r->hdr.length - got;
    return r->payload != NULL ? r->payload + got : NULL;
}

static int check_header(frame_reader *r, const frame_expect *ex)
{
    const frame_header *h = &r->hdr;
    if (h->magic != FRAME_MAGIC) {
        r->why = "bad magic";
        return WP_EPROTO;
    }
    if (h->type >= 32 || !(ex->types & FRAME_BIT(h->type))) {
        r->why = "unexpected frame type";
        return WP_EPROTO;
    }
    if (h->type == FRAME_TASK && h->task_id == 0) {
        r->why = "task without an id";
        return WP_EPROTO;
    }
    int answers_task = h->type == FRAME_RESULT || h->type == FRAME_FAILURE;
    if (answers_task && (ex->task_id == 0 || h->task_id != ex->task_id)) {
        r->why = "a task id it was not given";
        return WP_EPROTO;
    }
    if (h->type == FRAME_READY && h->length != 0) {
        r->why = "ready frame with a payload";
        return WP_EPROTO;
    }
    uint64_t limit = h->type == FRAME_FAILURE ? FRAME_MESSAGE_MAX : ex->max_message;
    if (h->length > limit || h->length >= SIZE_MAX) { /* +1 below must not wrap */
        r->why = "length over the limit";
        return h->type == FRAME_FAILURE ? WP_EPROTO : WP_E2BIG;
    }
    return 0;
}

int wp__frame_reader_advance(frame_reader *r, size_t n, const frame_expect *ex)
{
    size_t room;
    wp__frame_reader_space(r, &room);
    if (n > room) {
        r->why = "more bytes than the frame holds";
        return WP_EPROTO;
    }
    int header_was_incomplete = r->have < sizeof r->hdr;
    r->have += n;
    if (r->have < sizeof r->hdr)
        return FRAME_MORE;
    if (header_was_incomplete) {
        int rc = check_header(r, ex);
        if (rc < 0)
            return rc;
        if (r->hdr.length > 0) {
            /* +1 keeps a failure message NUL-terminated for free. */
            r->payload = malloc((size_t)r->hdr.length + 1);
            if (r->payload == NULL) {
                r->why = "out of memory";
                return WP_ENOMEM;
            }
            r->payload[r->hdr.length] = '\0';
        }
    }
    return r->have == sizeof r->hdr + r->hdr.length ? FRAME_DONE : FRAME_MORE;
}

char *wp__frame_reader_take(frame_reader *r)
{
    char *p = r->payload;
    r->payload = NULL;
    return p;
}
