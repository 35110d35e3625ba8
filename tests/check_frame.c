/* SPDX-License-Identifier: MIT */
/*
 * check_frame.c — the wire-frame header and incremental reader
 * (lib/frame.c): valid frames fed whole, byte by byte and in random splits;
 * every validation rule (magic, type, expected types, task ids, READY
 * without payload, length limits checked before allocating); misuse of the
 * reader; ownership of the payload; and a fuzz loop checked against a model
 * of the rules.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

#define HDR sizeof(frame_header)

/* A small deterministic PRNG (xorshift64*), independent of rand(). */
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s ? s : 0x9E3779B97F4A7C15ull; }
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static size_t rng_below(size_t n) { return n ? (size_t)(rng() % n) : 0; }

/* Build header + payload into a fresh buffer; *len gets its size. */
static unsigned char *build(const frame_header *h, const void *payload, size_t plen, size_t *len)
{
    unsigned char *buf = malloc(HDR + plen + 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, h, HDR);
    if (plen)
        memcpy(buf + HDR, payload, plen);
    *len = HDR + plen;
    return buf;
}

static unsigned char *build_frame(enum frame_type type, uint64_t id, const void *payload,
                                  size_t plen, size_t *len)
{
    frame_header h;
    wp__frame_header(&h, type, id, plen);
    return build(&h, payload, plen, len);
}

/*
 * Feed buf to r in chunks: chunk(i) says how many bytes to offer next (it is
 * cut to what the reader has room for).  Stops at the first result other
 * than FRAME_MORE.  *used gets the bytes consumed.
 */
typedef size_t (*chunker)(size_t step);

static size_t chunk_all(size_t step) { (void)step; return SIZE_MAX; }
static size_t chunk_one(size_t step) { (void)step; return 1; }
static size_t chunk_random(size_t step) { (void)step; return 1 + rng_below(rng_below(4) == 0 ? 200 : 9); }

