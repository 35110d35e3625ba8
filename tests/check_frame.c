/* SPDX-License-Identifier: MIT */
/*
 * check_frame.c — the wire-frame header and incremental reader
 * (lib/frame.c): valid frames fed whole, byte by byte and in random splits;
 * every validation rule (magic, type, expected types, task ids, READY
 * without payload, length limits checked before allocating); misuse of the
 * reader; ownership of the payload; and a fuzz loop checked against a model
 * of the rules.
 *
 * This file holds what the suite's files share (check_frame.h: building
 * frames and feeding them to a reader) and its main; the tests are in one
 * file per concern, run in this order:
 *   check_frame_valid.c    valid frames, however they are fed;
 *   check_frame_invalid.c  every validation rule, and misuse of the reader;
 *   check_frame_fuzz.c     random and mutated input against a model.
 */
#define _GNU_SOURCE
#include "check_frame.h"

/* ---------------------------------------------------------------- helpers */

/* A small deterministic PRNG (xorshift64*), independent of rand(). */
static uint64_t rng_state;
void rng_seed(uint64_t s) { rng_state = s ? s : 0x9E3779B97F4A7C15ull; }
uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
size_t rng_below(size_t n) { return n ? (size_t)(rng() % n) : 0; }

/* Build header + payload into a fresh buffer; *len gets its size. */
unsigned char *build(const frame_header *h, const void *payload, size_t plen, size_t *len)
{
    unsigned char *buf = malloc(HDR + plen + 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, h, HDR);
    if (plen)
        memcpy(buf + HDR, payload, plen);
    *len = HDR + plen;
    return buf;
}

unsigned char *build_frame(enum frame_type type, uint64_t id, const void *payload,
                                  size_t plen, size_t *len)
{
    frame_header h;
    wp__frame_header(&h, type, id, plen);
    return build(&h, payload, plen, len);
}

size_t chunk_all(size_t step) { (void)step; return SIZE_MAX; }
size_t chunk_one(size_t step) { (void)step; return 1; }
size_t chunk_random(size_t step) { (void)step; return 1 + rng_below(rng_below(4) == 0 ? 200 : 9); }

int feed(frame_reader *r, const unsigned char *buf, size_t len, chunker chunk,
                const frame_expect *ex, size_t *used)
{
    size_t off = 0;
    int rc = FRAME_MORE;
    for (size_t step = 0; off < len; step++) {
        size_t room = 0;
        void *space = wp__frame_reader_space(r, &room);
        size_t k = chunk(step);
        if (k > room)
            k = room;
        if (k > len - off)
            k = len - off;
        if (k == 0)
            break;
        memcpy(space, buf + off, k);
        off += k;
        rc = wp__frame_reader_advance(r, k, ex);
        if (rc != FRAME_MORE)
            break;
    }
    if (used != NULL)
        *used = off;
    return rc;
}

const frame_expect to_worker = { .types = FRAME_TO_WORKER, .task_id = 0, .max_message = 1 << 20 };

frame_expect from_worker(uint64_t id)
{
    frame_expect ex = { .types = FRAME_FROM_WORKER, .task_id = id, .max_message = 1 << 20 };
    return ex;
}

/* Feed a whole frame with the given header; returns the reader's answer.
   The reader is left as the frame left it (caller resets). */
int feed_header(frame_reader *r, const frame_header *h, const void *payload, size_t plen,
                       const frame_expect *ex)
{
    size_t len;
    unsigned char *buf = build(h, payload, plen, &len);
    wp__frame_reader_init(r);
    int rc = feed(r, buf, len, chunk_all, ex, NULL);
    free(buf);
    return rc;
}

/* feed_header of a frame made here: type, task id and the length its
   header announces, with plen bytes of payload. */
int feed_frame(frame_reader *r, enum frame_type type, uint64_t task_id, uint64_t length,
                      const void *payload, size_t plen, const frame_expect *ex)
{
    frame_header h;
    wp__frame_header(&h, type, task_id, length);
    return feed_header(r, &h, payload, plen, ex);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        frame_add_valid_tests, frame_add_invalid_tests, frame_add_fuzz_tests,
    };
    const tu_suite suite = { .name = "frame", .timeout_s = 120 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
