/* SPDX-License-Identifier: MIT */
/*
 * check_frame_fuzz.c — random and mutated input (check_frame.c says how the
 * suite's tests work): a reader's every answer checked against a model of
 * the rules written independently of frame.c.
 */
#define _GNU_SOURCE
#include "check_frame.h"

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

/* ---------------------------------------------------------- its tests */

TU_PART(frame_add_fuzz_tests,
        TU_CASE("fuzz", fuzz_random_and_mutated))