static int feed(frame_reader *r, const unsigned char *buf, size_t len, chunker chunk,
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

static const frame_expect to_worker = { .types = FRAME_TO_WORKER, .task_id = 0, .max_message = 1 << 20 };

static frame_expect from_worker(uint64_t id)
{
    frame_expect ex = { .types = FRAME_FROM_WORKER, .task_id = id, .max_message = 1 << 20 };
    return ex;
}

/* Feed a whole frame with the given header; returns the reader's answer.
   The reader is left as the frame left it (caller resets). */
static int feed_header(frame_reader *r, const frame_header *h, const void *payload, size_t plen,
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
static int feed_frame(frame_reader *r, enum frame_type type, uint64_t task_id, uint64_t length,
                      const void *payload, size_t plen, const frame_expect *ex)
{
    frame_header h;
    wp__frame_header(&h, type, task_id, length);
    return feed_header(r, &h, payload, plen, ex);
}

/* ------------------------------------------------------------ valid frames */

WP_TEST(header_builder)
{
    frame_header h;
    memset(&h, 0xAB, sizeof h);
    wp__frame_header(&h, FRAME_FAILURE, 42, 17);
    ck_assert_uint_eq(h.magic, FRAME_MAGIC);
    ck_assert_uint_eq(h.type, FRAME_FAILURE);
    ck_assert_uint_eq(h.task_id, 42);
    ck_assert_uint_eq(h.length, 17);
    ck_assert_uint_eq(h.fn, 0);
    ck_assert_int_eq(h.error, 0);
    ck_assert_int_eq(h.code, 0);
    ck_assert_uint_eq(sizeof h, 40); /* no padding: bytes on the wire are all fields */
}

static void check_task_frame(chunker chunk, unsigned rounds)
{
    static const char msg[] = "hello, worker: run this";
    const size_t plen = sizeof msg - 1;
    frame_header h;
    wp__frame_header(&h, FRAME_TASK, 7, plen);
    h.fn = 0x1234567890abcdefull;
    size_t len;
    unsigned char *buf = build(&h, msg, plen, &len);
    for (unsigned i = 0; i < rounds; i++) {
        frame_reader r;
        wp__frame_reader_init(&r);
        size_t used = 0;
        int rc = feed(&r, buf, len, chunk, &to_worker, &used);
        ck_assert_int_eq(rc, FRAME_DONE);
        ck_assert_uint_eq(used, len);
        ck_assert_uint_eq(r.hdr.magic, FRAME_MAGIC);
        ck_assert_uint_eq(r.hdr.type, FRAME_TASK);
        ck_assert_uint_eq(r.hdr.task_id, 7);
        ck_assert_uint_eq(r.hdr.fn, 0x1234567890abcdefull);
        ck_assert_uint_eq(r.hdr.length, plen);
        ck_assert_ptr_nonnull(r.payload);
        ck_assert_mem_eq(r.payload, msg, plen);
        ck_assert_int_eq(r.payload[plen], '\0');
        ck_assert_str_eq(r.payload, msg);
        /* Nothing more fits in a complete frame. */
        size_t room = 99;
        wp__frame_reader_space(&r, &room);
        ck_assert_uint_eq(room, 0);
        wp__frame_reader_reset(&r);
        ck_assert_ptr_null(r.payload);
        ck_assert_uint_eq(r.have, 0);
    }
    free(buf);
}

WP_TEST(task_whole)
{
    check_task_frame(chunk_all, 1);
}

WP_TEST(task_byte_by_byte)
{
    /* Every byte but the last answers FRAME_MORE. */
    static const char msg[] = "abcdefgh";
    size_t len;
    unsigned char *buf = build_frame(FRAME_TASK, 99, msg, 8, &len);
    frame_reader r;
    wp__frame_reader_init(&r);
    for (size_t i = 0; i < len; i++) {
        size_t room = 0;
        unsigned char *space = wp__frame_reader_space(&r, &room);
        ck_assert_uint_eq(room, i < HDR ? HDR - i : len - i);
        *space = buf[i];
        int rc = wp__frame_reader_advance(&r, 1, &to_worker);
        ck_assert_int_eq(rc, i + 1 == len ? FRAME_DONE : FRAME_MORE);
        /* The payload is allocated once the header is complete, not before. */
        if (i + 1 < HDR)
            ck_assert_ptr_null(r.payload);
        else
            ck_assert_ptr_nonnull(r.payload);
    }
    ck_assert_mem_eq(r.payload, msg, 8);
    ck_assert_int_eq(r.payload[8], '\0');
    wp__frame_reader_reset(&r);
    free(buf);
    check_task_frame(chunk_one, 1);
}

WP_TEST(task_random_splits)
{
    rng_seed(12345);
    check_task_frame(chunk_random, 2000);
    /* And a bigger payload, split anywhere. */
    size_t plen = 100000, len;
    unsigned char *payload = malloc(plen);
    ck_assert_ptr_nonnull(payload);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (unsigned char)(i * 7 + 3);
    unsigned char *buf = build_frame(FRAME_TASK, 5, payload, plen, &len);
    for (unsigned round = 0; round < 50; round++) {
        frame_reader r;
        wp__frame_reader_init(&r);
        size_t used;
        ck_assert_int_eq(feed(&r, buf, len, chunk_random, &to_worker, &used), FRAME_DONE);
        ck_assert_uint_eq(used, len);
        ck_assert_mem_eq(r.payload, payload, plen);
        ck_assert_int_eq(r.payload[plen], '\0');
        wp__frame_reader_reset(&r);
    }
    free(buf);
    free(payload);
}

WP_TEST(result_failure_ready_valid)
{
    frame_expect ex = from_worker(11);
    frame_reader r;
    size_t len;

    /* RESULT with a payload. */
    unsigned char *buf = build_frame(FRAME_RESULT, 11, "xyz", 3, &len);
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_one, &ex, NULL), FRAME_DONE);
    ck_assert_str_eq(r.payload, "xyz");
    wp__frame_reader_reset(&r);
    free(buf);

    /* RESULT with no payload: no allocation, take() gives NULL. */
    buf = build_frame(FRAME_RESULT, 11, NULL, 0, &len);
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_all, &ex, NULL), FRAME_DONE);
    ck_assert_ptr_null(r.payload);
    ck_assert_ptr_null(wp__frame_reader_take(&r));
    wp__frame_reader_reset(&r);
    free(buf);

    /* FAILURE: error and code in the header, message as payload. */
    frame_header h;
    wp__frame_header(&h, FRAME_FAILURE, 11, 9);
    h.error = WP_ETASK;
    h.code = 42;
    buf = build(&h, "it broke!", 9, &len);
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_random, &ex, NULL), FRAME_DONE);
    ck_assert_int_eq(r.hdr.error, WP_ETASK);
    ck_assert_int_eq(r.hdr.code, 42);
    ck_assert_str_eq(r.payload, "it broke!");
    wp__frame_reader_reset(&r);
    free(buf);

    /* FAILURE of exactly FRAME_MESSAGE_MAX bytes, even with a smaller
       max_message: the message limit applies to FAILURE. */
    char *m = malloc(FRAME_MESSAGE_MAX);
    ck_assert_ptr_nonnull(m);
    memset(m, 'm', FRAME_MESSAGE_MAX);
    wp__frame_header(&h, FRAME_FAILURE, 11, FRAME_MESSAGE_MAX);
    frame_expect small = ex;
    small.max_message = 16;
    ck_assert_int_eq(feed_header(&r, &h, m, FRAME_MESSAGE_MAX, &small), FRAME_DONE);
    ck_assert_uint_eq(strlen(r.payload), FRAME_MESSAGE_MAX);
    wp__frame_reader_reset(&r);
    free(m);

    /* READY: no payload; the task id does not matter. */
    ex.task_id = 0;
    ck_assert_int_eq(feed_frame(&r, FRAME_READY, 0, 0, NULL, 0, &ex), FRAME_DONE);
    ck_assert_ptr_null(r.payload);
    wp__frame_reader_reset(&r);
}

