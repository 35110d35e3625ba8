/* SPDX-License-Identifier: MIT */
/*
 * check_frame_invalid.c — what a reader refuses (check_frame.c says how the
 * suite's tests work): a bad magic, an unknown or unexpected type, a wrong
 * or zero task id, READY with a payload, lengths over the limit (checked
 * before allocating, without wrapping around), and misuse: advancing past
 * its space, or after an empty frame.
 */
#define _GNU_SOURCE
#include "check_frame.h"

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

/* ---------------------------------------------------------- its tests */

TU_PART(frame_add_invalid_tests,
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
        TU_CASE("invalid", advance_after_empty_frame))
