/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h — what the libFuzzer targets in this directory share: a property
 * check that aborts (so libFuzzer saves the input), a reader of the fixed
 * fields at the front of an input, and a small PRNG for choices that should
 * not cost the fuzzer input bytes.  Built only by `make fuzz`.
 */
#ifndef WP_FUZZ_H
#define WP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Input consumed from the front; reads past the end give zeros. */
typedef struct fuzz_input {
    const uint8_t *data;
    size_t         size;
} fuzz_input;

static inline void fuzz_take(fuzz_input *in, void *out, size_t n)
{
    size_t k = n < in->size ? n : in->size;
    memset(out, 0, n);
    if (k > 0)
        memcpy(out, in->data, k);
    in->data += k;
    in->size -= k;
}

static inline uint8_t fuzz_byte(fuzz_input *in)
{
    uint8_t b;
    fuzz_take(in, &b, sizeof b);
    return b;
}

/* xorshift64*: a seed of 0 is replaced by a fixed odd constant. */
static inline uint64_t fuzz_rng(uint64_t *state)
{
    if (*state == 0)
        *state = 0x9E3779B97F4A7C15ull;
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

/* fuzz_frame: the fields at the front of an input, then the stream. */
typedef struct frame_fuzz_config {
    uint32_t types;        /* frame_expect.types */
    uint32_t max_message;  /* modulo FRAME_FUZZ_MAX_MESSAGE + 1 */
    uint64_t task_id;      /* frame_expect.task_id */
    uint64_t seed;         /* chunk sizes */
} frame_fuzz_config;

/* Kept small so that a header asking for max_message bytes stays cheap. */
#define FRAME_FUZZ_MAX_MESSAGE (1u << 16)

/* fuzz_fsmsg: the first byte (modulo FSMSG_FUZZ_MODES) picks the mode.
   Raw: flag bits, data length, control length, misalignment (each one
   byte), data, control.  Round trip: an fs_msg, a descriptor count, that
   many ints, a cut byte (bit 0: cut to cut >> 1 modulo the count). */
enum { FSMSG_FUZZ_RAW, FSMSG_FUZZ_ROUND_TRIP, FSMSG_FUZZ_MODES };
enum { FSMSG_FUZZ_CTRUNC = 1, FSMSG_FUZZ_TRUNC = 2, FSMSG_FUZZ_EOR = 4 };

/* fuzz_image: one byte (1 + it modulo IMAGE_FUZZ_MISALIGN - 1: the second
   parse's misalignment), then the description's bytes (image.h). */
#define IMAGE_FUZZ_MISALIGN 8u

#endif
