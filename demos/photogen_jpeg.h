/* SPDX-License-Identifier: MIT */
/*
 * photogen_jpeg.h — the JPEG side of photogen (the thumbnails demo's test
 * photo generator): write a JPEG from painted rows, with an EXIF orientation
 * tag if asked; read one back whole, with its tag; and craft by hand the
 * hostile files a thumbnailer must survive.
 */
#ifndef PHOTOGEN_JPEG_H
#define PHOTOGEN_JPEG_H

#include <stdbool.h>
#include <stddef.h>

/* Fills row y (width x channels bytes). */
typedef void (*paint_fn)(void *ctx, unsigned y, unsigned char *row);

typedef struct jpeg_spec {
    unsigned width, height, channels; /* channels 1 (grey) or 3 (RGB) */
    int quality;
    int orientation;                  /* 1..8: written as an EXIF tag; 0: no EXIF */
    bool progressive;
} jpeg_spec;

/* Write path (through path.tmp, renamed into place).  0, or -1 with a
   message in err. */
int pg_write_jpeg(const char *path, const jpeg_spec *spec, paint_fn paint, void *ctx,
                  char *err, size_t err_len);

/* A decoded image: RGB (3 channels) or grey (1), and its EXIF orientation
   tag (0 when it has none).  pixels is malloc'd. */
typedef struct decoded {
    unsigned width, height, channels;
    int orientation;
    unsigned char *pixels;
} decoded;

int pg_read_jpeg(const char *path, decoded *out, char *err, size_t err_len);

/* Hand-made hostile JPEGs (libjpeg would take too long to make them):
   - a bomb: a valid progressive header claiming width x height, then no
     image data at all;
   - a slow one: a valid progressive greyscale JPEG of side x side pixels,
     all grey, in the most scans the standard allows (one per coefficient
     and bit), each costing the decoder a pass over every block — a file of
     a few tens of KiB that takes seconds to decode. */
int pg_write_bomb(const char *path, unsigned width, unsigned height, char *err, size_t err_len);
int pg_write_slow(const char *path, unsigned side, char *err, size_t err_len);

#endif
