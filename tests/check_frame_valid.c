/* SPDX-License-Identifier: MIT */
/*
 * check_frame_valid.c — valid frames (check_frame.c says how the suite's
 * tests work): the header builder, a task frame fed whole, byte by byte and
 * in random splits, every frame type a worker sends, two frames back to
 * back, a payload taken over by its reader, a truncated frame, and the NUL
 * after every payload.
 */
#define _GNU_SOURCE
#include "check_frame.h"

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
    ck_assert_uint_eq(sizeof h, 48); /* no padding: bytes on the wire are all fields */
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

/* ---------------------------------------------------------- its tests */

TU_PART(frame_add_valid_tests,
        TU_CASE("valid", header_builder),
        TU_CASE("valid", task_whole),
        TU_CASE("valid", task_byte_by_byte),
        TU_CASE("valid", task_random_splits),
        TU_CASE("valid", result_failure_ready_valid),
        TU_CASE("valid", two_frames_back_to_back),
        TU_CASE("valid", take_transfers_ownership),
        TU_CASE("valid", truncated_stays_more),
        TU_CASE("valid", payload_nul_terminated))
