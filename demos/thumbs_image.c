/* SPDX-License-Identifier: MIT */
/* thumbs_image.c — see thumbs_image.h. */
#include "thumbs_image.h"

#include <stdlib.h>
#include <string.h>

/*
 * 12-bit weights: a vertical sum is at most 255 << 12, and a horizontal sum
 * of those, with weights again adding up to exactly 1 << 12, at most
 * 255 << 24, which still fits 32 bits (with the rounding half added).
 */
#define SHRINK_WEIGHT_BITS 12
#define SHRINK_ONE         (1u << SHRINK_WEIGHT_BITS)
#define SHRINK_SHIFT       (2 * SHRINK_WEIGHT_BITS)
#define SHRINK_HALF        (1u << (SHRINK_SHIFT - 1))

bool image_alloc(image *im, unsigned w, unsigned h, unsigned channels)
{
    *im = (image){ .w = w, .h = h, .channels = channels };
    im->px = malloc((size_t)w * h * channels);
    return im->px != NULL;
}

void image_free(image *im)
{
    free(im->px);
    *im = (image){ 0 };
}

unsigned char *image_row(const image *im, unsigned y)
{
    return im->px + (size_t)y * im->w * im->channels;
}

static uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    uint64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

static void taps_free(shrink_taps *t)
{
    free(t->first);
    free(t->n);
    free(t->weight);
    *t = (shrink_taps){ 0 };
}

/*
 * On a common integer axis source pixel i covers [i*dst, (i+1)*dst) and
 * destination pixel j covers [j*src, (j+1)*src): every overlap is an exact
 * integer and a destination pixel's overlaps add up to src.  Rounding the
 * weights down and giving the remainder to the last tap keeps the sum exact.
 */
static bool taps_init(shrink_taps *t, unsigned src, unsigned dst)
{
    *t = (shrink_taps){ .max = src / dst + 2 };
    t->first = malloc(dst * sizeof *t->first);
    t->n = malloc(dst * sizeof *t->n);
    t->weight = calloc((size_t)dst * t->max, sizeof *t->weight);
    if (t->first == NULL || t->n == NULL || t->weight == NULL) {
        taps_free(t);
        return false;
    }
    for (unsigned j = 0; j < dst; j++) {
        uint64_t lo = (uint64_t)j * src, hi = lo + src;
        unsigned i0 = (unsigned)(lo / dst), i1 = (unsigned)((hi - 1) / dst);
        uint32_t *w = t->weight + (size_t)j * t->max, sum = 0;
        t->first[j] = i0;
        t->n[j] = i1 - i0 + 1;
        for (unsigned i = i0; i <= i1; i++) {
            w[i - i0] = (uint32_t)(overlap((uint64_t)i * dst, (uint64_t)(i + 1) * dst, lo, hi)
                                   * SHRINK_ONE / src);
            sum += w[i - i0];
        }
        w[i1 - i0] += SHRINK_ONE - sum;
    }
    return true;
}

bool shrinker_init(shrinker *s, unsigned sw, unsigned sh, image *dst)
{
    *s = (shrinker){ .dst = dst, .sw = sw, .sh = sh };
    s->acc = calloc((size_t)sw * dst->channels, sizeof *s->acc);
    if (s->acc == NULL || !taps_init(&s->hx, sw, dst->w)
        || !taps_init(&s->vy, sh, dst->h)) {
        shrinker_free(s);
        return false;
    }
    return true;
}

void shrinker_free(shrinker *s)
{
    free(s->acc);
    taps_free(&s->hx);
    taps_free(&s->vy);
    *s = (shrinker){ 0 };
}

/*
 * Vertical first: each source row is added, weighted, into one row of
 * accumulators as wide as the source (a plain multiply-add the compiler
 * vectorises), and only a finished destination row is shrunk horizontally,
 * straight into bytes.  The horizontal pass, which cannot be vectorised
 * (each output takes its own taps), so runs once per destination row rather
 * than once per source row.
 */
enum { BLOCK = 16 }; /* fixed-size blocks become vector code even at -O2 */

static void accumulate(uint32_t *restrict acc, const unsigned char *restrict row, uint32_t w,
                       size_t n)
{
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK)
        for (size_t k = 0; k < BLOCK; k++)
            acc[i + k] += w * row[i + k];
    for (; i < n; i++)
        acc[i] += w * row[i];
}

static unsigned char to_byte(uint32_t sum)
{
    return (unsigned char)((sum + SHRINK_HALF) >> SHRINK_SHIFT);
}

/* Sums stay in registers (three named ones for RGB); restrict tells the
   compiler the output cannot change the tap tables. */
