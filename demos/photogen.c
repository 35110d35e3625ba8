/* SPDX-License-Identifier: MIT */
/*
 * photogen — photos for the thumbnails demo and its tests.
 *
 *   photogen [-j N] [--nested] [--orientations] N DIR
 *       N synthetic photo-like JPEGs DIR/img0000.jpg ... (800x600 to
 *       2400x1600, one in four portrait, every tenth greyscale; the same N
 *       gives the same files), made in worker processes of a workerpool pool.
 *       --nested spreads them over subdirectories, --orientations tags them
 *       with EXIF orientations 1, 6, 3, 8 in turn.
 *   photogen --card ORIENTATION WIDTH HEIGHT FILE
 *       a test card that shows WIDTH x HEIGHT with a red top left, green top
 *       right, blue bottom left and white bottom right quadrant once its
 *       EXIF ORIENTATION (1..8) is applied: its pixels are stored turned.
 *   photogen --hostile bomb|slow|truncated|notjpeg FILE
 *       a file a thumbnailer must survive: a header claiming 20000x20000; a
 *       valid JPEG that takes the decoder seconds; a photo cut short; text.
 *   photogen --check FILE
 *       prints "WxH orientation=N TL TR BL BR": the size, the EXIF tag
 *       ("none" without one) and the colour of each quadrant, so the tests
 *       can tell where the pixels went without djpeg.
 *
 * A separate program because thumbnails.c is the code users copy; this is
 * the test bench.  JPEG writing and reading are in photogen_jpeg.c, the
 * painting of photos in photogen_scene.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "photogen_jpeg.h"
#include "photogen_scene.h"
#include "progress.h"
#include "cli.h"
#include "thumbs_walk.h"
#include "workerpool.h"

enum {
    PHOTO_QUALITY = 90,
    GREY_EVERY = 10,          /* every tenth photo is greyscale */
    BOMB_SIDE = 20000,        /* 400 megapixels, claimed */
    SLOW_SIDE = 4096,         /* 262144 blocks, times 883 scans */
    TRUNCATE_PERCENT = 40,    /* of a photo's bytes kept */
    MAX_PHOTOS = 1000000,
    MAX_CARD_SIDE = 10000,
    TICK_MS = 100,
    MAX_LISTED_FAILURES = 20,
    EXIT_SOME_FAILED = 1,
    EXIT_SETUP = CLI_EXIT_USAGE /* usage or setup error */
};

/* ============================================================ photos */

typedef struct photo_painter {
    struct scene scene;
    unsigned channels;
    uint32_t rng;
} photo_painter;

static void paint_photo(void *ctx, unsigned y, unsigned char *row)
{
    photo_painter *p = ctx;
    paint_row(&p->scene, (int)y, row, p->channels, &p->rng);
}

/* Seeds spread out so neighbouring photos do not look alike. */
static int write_photo(const char *path, unsigned index, int orientation, char *err, size_t len)
{
    photo_painter p = { .rng = ((index + 1) * 2654435761u) | 1 }; /* xorshift: never 0 */
    plan_scene(&p.scene, &p.rng);
    p.channels = index % GREY_EVERY == GREY_EVERY - 1 ? 1 : 3;
    jpeg_spec spec = { .width = p.scene.width, .height = p.scene.height,
                       .channels = p.channels, .quality = PHOTO_QUALITY,
                       .orientation = orientation };
    return pg_write_jpeg(path, &spec, paint_photo, &p, err, len);
}

/* The task: a uint32 index and int32 orientation, then the path. */
typedef struct photo_job {
    uint32_t index;
    int32_t orientation;
} photo_job;

static int photo_task(const void *arg, size_t len, wp_buf *result)
{
    photo_job job;
    const char *path = (const char *)arg + sizeof job;
    if (len <= sizeof job || path[len - sizeof job - 1] != '\0')
        return wp_buf_fail(result, 1, "malformed photo task argument");
    memcpy(&job, arg, sizeof job);
    char err[512];
    if (write_photo(path, job.index, job.orientation, err, sizeof err) != 0)
        return wp_buf_fail(result, 1, err);
    return 0;
}

static const char *const nested_dirs[] = { "", "2023/summer", "2024" };
static const int orientation_cycle[] = { 1, 6, 3, 8 };
#define N_NESTED (sizeof nested_dirs / sizeof nested_dirs[0])
#define N_CYCLE (sizeof orientation_cycle / sizeof orientation_cycle[0])

