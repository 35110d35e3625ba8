/* SPDX-License-Identifier: MIT */
/*
 * thumbs_image.h — the pixel work of the thumbnails demo, apart from any
 * file format: an image in memory, an area-averaging shrinker fed one row at
 * a time (so the decoder's output is never held whole), the box a thumbnail
 * must fit, and the EXIF orientation turned into pixels.
 */
#ifndef THUMBS_IMAGE_H
#define THUMBS_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

/* Interleaved 8-bit samples, 1 (grey) or 3 (RGB) channels, no padding. */
typedef struct image {
    unsigned w, h, channels;
    unsigned char *px;
} image;

bool image_alloc(image *im, unsigned w, unsigned h, unsigned channels);
void image_free(image *im); /* idempotent; a zeroed image is free */
unsigned char *image_row(const image *im, unsigned y);

/* Which source pixels make one destination pixel along one axis, and with
   what weights (fixed point, summing to exactly 1 << SHRINK_WEIGHT_BITS). */
typedef struct shrink_taps {
    unsigned *first;   /* per destination pixel: its first source pixel */
    unsigned *n;       /* ... and how many it covers */
    uint32_t *weight;  /* stride `max` per destination pixel */
    unsigned max;
} shrink_taps;

/*
 * Box filter with exact area weights: source pixel i covers [i, i+1) of the
 * source axis and every destination pixel averages what lies under it, so a
 * 2:1 shrink is a plain 2x2 mean and odd ratios split edge pixels fairly.
 * Only shrinks (dst <= src on both axes).  Rows go in with shrinker_push()
 * in order; finished rows land in dst.  Cost: a multiply-add or two per
 * source sample, a few per destination sample, and one source-wide row of
 * accumulators.
 */
typedef struct shrinker {
    image *dst;
    unsigned sw, sh, sy, ty; /* source size; next source row; row being summed */
    shrink_taps hx, vy;
    uint32_t *acc;           /* source row-sized weighted sum for destination row ty */
} shrinker;

bool shrinker_init(shrinker *s, unsigned sw, unsigned sh, image *dst);
void shrinker_push(shrinker *s, const unsigned char *row);
void shrinker_free(shrinker *s); /* idempotent; a zeroed shrinker is free */

/* src shrunk into dst, which is allocated here with dst's w and h (set by the
   caller) and src's channels.  False when out of memory. */
bool image_shrink(const image *src, image *dst);

/* The longer side becomes `box`, the other keeps the aspect ratio (at least
   1); an image that already fits keeps its size: never upscaled. */
void fit_in_box(unsigned w, unsigned h, unsigned box, unsigned *tw, unsigned *th);

/* EXIF orientation 1..8 (TIFF 6.0 tag 274): how the stored pixels must be
   turned to be seen upright.  dst (allocated here) is src as it should be
   seen; 5..8 swap width and height.  False when out of memory. */
bool image_orient(const image *src, int orientation, image *dst);

#endif