WP_TEST(two_frames_back_to_back)
{
    /* One reader, reset between frames, fed from one stream. */
    size_t l1, l2;
    unsigned char *f1 = build_frame(FRAME_RESULT, 3, "first", 5, &l1);
    unsigned char *f2 = build_frame(FRAME_RESULT, 4, "second!", 7, &l2);
    unsigned char *stream = malloc(l1 + l2);
    ck_assert_ptr_nonnull(stream);
    memcpy(stream, f1, l1);
    memcpy(stream + l1, f2, l2);
    frame_expect ex = from_worker(3);
    frame_reader r;
    wp__frame_reader_init(&r);
    size_t used;
    ck_assert_int_eq(feed(&r, stream, l1 + l2, chunk_all, &ex, &used), FRAME_DONE);
    ck_assert_uint_eq(used, l1); /* the reader never takes bytes of the next frame */
    char *p1 = wp__frame_reader_take(&r);
    wp__frame_reader_reset(&r);
    ex.task_id = 4;
    ck_assert_int_eq(feed(&r, stream + used, l1 + l2 - used, chunk_one, &ex, &used), FRAME_DONE);
    ck_assert_uint_eq(used, l2);
    ck_assert_str_eq(p1, "first");
    ck_assert_str_eq(r.payload, "second!");
    wp__frame_reader_reset(&r);
    free(p1);
    free(stream);
    free(f1);
    free(f2);
}

WP_TEST(take_transfers_ownership)
{
    size_t len;
    unsigned char *buf = build_frame(FRAME_TASK, 1, "owned", 5, &len);
    frame_reader r;
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_all, &to_worker, NULL), FRAME_DONE);
    char *before = r.payload;
    char *p = wp__frame_reader_take(&r);
    ck_assert_ptr_eq(p, before);
    ck_assert_ptr_null(r.payload);
    ck_assert_ptr_null(wp__frame_reader_take(&r)); /* taken once */
    /* reset must not free what was taken (ASan would see a double free or
       use after free below). */
    wp__frame_reader_reset(&r);
    ck_assert_str_eq(p, "owned");
    p[0] = 'O';
    ck_assert_str_eq(p, "Owned");
    free(p);
    /* reset without take frees it (LeakSanitizer would see a leak). */
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_all, &to_worker, NULL), FRAME_DONE);
    wp__frame_reader_reset(&r);
    ck_assert_ptr_null(r.payload);
    free(buf);
}

