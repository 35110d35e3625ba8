/* SPDX-License-Identifier: MIT */
/* photogen_scene.c — see photogen_scene.h. */
#include "photogen_scene.h"

#include <stddef.h>

/* xorshift32: the same seed paints the same picture on every machine. */
static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static unsigned random_between(uint32_t *state, unsigned lo, unsigned hi)
{
    return lo + next_random(state) % (hi - lo + 1);
}

static void random_colour(uint32_t *rng, float rgb[3], unsigned lo, unsigned hi)
{
    for (int k = 0; k < 3; k++)
        rgb[k] = (float)random_between(rng, lo, hi);
}

/* Landscape between 800x600 and 2400x1600, one in four turned portrait. */
void plan_scene(struct scene *s, uint32_t *rng)
{
    unsigned w = random_between(rng, 800, 2400);
    unsigned h = w * random_between(rng, 50, 85) / 100;
    h = h < 600 ? 600 : h > 1600 ? 1600 : h;
    bool portrait = random_between(rng, 0, 3) == 0;
    s->width = portrait ? h : w;
    s->height = portrait ? w : h;

    random_colour(rng, s->sky_top, 20, 120);
    random_colour(rng, s->sky_bottom, 140, 250);
    random_colour(rng, s->ground_far, 40, 160);
    random_colour(rng, s->ground_near, 10, 90);
    s->horizon = (int)random_between(rng, s->height / 3, s->height * 2 / 3);
    for (int i = 0; i < N_HILLS; i++) {
        s->hill_x[i] = (int)random_between(rng, 0, s->width);
        s->hill_w[i] = (int)random_between(rng, s->width / 10, s->width / 3);
        s->hill_h[i] = (int)random_between(rng, 0, s->height / 5);
    }
    s->n_blobs = random_between(rng, 3, MAX_BLOBS);
    for (unsigned i = 0; i < s->n_blobs; i++) {
        struct blob *b = &s->blobs[i];
        b->cx = (int)random_between(rng, 0, s->width);
        b->cy = (int)random_between(rng, 0, s->height);
        b->r = (int)random_between(rng, s->height / 30, s->height / 6);
        b->square = random_between(rng, 0, 2) == 0;
        random_colour(rng, b->rgb, 0, 255);
    }
}

/* Height of the skyline at column x: the horizon raised by bell-shaped
   hills (1 / (1 + t^2) needs no libm). */
static float skyline_at(const struct scene *s, int x)
{
    float y = (float)s->horizon;
    for (int i = 0; i < N_HILLS; i++) {
        float t = (float)(x - s->hill_x[i]) / (float)s->hill_w[i];
        y -= (float)s->hill_h[i] / (1.0f + t * t);
    }
    return y;
}

static void mix(float dst[3], const float a[3], const float b[3], float t)
{
    for (int k = 0; k < 3; k++)
        dst[k] = a[k] + (b[k] - a[k]) * t;
}

/* Opaque inside 80% of the radius, fading out to the edge: soft edges, as a
   lens would give.  Squared distances keep it free of sqrt (and of libm). */
static float blob_alpha(const struct blob *b, int x, int y)
{
    int64_t dx = x - b->cx, dy = y - b->cy;
    int64_t d2 = b->square ? (dx * dx > dy * dy ? dx * dx : dy * dy) : dx * dx + dy * dy;
    int64_t outer = (int64_t)b->r * b->r, inner = outer * 16 / 25;
    if (d2 >= outer)
        return 0.0f;
    if (d2 <= inner)
        return 0.9f;
    return 0.9f * (float)(outer - d2) / (float)(outer - inner);
}

static unsigned char to_byte(float v)
{
    return v >= 255.0f ? 255 : v <= 0.0f ? 0 : (unsigned char)(v + 0.5f);
}

void paint_row(const struct scene *s, int y, unsigned char *row, unsigned channels,
                      uint32_t *noise)
{
    for (int x = 0; x < (int)s->width; x++) {
        float px[3], sky = skyline_at(s, x);
        if ((float)y < sky)
            mix(px, s->sky_top, s->sky_bottom, (float)y / sky);
        else
            mix(px, s->ground_far, s->ground_near,
                ((float)y - sky) / ((float)s->height - sky + 1.0f));
        for (unsigned i = 0; i < s->n_blobs; i++) {
            float a = blob_alpha(&s->blobs[i], x, y);
            if (a > 0.0f)
                mix(px, px, s->blobs[i].rgb, a);
        }
        float grain = (float)((int)(next_random(noise) % 13) - 6);
        if (channels == 1) {
            row[x] = to_byte(0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2] + grain);
        } else {
            for (unsigned k = 0; k < 3; k++)
                row[(size_t)x * 3 + k] = to_byte(px[k] + grain);
        }
    }
}

