/* SPDX-License-Identifier: MIT */
/*
 * photogen_scene.h — photogen's synthetic photos: a seeded plan of a
 * landscape and the painting of one row of it at a time.
 */
#ifndef PHOTOGEN_SCENE_H
#define PHOTOGEN_SCENE_H

#include <stdbool.h>
#include <stdint.h>

struct blob {
    int cx, cy, r;
    bool square;
    float rgb[3];
};

enum { MAX_BLOBS = 12, N_HILLS = 3 };

/* A landscape of sorts: a sky gradient, hills, soft-edged discs and squares
   and a little sensor noise — smooth areas and edges, like a photo, so it
   compresses like one. */
struct scene {
    unsigned width, height;
    float sky_top[3], sky_bottom[3], ground_far[3], ground_near[3];
    int horizon, hill_x[N_HILLS], hill_w[N_HILLS], hill_h[N_HILLS];
    struct blob blobs[MAX_BLOBS];
    unsigned n_blobs;
};

/* A scene between 800x600 and 2400x1600 from the xorshift32 state *rng
   (never 0), one in four portrait. */
void plan_scene(struct scene *s, uint32_t *rng);

/* Row y into row (width x channels bytes, channels 1 or 3); *noise is the
   grain's xorshift32 state. */
void paint_row(const struct scene *s, int y, unsigned char *row, unsigned channels,
               uint32_t *noise);

#endif