WP_TEST(truncated_stays_more)
{
    static const char msg[] = "0123456789";
    size_t len;
    unsigned char *buf = build_frame(FRAME_RESULT, 8, msg, 10, &len);
    frame_expect ex = from_worker(8);
    for (size_t cut = 0; cut < len; cut++) {
        frame_reader r;
        wp__frame_reader_init(&r);
        size_t used;
        ck_assert_int_eq(feed(&r, buf, cut, chunk_all, &ex, &used), FRAME_MORE);
        ck_assert_uint_eq(used, cut);
        ck_assert_uint_eq(r.have, cut);
        wp__frame_reader_reset(&r);
        wp__frame_reader_init(&r);
        ck_assert_int_eq(feed(&r, buf, cut, chunk_one, &ex, &used), FRAME_MORE);
        wp__frame_reader_reset(&r);
    }
    /* advance(0) changes nothing. */
    frame_reader r;
    wp__frame_reader_init(&r);
    ck_assert_int_eq(wp__frame_reader_advance(&r, 0, &ex), FRAME_MORE);
    ck_assert_uint_eq(r.have, 0);
    wp__frame_reader_reset(&r);
    free(buf);
}

WP_TEST(payload_nul_terminated)
{
    /* Binary payloads with no NUL of their own still end in one. */
    unsigned char p[64];
    memset(p, 0xFF, sizeof p);
    for (size_t plen = 1; plen <= sizeof p; plen++) {
        size_t len;
        unsigned char *buf = build_frame(FRAME_RESULT, 2, p, plen, &len);
        frame_reader r;
        frame_expect ex = from_worker(2);
        wp__frame_reader_init(&r);
        ck_assert_int_eq(feed(&r, buf, len, chunk_all, &ex, NULL), FRAME_DONE);
        ck_assert_mem_eq(r.payload, p, plen);
        ck_assert_int_eq(r.payload[plen], '\0');
        wp__frame_reader_reset(&r);
        free(buf);
    }
}

/* ------------------------------------------------------------- validation */

WP_TEST(bad_magic)
{
    frame_header h;
    frame_reader r;
    static const uint32_t bad[] = { 0, FRAME_MAGIC ^ 1, FRAME_MAGIC ^ 0x80000000u,
                                    0x57504631u /* byte-swapped */, 0xFFFFFFFFu };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wp__frame_header(&h, FRAME_TASK, 1, 4);
        h.magic = bad[i];
        ck_assert_int_eq(feed_header(&r, &h, "abcd", 4, &to_worker), WP_EPROTO);
        ck_assert_ptr_nonnull(r.why);
        ck_assert_msg(strstr(r.why, "magic") != NULL, "why = \"%s\"", r.why);
        ck_assert_ptr_null(r.payload);
        wp__frame_reader_reset(&r);
    }
}

WP_TEST(unknown_type)
{
    frame_header h;
    frame_reader r;
    static const uint32_t bad[] = { 0, 5, 6, 31, 32, 33, 64, 0x7FFFFFFFu, 0xFFFFFFFFu };
    frame_expect all_known = { .types = FRAME_TO_WORKER | FRAME_FROM_WORKER, .task_id = 1,
                               .max_message = 1024 };
    frame_expect all_bits = { .types = ~0u, .task_id = 1, .max_message = 1024 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wp__frame_header(&h, FRAME_RESULT, 1, 0);
        h.type = bad[i];
        ck_assert_int_eq(feed_header(&r, &h, NULL, 0, &all_known), WP_EPROTO);
        ck_assert_ptr_nonnull(r.why);
        wp__frame_reader_reset(&r);
        /* Types that cannot be a bit of the mask are refused whatever the
           mask says (and without an undefined shift). */
        if (bad[i] >= 32) {
            ck_assert_int_eq(feed_header(&r, &h, NULL, 0, &all_bits), WP_EPROTO);
            wp__frame_reader_reset(&r);
        }
    }
}

