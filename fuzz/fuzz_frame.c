/* SPDX-License-Identifier: MIT */
/*
 * fuzz_frame.c — libFuzzer target for the incremental frame reader
 * (lib/frame.c).  An input is a frame_expect and a chunking seed, then a
 * byte stream that is fed to the reader in chunks the seed chooses (with
 * now and then a call that offers more than the reader has room for).
 * Every answer is checked against the rules, computed here on their own:
 * a frame reported done has the magic, a type the reader was told to
 * expect, a length within its limit, the task id rules, and exactly the
 * payload bytes of the stream; a refused header is refused with the right
 * code before anything was allocated.  After a frame, done or refused,
 * reading goes on with the next bytes.
 */
#include "config.h"

#include "frame.h"
#include "fuzz.h"

/* Chunks: mostly a few bytes, sometimes large ones. */
#define SMALL_CHUNK 9
#define LARGE_CHUNK 4096
#define LARGE_ONE_IN 4
/* One in this many steps offers one byte more than there is room for. */
#define OVERFEED_ONE_IN 32

#define HDR sizeof(frame_header)

/* What the reader must answer once this header is complete: 0 to accept. */
static int verdict(const frame_header *h, const frame_expect *ex)
{
    if (h->magic != FRAME_MAGIC)
        return WP_EPROTO;
    if (h->type >= 32 || ((ex->types >> h->type) & 1u) == 0)
        return WP_EPROTO;
    switch (h->type) {
    case FRAME_TASK:
        if (h->task_id == 0)
            return WP_EPROTO;
        break;
    case FRAME_RESULT:
    case FRAME_FAILURE:
        if (ex->task_id == 0 || h->task_id != ex->task_id)
            return WP_EPROTO;
        break;
    case FRAME_READY:
        if (h->length != 0)
            return WP_EPROTO;
        break;
    default:
        break;
    }
    if (h->type == FRAME_FAILURE)
        return h->length > FRAME_MESSAGE_MAX ? WP_EPROTO : 0;
    return h->length > ex->max_message ? WP_E2BIG : 0;
}

static void check_done(const frame_reader *r, const frame_expect *ex, const uint8_t *frame)
{
    const frame_header *h = &r->hdr;
    FUZZ_CHECK(verdict(h, ex) == 0);
    FUZZ_CHECK(h->magic == FRAME_MAGIC);
    FUZZ_CHECK(h->type < 32 && (ex->types & FRAME_BIT(h->type)));
    FUZZ_CHECK(h->length <= (h->type == FRAME_FAILURE ? FRAME_MESSAGE_MAX : ex->max_message));
    FUZZ_CHECK(h->type != FRAME_TASK || h->task_id != 0);
    FUZZ_CHECK((h->type != FRAME_RESULT && h->type != FRAME_FAILURE) ||
               (ex->task_id != 0 && h->task_id == ex->task_id));
    FUZZ_CHECK(r->have == HDR + h->length);
    FUZZ_CHECK(memcmp(h, frame, HDR) == 0);
    if (h->length == 0) {
        FUZZ_CHECK(r->payload == NULL);
        return;
    }
    FUZZ_CHECK(r->payload != NULL);
    FUZZ_CHECK(memcmp(r->payload, frame + HDR, (size_t)h->length) == 0);
    FUZZ_CHECK(r->payload[h->length] == '\0');
}

static size_t next_chunk(uint64_t *rng)
{
    uint64_t x = fuzz_rng(rng);
    return 1 + (size_t)((x >> 8) % (x % LARGE_ONE_IN == 0 ? LARGE_CHUNK : SMALL_CHUNK));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = { data, size };
    frame_fuzz_config c;
    fuzz_take(&in, &c, sizeof c);
    frame_expect ex = { .types = c.types, .task_id = c.task_id,
                        .max_message = c.max_message % (FRAME_FUZZ_MAX_MESSAGE + 1) };
    uint64_t rng = c.seed;
    const uint8_t *stream = in.data;
    size_t len = in.size, off = 0, start = 0; /* start: where this frame began */

    frame_reader r;
    wp__frame_reader_init(&r);
    while (off < len) {
        size_t room;
        void *space = wp__frame_reader_space(&r, &room);
        FUZZ_CHECK(room > 0 && space != NULL);
        FUZZ_CHECK(r.have == off - start);
        if (fuzz_rng(&rng) % OVERFEED_ONE_IN == 0) {
            /* Refused, and nothing changes. */
            size_t had = r.have;
            FUZZ_CHECK(wp__frame_reader_advance(&r, room + 1, &ex) == WP_EPROTO);
            FUZZ_CHECK(r.have == had && r.why != NULL);
            r.why = NULL;
        }
        size_t k = next_chunk(&rng);
        k = k < room ? k : room;
        k = k < len - off ? k : len - off;
        memcpy(space, stream + off, k);
        bool header_was_partial = r.have < HDR;
        int rc = wp__frame_reader_advance(&r, k, &ex);
        off += k;
        if (rc == FRAME_MORE) {
            FUZZ_CHECK(r.why == NULL);
            /* A header just completed was accepted: a payload is coming. */
            if (header_was_partial && r.have >= HDR) {
                FUZZ_CHECK(verdict(&r.hdr, &ex) == 0 && r.hdr.length > 0);
                FUZZ_CHECK(r.payload != NULL);
            }
            continue;
        }
        if (rc == FRAME_DONE) {
            check_done(&r, &ex, stream + start);
            if (fuzz_rng(&rng) & 1u)
                free(wp__frame_reader_take(&r));
        } else {
            /* Refused when its header completed, before allocating. */
            FUZZ_CHECK(header_was_partial && r.have == HDR);
            FUZZ_CHECK(rc == verdict(&r.hdr, &ex));
            FUZZ_CHECK(r.why != NULL && r.payload == NULL);
        }
        wp__frame_reader_reset(&r);
        start = off;
    }
    /* The stream ended inside a frame: only more is wanted. */
    FUZZ_CHECK(r.have == off - start);
    wp__frame_reader_reset(&r);
    return 0;
}