static void emit_rgb(const shrink_taps *t, const uint32_t *restrict acc,
                     unsigned char *restrict out, unsigned w)
{
    const unsigned *restrict first = t->first, *restrict n = t->n;
    const uint32_t *restrict weight = t->weight;
    for (unsigned x = 0; x < w; x++, out += 3) {
        const uint32_t *p = acc + (size_t)first[x] * 3;
        const uint32_t *wt = weight + (size_t)x * t->max;
        uint32_t r = 0, g = 0, b = 0;
        for (unsigned i = 0; i < n[x]; i++, p += 3) {
            r += wt[i] * p[0];
            g += wt[i] * p[1];
            b += wt[i] * p[2];
        }
        out[0] = to_byte(r);
        out[1] = to_byte(g);
        out[2] = to_byte(b);
    }
}

static void emit_grey(const shrink_taps *t, const uint32_t *restrict acc,
                      unsigned char *restrict out, unsigned w)
{
    const unsigned *restrict first = t->first, *restrict n = t->n;
    const uint32_t *restrict weight = t->weight;
    for (unsigned x = 0; x < w; x++) {
        const uint32_t *p = acc + first[x];
        const uint32_t *wt = weight + (size_t)x * t->max;
        uint32_t v = 0;
        for (unsigned i = 0; i < n[x]; i++)
            v += wt[i] * p[i];
        out[x] = to_byte(v);
    }
}

static void emit_row(shrinker *s)
{
    unsigned char *out = image_row(s->dst, s->ty);
    if (s->dst->channels == 3)
        emit_rgb(&s->hx, s->acc, out, s->dst->w);
    else
        emit_grey(&s->hx, s->acc, out, s->dst->w);
    memset(s->acc, 0, (size_t)s->sw * s->dst->channels * sizeof *s->acc);
}

/* A source row adds to the destination row being summed and, if it lies
   across a boundary, to the next one too. */
void shrinker_push(shrinker *s, const unsigned char *row)
{
    const shrink_taps *t = &s->vy;
    size_t n = (size_t)s->sw * s->dst->channels;
    while (s->ty < s->dst->h && t->first[s->ty] <= s->sy) {
        uint32_t w = t->weight[(size_t)s->ty * t->max + (s->sy - t->first[s->ty])];
        accumulate(s->acc, row, w, n);
        if (s->sy + 1 < t->first[s->ty] + t->n[s->ty])
            break; /* this destination row goes on into the next source row */
        emit_row(s);
        s->ty++;
    }
    s->sy++;
}

bool image_shrink(const image *src, image *dst)
{
    shrinker s;
    if (!image_alloc(dst, dst->w, dst->h, src->channels) || !shrinker_init(&s, src->w, src->h, dst))
        return false;
    for (unsigned y = 0; y < src->h; y++)
        shrinker_push(&s, image_row(src, y));
    shrinker_free(&s);
    return true;
}

static unsigned scale_side(unsigned side, unsigned num, unsigned den)
{
    uint64_t v = ((uint64_t)side * num + den / 2) / den;
    return v > 0 ? (unsigned)v : 1;
}

void fit_in_box(unsigned w, unsigned h, unsigned box, unsigned *tw, unsigned *th)
{
    unsigned longer = w > h ? w : h;
    if (longer <= box) {
        *tw = w;
        *th = h;
        return;
    }
    *tw = scale_side(w, box, longer);
    *th = scale_side(h, box, longer);
}

/*
 * For each seen pixel (x, y), the stored pixel it comes from: swap x and y
 * for the transposing orientations, then count from the far edge where the
 * orientation mirrors that axis.  E.g. 6 (the camera held upright, turned
 * 90 degrees clockwise to view): seen (x, y) is stored (y, h - 1 - x).
 */
bool image_orient(const image *src, int orientation, image *dst)
{
    static const struct { bool transpose, flip_x, flip_y; } how[9] = {
        [1] = { false, false, false }, [2] = { false, true, false },
        [3] = { false, true, true },   [4] = { false, false, true },
        [5] = { true, false, false },  [6] = { true, false, true },
        [7] = { true, true, true },    [8] = { true, true, false },
    };
    int o = orientation >= 1 && orientation <= 8 ? orientation : 1;
    unsigned dw = how[o].transpose ? src->h : src->w, dh = how[o].transpose ? src->w : src->h;
    unsigned ch = src->channels;
    if (!image_alloc(dst, dw, dh, ch))
        return false;
    for (unsigned y = 0; y < dh; y++) {
        unsigned char *out = image_row(dst, y);
        for (unsigned x = 0; x < dw; x++) {
            unsigned u = how[o].transpose ? y : x, v = how[o].transpose ? x : y;
            unsigned sx = how[o].flip_x ? src->w - 1 - u : u;
            unsigned sy = how[o].flip_y ? src->h - 1 - v : v;
            memcpy(out + (size_t)x * ch, image_row(src, sy) + (size_t)sx * ch, ch);
        }
    }
    return true;
}