WP_TEST(type_not_expected)
{
    frame_reader r;
    /* A worker never receives RESULT, FAILURE or READY ... */
    static const enum frame_type from_w[] = { FRAME_RESULT, FRAME_FAILURE, FRAME_READY };
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(feed_frame(&r, from_w[i], 1, 0, NULL, 0, &to_worker), WP_EPROTO);
        ck_assert_ptr_nonnull(r.why);
        wp__frame_reader_reset(&r);
    }
    /* ... and the pool never receives TASK. */
    frame_expect ex = from_worker(1);
    ck_assert_int_eq(feed_frame(&r, FRAME_TASK, 1, 0, NULL, 0, &ex), WP_EPROTO);
    wp__frame_reader_reset(&r);
    /* Only READY expected (a starting worker): RESULT refused. */
    frame_expect ready_only = { .types = FRAME_BIT(FRAME_READY), .task_id = 1, .max_message = 64 };
    ck_assert_int_eq(feed_frame(&r, FRAME_RESULT, 1, 0, NULL, 0, &ready_only), WP_EPROTO);
    wp__frame_reader_reset(&r);
    /* Nothing expected at all. */
    frame_expect none = { .types = 0, .task_id = 1, .max_message = 64 };
    ck_assert_int_eq(feed_frame(&r, FRAME_READY, 0, 0, NULL, 0, &none), WP_EPROTO);
    wp__frame_reader_reset(&r);
}

WP_TEST(wrong_task_id)
{
    frame_reader r;
    static const enum frame_type answers[] = { FRAME_RESULT, FRAME_FAILURE };
    for (size_t i = 0; i < 2; i++) {
        frame_expect ex = from_worker(7);
        ck_assert_int_eq(feed_frame(&r, answers[i], 8, 0, NULL, 0, &ex), WP_EPROTO);
        ck_assert_ptr_nonnull(r.why);
        wp__frame_reader_reset(&r);
        ck_assert_int_eq(feed_frame(&r, answers[i], 0, 0, NULL, 0, &ex), WP_EPROTO);
        wp__frame_reader_reset(&r);
        /* No task given (id 0 expected): any answer is one it was not given,
           even one carrying id 0. */
        ex.task_id = 0;
        ck_assert_int_eq(feed_frame(&r, answers[i], 0, 0, NULL, 0, &ex), WP_EPROTO);
        wp__frame_reader_reset(&r);
        ck_assert_int_eq(feed_frame(&r, answers[i], 7, 0, NULL, 0, &ex), WP_EPROTO);
        wp__frame_reader_reset(&r);
    }
}

WP_TEST(task_id_zero)
{
    frame_reader r;
    ck_assert_int_eq(feed_frame(&r, FRAME_TASK, 0, 3, "abc", 3, &to_worker), WP_EPROTO);
    ck_assert_ptr_nonnull(r.why);
    ck_assert_ptr_null(r.payload);
    wp__frame_reader_reset(&r);
}

WP_TEST(ready_with_payload)
{
    frame_reader r;
    frame_expect ex = from_worker(0);
    static const uint64_t lens[] = { 1, 2, 100, UINT64_MAX };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        ck_assert_int_eq(feed_frame(&r, FRAME_READY, 0, lens[i], NULL, 0, &ex), WP_EPROTO);
        ck_assert_ptr_nonnull(r.why);
        ck_assert_ptr_null(r.payload);
        wp__frame_reader_reset(&r);
    }
}

WP_TEST(length_over_max_message)
{
    frame_reader r;
    frame_expect tw = { .types = FRAME_TO_WORKER, .task_id = 0, .max_message = 100 };
    frame_expect fw = { .types = FRAME_FROM_WORKER, .task_id = 9, .max_message = 100 };
    static const uint64_t lens[] = { 101, 1000, (uint64_t)1 << 32, (uint64_t)1 << 62,
                                     UINT64_MAX - 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        /* Only the header is sent: the error comes before any payload and
           before anything is allocated. */
        ck_assert_int_eq(feed_frame(&r, FRAME_TASK, 9, lens[i], NULL, 0, &tw), WP_E2BIG);
        ck_assert_ptr_null(r.payload);
        ck_assert_ptr_nonnull(r.why);
        wp__frame_reader_reset(&r);
        ck_assert_int_eq(feed_frame(&r, FRAME_RESULT, 9, lens[i], NULL, 0, &fw), WP_E2BIG);
        ck_assert_ptr_null(r.payload);
        wp__frame_reader_reset(&r);
    }
    /* Exactly max_message is fine; max_message 0 allows only empty frames. */
    char p[100];
    memset(p, 'p', sizeof p);
    ck_assert_int_eq(feed_frame(&r, FRAME_RESULT, 9, 100, p, 100, &fw), FRAME_DONE);
    wp__frame_reader_reset(&r);
    fw.max_message = 0;
    ck_assert_int_eq(feed_frame(&r, FRAME_RESULT, 9, 1, p, 1, &fw), WP_E2BIG);
    ck_assert_ptr_null(r.payload);
    wp__frame_reader_reset(&r);
    ck_assert_int_eq(feed_frame(&r, FRAME_RESULT, 9, 0, NULL, 0, &fw), FRAME_DONE);
    wp__frame_reader_reset(&r);
}