typedef struct gen_options {
    unsigned workers, n;
    bool nested, orientations;
    const char *dir;
} gen_options;

static char *photo_path(const gen_options *o, unsigned i)
{
    const char *sub = o->nested ? nested_dirs[i % N_NESTED] : "";
    size_t n = strlen(o->dir) + strlen(sub) + 32;
    char *path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "%s/%s%simg%04u.jpg", o->dir, sub, sub[0] ? "/" : "", i);
    return path;
}

static int make_photo_dirs(const gen_options *o)
{
    for (size_t i = 0; i < (o->nested ? N_NESTED : 1); i++) {
        size_t n = strlen(o->dir) + strlen(nested_dirs[i]) + 2;
        char *d = malloc(n);
        if (d == NULL)
            return -1;
        snprintf(d, n, "%s/%s", o->dir, nested_dirs[i]);
        int rc = make_dirs(d);
        if (rc != 0)
            fprintf(stderr, "photogen: cannot create %s: %s\n", d, strerror(errno));
        free(d);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int submit_photo(wp_pool *pool, const gen_options *o, unsigned i, wp_future **f)
{
    photo_job job = { .index = i,
                      .orientation = o->orientations ? orientation_cycle[i % N_CYCLE] : 0 };
    char *path = photo_path(o, i);
    size_t len = path != NULL ? sizeof job + strlen(path) + 1 : 0;
    char *arg = path != NULL ? malloc(len) : NULL;
    int rc = WP_ENOMEM;
    if (arg != NULL) {
        memcpy(arg, &job, sizeof job);
        memcpy(arg + sizeof job, path, len - sizeof job);
        rc = wp_submit(pool, photo_task, arg, len, NULL, f);
    }
    free(arg);
    free(path);
    return rc;
}

static int generate(const gen_options *o)
{
    if (make_photo_dirs(o) != 0)
        return EXIT_SETUP;
    wp_pool *pool;
    wp_pool_options popts = { .workers = o->workers };
    int rc = wp_pool_create(&pool, &popts);
    wp_future **fs = calloc(o->n, sizeof *fs);
    if (rc != 0 || fs == NULL) {
        fprintf(stderr, "photogen: cannot start the worker pool: %s\n", wp_strerror(rc));
        return EXIT_SETUP;
    }
    progress bar;
    progress_start(&bar, "photos", o->n);
    unsigned submitted = 0;
    while (submitted < o->n && (rc = submit_photo(pool, o, submitted, &fs[submitted])) == 0)
        submitted++;
    wp_pool_stats st;
    while (submitted > 0 && wp_wait_all(fs, submitted, TICK_MS) == WP_ETIMEDOUT)
        if (wp_pool_get_stats(pool, &st) == 0)
            progress_update(&bar, st.succeeded + st.failed, st.failed);
    failures failed = { 0 };
    for (unsigned i = 0; i < submitted; i++) {
        if (wp_future_error(fs[i]) != 0) {
            char *path = photo_path(o, i);
            failures_add(&failed, path ? path : "?", wp_future_message(fs[i]));
            free(path);
        }
        wp_future_release(fs[i]);
    }
    progress_finish(&bar, submitted, failed.n);
    failures_print(&failed, stderr, MAX_LISTED_FAILURES);
    int status = rc != 0 ? EXIT_SETUP : failed.n > 0 ? EXIT_SOME_FAILED : 0;
    if (rc != 0)
        fprintf(stderr, "photogen: could not submit every photo: %s\n", wp_strerror(rc));
    failures_free(&failed);
    free(fs);
    wp_pool_destroy(pool);
    return status;
}

/* ======================================================== test cards */

enum { RED, GREEN, BLUE, WHITE, BLACK, YELLOW, CYAN, MAGENTA, N_COLOURS };
static const unsigned char palette[N_COLOURS][3] = {
    [RED] = { 255, 0, 0 },     [GREEN] = { 0, 255, 0 },  [BLUE] = { 0, 0, 255 },
    [WHITE] = { 255, 255, 255 }, [BLACK] = { 0, 0, 0 },  [YELLOW] = { 255, 255, 0 },
    [CYAN] = { 0, 255, 255 },  [MAGENTA] = { 255, 0, 255 },
};
static const char *const colour_names[N_COLOURS] = {
    "red", "green", "blue", "white", "black", "yellow", "cyan", "magenta"
};
/* Quadrants as seen: top left, top right, bottom left, bottom right. */
static const int card_colours[4] = { RED, GREEN, BLUE, WHITE };

typedef struct card {
    unsigned w, h; /* as seen */
    int orientation;
} card;

/*
 * Where a stored pixel is seen, straight from the EXIF definitions ("the
 * 0th row is the visual right-hand side, the 0th column the visual top" for
 * 6, and so on), written independently of thumbs_image.c's inverse so that
 * one mistake cannot hide another.
 */
static void seen_at(const card *c, unsigned sx, unsigned sy, unsigned *x, unsigned *y)
{
    switch (c->orientation) {
    case 2: *x = c->w - 1 - sx; *y = sy; break;
    case 3: *x = c->w - 1 - sx; *y = c->h - 1 - sy; break;
    case 4: *x = sx; *y = c->h - 1 - sy; break;
    case 5: *x = sy; *y = sx; break;
    case 6: *x = c->w - 1 - sy; *y = sx; break;
    case 7: *x = c->w - 1 - sy; *y = c->h - 1 - sx; break;
    case 8: *x = sy; *y = c->h - 1 - sx; break;
    default: *x = sx; *y = sy; break;
    }
}

static void paint_card(void *ctx, unsigned sy, unsigned char *row)
{
    const card *c = ctx;
    unsigned stored_w = c->orientation >= 5 ? c->h : c->w;
    for (unsigned sx = 0; sx < stored_w; sx++) {
        unsigned x, y;
        seen_at(c, sx, sy, &x, &y);
        int q = (x >= c->w / 2) + 2 * (y >= c->h / 2);
        memcpy(row + (size_t)sx * 3, palette[card_colours[q]], 3);
    }
}

static int write_card(int orientation, unsigned w, unsigned h, const char *path)
{
    card c = { .w = w, .h = h, .orientation = orientation };
    jpeg_spec spec = { .width = orientation >= 5 ? h : w, .height = orientation >= 5 ? w : h,
                       .channels = 3, .quality = PHOTO_QUALITY, .orientation = orientation };
    char err[512];
    if (pg_write_jpeg(path, &spec, paint_card, &c, err, sizeof err) != 0) {
        fprintf(stderr, "photogen: %s\n", err);
        return EXIT_SETUP;
    }
    return 0;
}

/* The palette colour nearest to the mean of a patch around (cx, cy). */
static const char *colour_at(const decoded *d, unsigned cx, unsigned cy)
{
    unsigned rx = d->width / 16, ry = d->height / 16;
    uint64_t sum[3] = { 0 }, n = 0;
    for (unsigned y = cy - ry; y <= cy + ry; y++)
        for (unsigned x = cx - rx; x <= cx + rx; x++, n++)
            for (unsigned k = 0; k < 3; k++)
                sum[k] += d->pixels[((size_t)y * d->width + x) * d->channels
                                    + (d->channels == 3 ? k : 0)];
    int best = 0;
    uint64_t best_d = UINT64_MAX;
    for (int c = 0; c < N_COLOURS; c++) {
        uint64_t dist = 0;
        for (unsigned k = 0; k < 3; k++) {
            int64_t e = (int64_t)(sum[k] / n) - palette[c][k];
            dist += (uint64_t)(e * e);
        }
        if (dist < best_d)
            best_d = dist, best = c;
    }
    return colour_names[best];
}

static int check(const char *path)
{
    decoded d;
    char err[512];
    if (pg_read_jpeg(path, &d, err, sizeof err) != 0) {
        fprintf(stderr, "photogen: %s\n", err);
        return EXIT_SOME_FAILED;
    }
    printf("%ux%u orientation=", d.width, d.height);
    if (d.orientation > 0)
        printf("%d", d.orientation);
    else
        printf("none");
    unsigned x0 = d.width / 4, x1 = d.width * 3 / 4, y0 = d.height / 4, y1 = d.height * 3 / 4;
    printf(" %s %s %s %s\n", colour_at(&d, x0, y0), colour_at(&d, x1, y0),
           colour_at(&d, x0, y1), colour_at(&d, x1, y1));
    free(d.pixels);
    return 0;
}

/* ===================================================== hostile files */

static int truncate_file(const char *path, char *err, size_t len)
{
    FILE *f = fopen(path, "rb");
    long size = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (f != NULL)
        fclose(f);
    if (size < 0 || truncate(path, (off_t)(size * TRUNCATE_PERCENT / 100)) != 0) {
        snprintf(err, len, "cannot truncate %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int hostile(const char *kind, const char *path)
{
    char err[512] = "";
    int rc;
    if (strcmp(kind, "bomb") == 0) {
        rc = pg_write_bomb(path, BOMB_SIDE, BOMB_SIDE, err, sizeof err);
    } else if (strcmp(kind, "slow") == 0) {
        rc = pg_write_slow(path, SLOW_SIDE, err, sizeof err);
    } else if (strcmp(kind, "truncated") == 0) {
        rc = write_photo(path, 0, 0, err, sizeof err);
        if (rc == 0)
            rc = truncate_file(path, err, sizeof err);
    } else if (strcmp(kind, "notjpeg") == 0) {
        FILE *f = fopen(path, "w");
        rc = f != NULL && fputs("This is not a JPEG.\n", f) >= 0 ? 0 : -1;
        if (f != NULL && fclose(f) != 0)
            rc = -1;
        if (rc != 0)
            snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
    } else {
        fprintf(stderr, "photogen: --hostile wants bomb, slow, truncated or notjpeg\n");
        return EXIT_SETUP;
    }
    if (rc != 0)
        fprintf(stderr, "photogen: %s\n", err);
    return rc != 0 ? EXIT_SETUP : 0;
}

/* ============================================================ options */

static const char usage_text[] =
    "Usage: photogen [-j WORKERS] [--nested] [--orientations] N DIR\n"
    "       photogen --card ORIENTATION WIDTH HEIGHT FILE\n"
    "       photogen --hostile bomb|slow|truncated|notjpeg FILE\n"
    "       photogen --check FILE\n";

static int usage_error(const char *why)
{
    return cli_usage_error("photogen", usage_text, why);
}

static bool parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long v;
    if (!cli_number(s, min, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    enum { OPT_NESTED = 256, OPT_ORIENTATIONS, OPT_CARD, OPT_HOSTILE, OPT_CHECK };
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'j' },
        { "nested", no_argument, NULL, OPT_NESTED },
        { "orientations", no_argument, NULL, OPT_ORIENTATIONS },
        { "card", no_argument, NULL, OPT_CARD },
        { "hostile", required_argument, NULL, OPT_HOSTILE },
        { "check", no_argument, NULL, OPT_CHECK },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    gen_options o = { 0 };
    const char *kind = NULL;
    bool want_card = false, want_check = false;
    int c;
    while ((c = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (!parse_unsigned(optarg, 1, 1024, &o.workers))
                return usage_error("-j wants a number of workers from 1 to 1024");
            break;
        case OPT_NESTED: o.nested = true; break;
        case OPT_ORIENTATIONS: o.orientations = true; break;
        case OPT_CARD: want_card = true; break;
        case OPT_HOSTILE: kind = optarg; break;
        case OPT_CHECK: want_check = true; break;
        case 'h':
            printf("%s", usage_text);
            return 0;
        default:
            return usage_error(NULL);
        }
    }
    int left = argc - optind;
    char **arg = argv + optind;
    if (want_check)
        return left == 1 ? check(arg[0]) : usage_error("--check wants one FILE");
    if (kind != NULL)
        return left == 1 ? hostile(kind, arg[0]) : usage_error("--hostile wants one FILE");
    if (want_card) {
        unsigned orientation, w, h;
        if (left != 4 || !parse_unsigned(arg[0], 1, 8, &orientation)
            || !parse_unsigned(arg[1], 2, MAX_CARD_SIDE, &w)
            || !parse_unsigned(arg[2], 2, MAX_CARD_SIDE, &h))
            return usage_error("--card wants ORIENTATION (1-8), WIDTH, HEIGHT (2-10000), FILE");
        return write_card((int)orientation, w, h, arg[3]);
    }
    if (left != 2 || !parse_unsigned(arg[0], 1, MAX_PHOTOS, &o.n))
        return usage_error("expected N (1 to 1000000) and DIR");
    o.dir = arg[1];
    return generate(&o);
}