/*
 * With max_message = SIZE_MAX (a caller's "no limit"), a header announcing
 * SIZE_MAX bytes passes the limit check, and malloc(length + 1) wraps to
 * malloc(0); the reader then writes payload[SIZE_MAX] (one byte before the
 * block) and asks for 2^64-1 bytes into a 0-byte buffer.  It must fail
 * (WP_E2BIG or WP_ENOMEM) instead.
 */
WP_TEST(length_size_max_no_wraparound)
{
    frame_header h;
    frame_reader r;
    frame_expect ex = { .types = FRAME_FROM_WORKER, .task_id = 9, .max_message = SIZE_MAX };
    wp__frame_header(&h, FRAME_RESULT, 9, (uint64_t)SIZE_MAX);
    int rc = feed_header(&r, &h, NULL, 0, &ex);
    ck_assert_msg(rc < 0, "length SIZE_MAX with max_message SIZE_MAX accepted (rc %d): "
                  "malloc(length + 1) wrapped around to malloc(0)", rc);
    wp__frame_reader_reset(&r);
}

WP_TEST(failure_over_message_max)
{
    frame_header h;
    frame_reader r;
    frame_expect ex = { .types = FRAME_FROM_WORKER, .task_id = 9, .max_message = (size_t)1 << 30 };
    static const uint64_t lens[] = { FRAME_MESSAGE_MAX + 1, 4096, (uint64_t)1 << 40, UINT64_MAX };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        wp__frame_header(&h, FRAME_FAILURE, 9, lens[i]);
        h.error = WP_ETASK;
        ck_assert_int_eq(feed_header(&r, &h, NULL, 0, &ex), WP_EPROTO);
        ck_assert_ptr_null(r.payload);
        ck_assert_ptr_nonnull(r.why);
        wp__frame_reader_reset(&r);
    }
}

WP_TEST(advance_more_than_space)
{
    size_t len;
    unsigned char *buf = build_frame(FRAME_TASK, 3, "payload!", 8, &len);
    frame_reader r;

    /* Within the header. */
    wp__frame_reader_init(&r);
    ck_assert_int_eq(wp__frame_reader_advance(&r, HDR + 1, &to_worker), WP_EPROTO);
    ck_assert_ptr_nonnull(r.why);
    ck_assert_uint_eq(r.have, 0);
    wp__frame_reader_reset(&r);

    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, 10, chunk_all, &to_worker, NULL), FRAME_MORE);
    ck_assert_int_eq(wp__frame_reader_advance(&r, HDR - 10 + 1, &to_worker), WP_EPROTO);
    ck_assert_ptr_nonnull(r.why);
    wp__frame_reader_reset(&r);

    /* Within the payload. */
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, HDR + 3, chunk_all, &to_worker, NULL), FRAME_MORE);
    ck_assert_int_eq(wp__frame_reader_advance(&r, 6, &to_worker), WP_EPROTO);
    ck_assert_ptr_nonnull(r.why);
    wp__frame_reader_reset(&r);

    /* After a complete frame with a payload. */
    wp__frame_reader_init(&r);
    ck_assert_int_eq(feed(&r, buf, len, chunk_all, &to_worker, NULL), FRAME_DONE);
    ck_assert_int_eq(wp__frame_reader_advance(&r, 1, &to_worker), WP_EPROTO);
    ck_assert_mem_eq(r.payload, "payload!", 8); /* untouched */
    wp__frame_reader_reset(&r);

    /* Absurd counts. */
    wp__frame_reader_init(&r);
    ck_assert_int_eq(wp__frame_reader_advance(&r, SIZE_MAX, &to_worker), WP_EPROTO);
    wp__frame_reader_reset(&r);
    free(buf);
}

/*
 * The same after a complete frame without a payload (READY, or an empty
 * RESULT): nothing was allocated, so frame_reader_space must not compute
 * NULL + 0 (undefined behaviour; clang's UBSan reports "applying zero
 * offset to null pointer").  A fuzz driver that keeps feeding bytes after
 * FRAME_DONE gets here.
 */
WP_TEST(advance_after_empty_frame)
{
    frame_reader r;
    frame_expect ex = from_worker(4);
    static const enum frame_type types[] = { FRAME_READY, FRAME_RESULT };
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(feed_frame(&r, types[i], 4, 0, NULL, 0, &ex), FRAME_DONE);
        ck_assert_ptr_null(r.payload);
        size_t room = 99;
        wp__frame_reader_space(&r, &room);
        ck_assert_uint_eq(room, 0);
        ck_assert_int_eq(wp__frame_reader_advance(&r, 1, &ex), WP_EPROTO);
        wp__frame_reader_reset(&r);
    }
}

/* -------------------------------------------------------------------- fuzz */

/* The rules, written out independently of frame.c. */
static int model(const unsigned char *buf, size_t len, const frame_expect *ex)
{
    if (len < HDR)
        return FRAME_MORE;
    frame_header h;
    memcpy(&h, buf, HDR);
    bool known = h.type >= FRAME_TASK && h.type <= FRAME_READY;
    bool proto = h.magic != FRAME_MAGIC || !known || !(ex->types & (1u << h.type))
              || (h.type == FRAME_TASK && h.task_id == 0)
              || ((h.type == FRAME_RESULT || h.type == FRAME_FAILURE)
                  && (ex->task_id == 0 || h.task_id != ex->task_id))
              || (h.type == FRAME_READY && h.length != 0)
              || (h.type == FRAME_FAILURE && h.length > FRAME_MESSAGE_MAX);
    if (proto)
        return WP_EPROTO;
    if (h.type != FRAME_FAILURE && h.length > ex->max_message)
        return WP_E2BIG;
    return len - HDR >= h.length ? FRAME_DONE : FRAME_MORE;
}

static const uint64_t interesting_lengths[] = {
    0, 1, 2, 7, 8, 15, 16, 39, 40, 41, 63, 64, 100, 255, 256,
    FRAME_MESSAGE_MAX - 1, FRAME_MESSAGE_MAX, FRAME_MESSAGE_MAX + 1, 4095, 4096, 4097,
    65535, 65536, (uint64_t)1 << 31, (uint64_t)1 << 32, (uint64_t)1 << 63,
    UINT64_MAX - 1, UINT64_MAX,
};
static const size_t fuzz_limits[] = { 0, 1, 16, 64, 300, 4096 };

WP_TEST(fuzz_random_and_mutated)
{
    enum { ROUNDS = 20000, MAXBUF = 4096 + HDR + 64 };
    rng_seed(0xC0FFEE);
    unsigned char *buf = malloc(MAXBUF);
    ck_assert_ptr_nonnull(buf);
    unsigned counts[4] = { 0 }; /* more, done, eproto, e2big */

    for (unsigned round = 0; round < ROUNDS; round++) {
        frame_expect ex;
        ex.max_message = fuzz_limits[rng_below(sizeof fuzz_limits / sizeof fuzz_limits[0])];
        switch (rng_below(4)) {
        case 0: ex.types = FRAME_TO_WORKER; break;
        case 1: ex.types = FRAME_FROM_WORKER; break;
        case 2: ex.types = FRAME_BIT(FRAME_READY); break;
        default: ex.types = (unsigned)rng() & (FRAME_TO_WORKER | FRAME_FROM_WORKER); break;
        }
        ex.task_id = rng_below(3) == 0 ? 0 : 1 + rng_below(3);

        size_t len;
        unsigned kind = (unsigned)rng_below(10);
        if (kind < 3) {
            /* Pure noise. */
            len = rng_below(200);
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)rng();
        } else {
            /* A valid-looking frame, then mutated. */
            frame_header h;
            enum frame_type t = (enum frame_type)(1 + rng_below(4));
            size_t plen = rng_below(4) == 0 ? rng_below(MAXBUF - HDR) : rng_below(80);
            wp__frame_header(&h, t, 1 + rng_below(3), t == FRAME_READY ? 0 : plen);
            h.fn = rng();
            h.error = (int32_t)rng_below(14) * -1;
            h.code = (int32_t)rng();
            if (rng_below(4) == 0)
                h.length = interesting_lengths[rng_below(sizeof interesting_lengths
                                                         / sizeof interesting_lengths[0])];
            if (rng_below(8) == 0)
                h.type = (uint32_t)rng_below(40);
            if (rng_below(8) == 0)
                h.task_id = rng_below(2) ? 0 : rng();
            memcpy(buf, &h, HDR);
            for (size_t i = 0; i < plen; i++)
                buf[HDR + i] = (unsigned char)rng();
            len = HDR + plen;
            /* Flip some bytes anywhere, sometimes truncate or extend. */
            unsigned flips = kind < 6 ? (unsigned)rng_below(4) : 0;
            for (unsigned f = 0; f < flips; f++)
                buf[rng_below(len)] ^= (unsigned char)(1u << rng_below(8));
            if (rng_below(6) == 0)
                len = rng_below(len + 1);
            else if (rng_below(6) == 0 && len + 32 <= MAXBUF) {
                for (size_t i = 0; i < 32; i++)
                    buf[len + i] = (unsigned char)rng();
                len += 32;
            }
        }

        int want = model(buf, len, &ex);
        frame_reader r;
        wp__frame_reader_init(&r);
        size_t used = 0;
        int rc = feed(&r, buf, len, chunk_random, &ex, &used);
        ck_assert_msg(rc == FRAME_MORE || rc == FRAME_DONE || rc < 0, "round %u: rc %d", round, rc);
        ck_assert_msg(rc == want, "round %u: reader says %d, the rules say %d "
                      "(type %u id %llu len %llu, expect types %#x id %llu max %zu, %zu bytes)",
                      round, rc, want, r.hdr.type, (unsigned long long)r.hdr.task_id,
                      (unsigned long long)r.hdr.length, ex.types,
                      (unsigned long long)ex.task_id, ex.max_message, len);
        if (rc < 0) {
            ck_assert_ptr_nonnull(r.why);
            ck_assert_ptr_null(r.payload); /* refused before allocating */
        }
        if (r.payload != NULL) {
            /* Never allocated over the limit. */
            uint64_t limit = r.hdr.type == FRAME_FAILURE ? FRAME_MESSAGE_MAX : ex.max_message;
            ck_assert_uint_le(r.hdr.length, limit);
        }
        if (rc == FRAME_DONE) {
            ck_assert_uint_eq(used, HDR + r.hdr.length);
            if (r.hdr.length > 0) {
                ck_assert_mem_eq(r.payload, buf + HDR, (size_t)r.hdr.length);
                ck_assert_int_eq(r.payload[r.hdr.length], '\0');
            }
        }
        counts[rc == FRAME_MORE ? 0 : rc == FRAME_DONE ? 1 : rc == WP_EPROTO ? 2 : 3]++;
        wp__frame_reader_reset(&r);
    }
    /* The corpus reaches every outcome. */
    for (unsigned i = 0; i < 4; i++)
        ck_assert_msg(counts[i] > 100, "outcome %u only %u times", i, counts[i]);
    free(buf);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "frame", .timeout_s = 120 };
    const tu_test tests[] = {
        TU_CASE("valid", header_builder),
        TU_CASE("valid", task_whole),
        TU_CASE("valid", task_byte_by_byte),
        TU_CASE("valid", task_random_splits),
        TU_CASE("valid", result_failure_ready_valid),
        TU_CASE("valid", two_frames_back_to_back),
        TU_CASE("valid", take_transfers_ownership),
        TU_CASE("valid", truncated_stays_more),
        TU_CASE("valid", payload_nul_terminated),
        TU_CASE("invalid", bad_magic),
        TU_CASE("invalid", unknown_type),
        TU_CASE("invalid", type_not_expected),
        TU_CASE("invalid", wrong_task_id),
        TU_CASE("invalid", task_id_zero),
        TU_CASE("invalid", ready_with_payload),
        TU_CASE("invalid", length_over_max_message),
        TU_CASE("invalid", length_size_max_no_wraparound),
        TU_CASE("invalid", failure_over_message_max),
        TU_CASE("invalid", advance_more_than_space),
        TU_CASE("invalid", advance_after_empty_frame),
        TU_CASE("fuzz", fuzz_random_and_mutated),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
