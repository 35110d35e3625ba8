/* SPDX-License-Identifier: MIT */
/*
 * thumbnails — the workerpool demo: JPEG thumbnails of a whole directory
 * tree, made in worker processes.
 *
 * Why this job: thumbnailing is CPU-bound, embarrassingly parallel, and runs
 * a large C decoder on files nobody vouched for.  A damaged or hostile JPEG
 * can make a decoder fail, crash or hang; in a worker process that costs one
 * task, which the pool reports, and the other thousands go on.
 *
 * What it shows of the library:
 *   - one task per (image, size), submitted with wp_submit(); the argument is
 *     a few bytes (a size and two paths), the pixels never cross a pipe, and
 *     the result is a 16-byte struct;
 *   - a libjpeg error becomes that task's failure through wp_buf_fail(), with
 *     a message naming the file, and the worker lives on;
 *   - a progress bar that polls wp_pool_get_stats(), ticked by wp_wait_all()
 *     with a 100 ms timeout instead of a blind sleep;
 *   - a summary built from the futures: wp_future_error(), _message(),
 *     _result().
 *
 * `thumbnails --generate N DIR` writes synthetic photo-like JPEGs, through
 * the pool as well (one task per image), so the demo runs on a fresh machine.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */

#include "workerpool.h"

#if defined(__GNUC__) || defined(__clang__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

/* Largest first: each image's slowest task starts first, which shortens the
   tail at the end of a run. */
static const unsigned thumb_sizes[] = { 1024, 512, 256, 128, 64, 32 };
#define N_SIZES (sizeof thumb_sizes / sizeof thumb_sizes[0])

enum {
    THUMB_QUALITY = 65,
    GENERATED_QUALITY = 90,
    MAX_LISTED_FAILURES = 20,
    EXIT_SOME_FAILED = 1,
    EXIT_SETUP = 2
};

/* A task's own failure codes, as wp_future_code() reports them. */
enum task_failure {
    TF_BADARG = 1, /* argument bytes not as pack_task_arg() made them */
    TF_IO,         /* cannot open, write or rename a file */
    TF_JPEG,       /* libjpeg gave up: a corrupt, truncated or odd file */
    TF_COLOR,      /* a colour space this demo does not convert (CMYK...) */
    TF_NOMEM
};

/* What both kinds of task send back: the JPEG they wrote. */
struct jpeg_written {
    uint32_t width, height;
    uint64_t bytes;
};

/* ==================================================== task argument bytes */

/*
 * A task argument is a fixed header struct followed by NUL-terminated paths.
 * Sending only the bytes in use keeps messages small, and the worker checks
 * the layout instead of trusting it: the bytes crossed a process boundary.
 */
static void *pack_task_arg(const void *header, size_t header_len,
                           const char *const *paths, size_t n_paths, size_t *len_out)
{
    size_t len = header_len;
    for (size_t i = 0; i < n_paths; i++)
        len += strlen(paths[i]) + 1;
    char *arg = malloc(len);
    if (arg == NULL)
        return NULL;
    memcpy(arg, header, header_len);
    char *p = arg + header_len;
    for (size_t i = 0; i < n_paths; i++) {
        size_t n = strlen(paths[i]) + 1;
        memcpy(p, paths[i], n);
        p += n;
    }
    *len_out = len;
    return arg;
}

static bool unpack_task_arg(const void *arg, size_t arg_len, void *header, size_t header_len,
                            const char **paths, size_t n_paths)
{
    if (arg == NULL || arg_len < header_len)
        return false;
    memcpy(header, arg, header_len);
    const char *p = (const char *)arg + header_len;
    const char *end = (const char *)arg + arg_len;
    for (size_t i = 0; i < n_paths; i++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (nul == NULL)
            return false;
        paths[i] = p;
        p = nul + 1;
    }
    return p == end;
}

/* Thumbnail task: header, then input path and output path. */
struct thumb_job {
    uint32_t box; /* the longer side of the thumbnail */
};

/* Generator task: header, then the output path. */
enum { GEN_GRAY = 1u << 0, GEN_TRUNCATE = 1u << 1 };

struct gen_job {
    uint32_t seed;
    uint32_t flags;
};

/* ============================================= libjpeg errors -> longjmp */

/*
 * libjpeg reports a fatal error by calling error_exit, which must not
 * return; jumping back into the task is the documented way to survive it.
 */
struct jpeg_catcher {
    struct jpeg_error_mgr mgr; /* first, so a jpeg_error_mgr * converts back */
    jmp_buf jump;
    char text[JMSG_LENGTH_MAX];
};

static void catcher_error_exit(j_common_ptr cinfo)
{
    struct jpeg_catcher *c = (struct jpeg_catcher *)cinfo->err;
    cinfo->err->format_message(cinfo, c->text);
    longjmp(c->jump, 1);
}

/* Warnings are fatal here: for a truncated or corrupt stream libjpeg warns
   and fills the rest with grey, which would make a plausible-looking but
   wrong thumbnail.  Trace messages (level >= 0) are dropped. */
static void catcher_emit_message(j_common_ptr cinfo, int msg_level)
{
    if (msg_level < 0)
        catcher_error_exit(cinfo);
}

/* ============================================== area-averaging resampler */

/*
 * Shrinks an image fed one source row at a time and hands out finished rows,
 * so neither the decoded image nor the thumbnail is ever held whole.
 *
 * Coordinates are scaled to a common integer axis: source pixel i covers
 * [i*dst, (i+1)*dst) and destination pixel j covers [j*src, (j+1)*src), so
 * every overlap weight is an exact integer and the weights of one
 * destination pixel add up to src.  No rounding drift, no lost edge rows.
 */
struct resampler {
    unsigned sw, sh, tw, th, channels;
    unsigned sy, ty;    /* next source row; destination row being summed */
    float *hrow;        /* the current source row, shrunk horizontally */
    float *acc;         /* weighted sum for destination row ty */
    unsigned char *out; /* a finished destination row */
};

typedef void (*row_sink)(void *ctx, unsigned char *row);

static uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    uint64_t lo = a0 > b0 ? a0 : b0;
    uint64_t hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

static bool resampler_init(struct resampler *rs, unsigned sw, unsigned sh,
                           unsigned tw, unsigned th, unsigned channels)
{
    size_t row = (size_t)tw * channels;
    *rs = (struct resampler){ .sw = sw, .sh = sh, .tw = tw, .th = th, .channels = channels };
    rs->hrow = malloc(row * sizeof *rs->hrow);
    rs->acc = calloc(row, sizeof *rs->acc);
    rs->out = malloc(row);
    return rs->hrow != NULL && rs->acc != NULL && rs->out != NULL;
}

static void resampler_free(struct resampler *rs)
{
    free(rs->hrow);
    free(rs->acc);
    free(rs->out);
}

static void shrink_row_horizontally(struct resampler *rs, const unsigned char *src)
{
    const unsigned ch = rs->channels;
    for (unsigned x = 0; x < rs->tw; x++) {
        uint64_t lo = (uint64_t)x * rs->sw, hi = lo + rs->sw;
        float *dst = rs->hrow + (size_t)x * ch;
        for (unsigned k = 0; k < ch; k++)
            dst[k] = 0.0f;
        for (uint64_t i = lo / rs->tw; i <= (hi - 1) / rs->tw; i++) {
            float w = (float)overlap(i * rs->tw, (i + 1) * rs->tw, lo, hi);
            for (unsigned k = 0; k < ch; k++)
                dst[k] += w * src[i * ch + k];
        }
        for (unsigned k = 0; k < ch; k++)
            dst[k] /= (float)rs->sw;
    }
}

static void emit_finished_row(struct resampler *rs, row_sink sink, void *ctx)
{
    size_t n = (size_t)rs->tw * rs->channels;
    for (size_t i = 0; i < n; i++) {
        float v = rs->acc[i] / (float)rs->sh + 0.5f;
        rs->out[i] = v >= 255.0f ? 255 : v <= 0.0f ? 0 : (unsigned char)v;
        rs->acc[i] = 0.0f;
    }
    sink(ctx, rs->out);
}

static void resampler_push_row(struct resampler *rs, const unsigned char *src,
                               row_sink sink, void *ctx)
{
    shrink_row_horizontally(rs, src);
    uint64_t s0 = (uint64_t)rs->sy * rs->th, s1 = s0 + rs->th;
    size_t n = (size_t)rs->tw * rs->channels;
    while (rs->ty < rs->th) {
        uint64_t t0 = (uint64_t)rs->ty * rs->sh, t1 = t0 + rs->sh;
        float w = (float)overlap(s0, s1, t0, t1);
        for (size_t i = 0; i < n && w > 0.0f; i++)
            rs->acc[i] += w * rs->hrow[i];
        if (t1 > s1)
            break; /* this destination row goes on into the next source row */
        emit_finished_row(rs, sink, ctx);
        rs->ty++;
    }
    rs->sy++;
}

/* ============================================================ task state */

/*
 * Everything a task may hold when libjpeg jumps out of it, so that one
 * function releases it on every path.  It lives in run_task()'s frame, not in
 * the frame that calls setjmp, so its contents are still valid after a jump.
 */
struct task_state {
    struct jpeg_catcher jerr;
    const char *subject; /* the file named in libjpeg error messages */
    struct jpeg_decompress_struct dec;
    struct jpeg_compress_struct enc;
    bool dec_created, enc_created;
    FILE *in, *out;
    char *tmp_path;           /* unlinked on release unless renamed into place */
    unsigned char *scanline;  /* one decoded or generated row */
    struct resampler rs;
    char message[1024];
};

typedef int (*task_body)(struct task_state *st, void *work);

static void task_state_init(struct task_state *st, const char *subject)
{
    memset(st, 0, sizeof *st);
    jpeg_std_error(&st->jerr.mgr);
    st->jerr.mgr.error_exit = catcher_error_exit;
    st->jerr.mgr.emit_message = catcher_emit_message;
    st->subject = subject;
}

static void task_state_release(struct task_state *st)
{
    if (st->dec_created)
        jpeg_destroy_decompress(&st->dec);
    if (st->enc_created)
        jpeg_destroy_compress(&st->enc);
    if (st->in != NULL)
        fclose(st->in);
    if (st->out != NULL)
        fclose(st->out);
    if (st->tmp_path != NULL) {
        unlink(st->tmp_path);
        free(st->tmp_path);
    }
    free(st->scanline);
    resampler_free(&st->rs);
}

PRINTF_LIKE(3, 4)
static int task_fail(struct task_state *st, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
    return code;
}

/* The only function that calls setjmp; it keeps nothing of its own across
   the jump, so no local can be clobbered. */
static int run_catching_jpeg_errors(struct task_state *st, task_body body, void *work)
{
    if (setjmp(st->jerr.jump) != 0)
        return task_fail(st, TF_JPEG, "%s: libjpeg: %s", st->subject, st->jerr.text);
    return body(st, work);
}

/* The common frame of both task functions: run the body, clean up whatever
   happened, and turn the outcome into a result or a failure. */
static int run_task(wp_buf *result, const char *subject, task_body body, void *work,
                    const struct jpeg_written *written)
{
    struct task_state st;
    task_state_init(&st, subject);
    int rc = run_catching_jpeg_errors(&st, body, work);
    task_state_release(&st);
    if (rc != 0)
        return wp_buf_fail(result, rc, st.message);
    return wp_buf_append(result, written, sizeof *written);
}

/* ==================================================== JPEG in, JPEG out */

/* Grey stays grey; YCbCr and RGB come out as RGB.  CMYK and YCCK would need
   an ink model (and usually an ICC profile) to look right. */
static int select_output_colour(struct task_state *st, const char *path)
{
    switch (st->dec.jpeg_color_space) {
    case JCS_GRAYSCALE:
        st->dec.out_color_space = JCS_GRAYSCALE;
        return 0;
    case JCS_YCbCr:
    case JCS_RGB:
        st->dec.out_color_space = JCS_RGB;
        return 0;
    case JCS_CMYK:
    case JCS_YCCK:
        return task_fail(st, TF_COLOR, "%s: CMYK/YCCK JPEGs are not supported", path);
    default:
        return task_fail(st, TF_COLOR, "%s: unsupported JPEG colour space %d", path,
                         (int)st->dec.jpeg_color_space);
    }
}

static int open_decoder(struct task_state *st, const char *path)
{
    st->in = fopen(path, "rb");
    if (st->in == NULL)
        return task_fail(st, TF_IO, "%s: cannot open: %s", path, strerror(errno));
    st->dec.err = &st->jerr.mgr;
    jpeg_create_decompress(&st->dec);
    st->dec_created = true;
    jpeg_stdio_src(&st->dec, st->in);
    jpeg_read_header(&st->dec, TRUE);
    return select_output_colour(st, path);
}

static unsigned scale_side(unsigned side, unsigned num, unsigned den)
{
    uint64_t v = ((uint64_t)side * num + den / 2) / den;
    return v > 0 ? (unsigned)v : 1;
}

/* The longer side becomes `box`, the other keeps the aspect ratio.  An image
   that already fits keeps its size: thumbnails are never upscaled. */
static void fit_in_box(unsigned w, unsigned h, unsigned box, unsigned *tw, unsigned *th)
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

/* Let the decoder do most of the shrinking: an M/8 IDCT scale costs far less
   than decoding at full size.  Take the smallest M that still yields at least
   tw x th pixels, so the area-averaging after it only ever shrinks.  Older
   libjpegs round an unsupported M up to one they have, which is still fine. */
static void choose_dct_scale(struct jpeg_decompress_struct *dec, unsigned tw, unsigned th)
{
    dec->scale_denom = 8;
    for (unsigned m = 1; m <= 8; m++) {
        dec->scale_num = m;
        jpeg_calc_output_dimensions(dec);
        if (dec->output_width >= tw && dec->output_height >= th)
            return;
    }
}

static char *temp_name_for(const char *path)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (tmp != NULL)
        snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
    return tmp;
}

/* Open a temporary file next to `path` and start compressing into it. */
static int open_encoder(struct task_state *st, const char *path, unsigned width,
                        unsigned height, unsigned channels, int quality)
{
    st->tmp_path = temp_name_for(path);
    if (st->tmp_path == NULL)
        return task_fail(st, TF_NOMEM, "%s: out of memory", path);
    st->out = fopen(st->tmp_path, "wb");
    if (st->out == NULL)
        return task_fail(st, TF_IO, "%s: cannot create: %s", st->tmp_path, strerror(errno));
    st->enc.err = &st->jerr.mgr;
    jpeg_create_compress(&st->enc);
    st->enc_created = true;
    jpeg_stdio_dest(&st->enc, st->out);
    st->enc.image_width = width;
    st->enc.image_height = height;
    st->enc.input_components = (int)channels;
    st->enc.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&st->enc);
    jpeg_set_quality(&st->enc, quality, TRUE);
    jpeg_start_compress(&st->enc, TRUE);
    return 0;
}

static void write_encoder_row(void *enc, unsigned char *row)
{
    JSAMPROW rows[1] = { row };
    jpeg_write_scanlines(enc, rows, 1);
}

static int finish_encoding(struct task_state *st, struct jpeg_written *w)
{
    struct stat sb;
    jpeg_finish_compress(&st->enc);
    if (fflush(st->out) != 0 || fstat(fileno(st->out), &sb) != 0)
        return task_fail(st, TF_IO, "%s: cannot write: %s", st->tmp_path, strerror(errno));
    w->width = st->enc.image_width;
    w->height = st->enc.image_height;
    w->bytes = (uint64_t)sb.st_size;
    return 0;
}

/* Rename the finished file into place: readers never see half a JPEG, and a
   failed task leaves no file behind (task_state_release unlinks the temp). */
static int commit_output(struct task_state *st, const char *path)
{
    int closed = fclose(st->out);
    st->out = NULL;
    if (closed != 0)
        return task_fail(st, TF_IO, "%s: cannot write: %s", st->tmp_path, strerror(errno));
    if (rename(st->tmp_path, path) != 0)
        return task_fail(st, TF_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    free(st->tmp_path);
    st->tmp_path = NULL;
    return 0;
}

/* ======================================================= thumbnail task */

struct thumb_work {
    const char *in_path, *out_path;
    unsigned box;
    struct jpeg_written written;
};

static int make_thumbnail(struct task_state *st, void *work_ptr)
{
    struct thumb_work *work = work_ptr;
    int rc = open_decoder(st, work->in_path);
    if (rc != 0)
        return rc;

    unsigned tw, th;
    fit_in_box(st->dec.image_width, st->dec.image_height, work->box, &tw, &th);
    choose_dct_scale(&st->dec, tw, th);
    jpeg_start_decompress(&st->dec);

    unsigned channels = (unsigned)st->dec.output_components;
    st->scanline = malloc((size_t)st->dec.output_width * channels);
    if (st->scanline == NULL
        || !resampler_init(&st->rs, st->dec.output_width, st->dec.output_height, tw, th, channels))
        return task_fail(st, TF_NOMEM, "%s: out of memory", work->in_path);

    rc = open_encoder(st, work->out_path, tw, th, channels, THUMB_QUALITY);
    if (rc != 0)
        return rc;
    while (st->dec.output_scanline < st->dec.output_height) {
        JSAMPROW rows[1] = { st->scanline };
        jpeg_read_scanlines(&st->dec, rows, 1);
        resampler_push_row(&st->rs, st->scanline, write_encoder_row, &st->enc);
    }
    jpeg_finish_decompress(&st->dec);

    rc = finish_encoding(st, &work->written);
    return rc != 0 ? rc : commit_output(st, work->out_path);
}

/* Runs in a worker: one thumbnail of one image. */
static int thumbnail_task(const void *arg, size_t arg_len, wp_buf *result)
{
    struct thumb_job job;
    const char *paths[2];
    if (!unpack_task_arg(arg, arg_len, &job, sizeof job, paths, 2))
        return wp_buf_fail(result, TF_BADARG, "malformed thumbnail task argument");
    struct thumb_work work = { .in_path = paths[0], .out_path = paths[1], .box = job.box };
    return run_task(result, work.in_path, make_thumbnail, &work, &work.written);
}

/* ==================================================== synthetic photos */

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

static void random_colour(uint32_t *rng, float rgb[3], unsigned lo, unsigned hi)
{
    for (int k = 0; k < 3; k++)
        rgb[k] = (float)random_between(rng, lo, hi);
}

/* Landscape between 800x600 and 2400x1600, one in four turned portrait. */
static void plan_scene(struct scene *s, uint32_t *rng)
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

static void paint_row(const struct scene *s, int y, unsigned char *row, unsigned channels,
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

/* Keep only the first 40%: the headers survive, the image data does not, so
   the file looks like a JPEG until a decoder reaches the cut. */
static int truncate_output(struct task_state *st, struct jpeg_written *w)
{
    w->bytes = w->bytes * 2 / 5;
    if (ftruncate(fileno(st->out), (off_t)w->bytes) != 0)
        return task_fail(st, TF_IO, "%s: cannot truncate: %s", st->tmp_path, strerror(errno));
    return 0;
}

struct gen_work {
    const char *path;
    struct gen_job job;
    struct jpeg_written written;
};

static int write_synthetic_photo(struct task_state *st, void *work_ptr)
{
    struct gen_work *work = work_ptr;
    uint32_t rng = work->job.seed | 1; /* xorshift must not start at 0 */
    struct scene scene;
    plan_scene(&scene, &rng);
    unsigned channels = (work->job.flags & GEN_GRAY) ? 1 : 3;

    st->scanline = malloc((size_t)scene.width * channels);
    if (st->scanline == NULL)
        return task_fail(st, TF_NOMEM, "%s: out of memory", work->path);
    int rc = open_encoder(st, work->path, scene.width, scene.height, channels, GENERATED_QUALITY);
    if (rc != 0)
        return rc;
    for (unsigned y = 0; y < scene.height; y++) {
        paint_row(&scene, (int)y, st->scanline, channels, &rng);
        write_encoder_row(&st->enc, st->scanline);
    }
    rc = finish_encoding(st, &work->written);
    if (rc == 0 && (work->job.flags & GEN_TRUNCATE))
        rc = truncate_output(st, &work->written);
    return rc != 0 ? rc : commit_output(st, work->path);
}

/* Runs in a worker: one synthetic photo. */
static int generate_task(const void *arg, size_t arg_len, wp_buf *result)
{
    struct gen_work work = { 0 };
    if (!unpack_task_arg(arg, arg_len, &work.job, sizeof work.job, &work.path, 1))
        return wp_buf_fail(result, TF_BADARG, "malformed generator task argument");
    return run_task(result, work.path, write_synthetic_photo, &work, &work.written);
}

/* =================================================== main-side helpers */

/* Out of memory on the main side is a setup error: report it and stop. */
static void *check_alloc(void *p)
{
    if (p == NULL) {
        fputs("thumbnails: out of memory\n", stderr);
        exit(EXIT_SETUP);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    return check_alloc(realloc(p, n));
}

static char *xstrdup(const char *s)
{
    return check_alloc(strdup(s));
}

/* "dir" + "name", with exactly one slash between them. */
static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir), m = strlen(name);
    bool slash = n > 0 && dir[n - 1] == '/';
    char *path = check_alloc(malloc(n + !slash + m + 1));
    memcpy(path, dir, n);
    path[n] = '/';
    memcpy(path + n + !slash, name, m + 1);
    return path;
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return seconds_between(start, &now);
}

/* mkdir -p: create each missing ancestor, then path itself. */
static int make_dirs(const char *path)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *cut = p + 1; rc == 0; cut++) {
        char saved = *cut;
        if (saved != '\0' && saved != '/')
            continue;
        *cut = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "thumbnails: cannot create %s: %s\n", p, strerror(errno));
            rc = -1;
        }
        *cut = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    return rc;
}

struct path_list {
    char **items;
    size_t n, cap;
};

static void path_list_add(struct path_list *l, char *path)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = xrealloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->n++] = path;
}

static void path_list_free(struct path_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ====================================================== finding images */

static bool is_jpeg_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/*
 * Collect the JPEGs under dir.  opendir rather than nftw, because nftw's
 * callback takes no context pointer and would need global state.  Symlinks
 * to files count; symlinks to directories are not followed (no cycles).
 * `skip` is the output directory: when it lies inside dir, thumbnailing the
 * thumbnails of the last run would snowball.  Only an unreadable top level
 * is an error; an unreadable subdirectory is reported and passed over.
 */
static int collect_jpegs(const char *dir, const struct stat *skip, struct path_list *out,
                         bool top)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "thumbnails: %s: %s\n", dir, strerror(errno));
        return top ? -1 : 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = join_path(dir, e->d_name);
        struct stat sb;
        bool keep = false;
        if (lstat(path, &sb) != 0)
            fprintf(stderr, "thumbnails: %s: %s\n", path, strerror(errno));
        else if (S_ISLNK(sb.st_mode))
            keep = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && is_jpeg_name(e->d_name);
        else if (S_ISDIR(sb.st_mode) && !same_file(&sb, skip))
            collect_jpegs(path, skip, out, false);
        else
            keep = S_ISREG(sb.st_mode) && is_jpeg_name(e->d_name);
        if (keep)
            path_list_add(out, path);
        else
            free(path);
    }
    closedir(d);
    return 0;
}

/* The output file name: the path below DIR, flattened, so that a/x.jpg and
   b/x.jpg do not overwrite each other. */
static char *flat_name(const char *relative)
{
    char *name = xstrdup(relative);
    for (char *p = name; *p != '\0'; p++)
        if (*p == '/')
            *p = '_';
    return name;
}

/* ========================================================= progress bar */

struct progress {
    bool enabled;
    const char *what;
    struct timespec start, last_draw;
};

static void progress_init(struct progress *p, bool enabled, const char *what)
{
    *p = (struct progress){ .enabled = enabled, .what = what };
    clock_gettime(CLOCK_MONOTONIC, &p->start);
}

static void progress_draw(struct progress *p, wp_pool *pool)
{
    enum { WIDTH = 30 };
    wp_pool_stats s;
    if (wp_pool_get_stats(pool, &s) != 0)
        return;
    uint64_t done = s.succeeded + s.failed + s.cancelled;
    size_t filled = s.submitted ? (size_t)(done * WIDTH / s.submitted) : 0;
    char bar[WIDTH + 1];
    memset(bar, '#', filled);
    memset(bar + filled, '.', WIDTH - filled);
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %" PRIu64 "/%" PRIu64 ", %" PRIu64 " failed, %.1f s ", p->what,
            bar, done, s.submitted, s.failed + s.cancelled, seconds_since(&p->start));
    fflush(stderr);
    clock_gettime(CLOCK_MONOTONIC, &p->last_draw);
}

/* Redraw at most ten times a second, however often it is called. */
static void progress_tick(struct progress *p, wp_pool *pool)
{
    if (p->enabled && seconds_since(&p->last_draw) >= 0.095)
        progress_draw(p, pool);
}

static void progress_finish(struct progress *p, wp_pool *pool)
{
    if (!p->enabled)
        return;
    progress_draw(p, pool);
    fputc('\n', stderr);
}

/* =============================================== submitting and waiting */

/* Every submitted task: its future, contiguous for wp_wait_all(), and what
   the summary needs to name it. */
struct batch {
    wp_future **futures;
    const char **labels; /* borrowed from a path_list */
    unsigned *boxes;     /* 0: not a thumbnail */
    size_t n, cap;
};

static int batch_submit(struct batch *b, wp_pool *pool, wp_task_fn fn, const void *header,
                        size_t header_len, const char *const *paths, size_t n_paths,
                        const char *label, unsigned box)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->futures = xrealloc(b->futures, b->cap * sizeof *b->futures);
        b->labels = xrealloc(b->labels, b->cap * sizeof *b->labels);
        b->boxes = xrealloc(b->boxes, b->cap * sizeof *b->boxes);
    }
    size_t len;
    void *arg = pack_task_arg(header, header_len, paths, n_paths, &len);
    if (arg == NULL)
        return WP_ENOMEM;
    int rc = wp_submit(pool, fn, arg, len, NULL, &b->futures[b->n]);
    free(arg);
    if (rc == 0) {
        b->labels[b->n] = label;
        b->boxes[b->n] = box;
        b->n++;
    }
    return rc;
}

static void batch_wait(const struct batch *b, wp_pool *pool, struct progress *bar)
{
    progress_tick(bar, pool);
    if (b->n > 0)
        while (wp_wait_all(b->futures, b->n, 100) == WP_ETIMEDOUT)
            progress_tick(bar, pool);
    progress_finish(bar, pool);
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        wp_future_release(b->futures[i]);
    free(b->futures);
    free(b->labels);
    free(b->boxes);
}

struct tally {
    size_t succeeded, failed;
    uint64_t bytes;
};

/* One line per failed task.  A task's own message already starts with the
   file name; the pool's messages (a crash, a timeout) do not. */
static void print_failure(const wp_future *f, const char *label, unsigned box)
{
    const char *msg = wp_future_message(f);
    if (msg[0] == '\0')
        msg = wp_strerror(wp_future_error(f));
    printf("  ");
    if (box != 0)
        printf("%ux%u: ", box, box);
    if (strncmp(msg, label, strlen(label)) != 0)
        printf("%s: ", label);
    printf("%s\n", msg);
}

static struct tally batch_tally(const struct batch *b)
{
    struct tally t = { 0 };
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        const void *res = wp_future_result(b->futures[i], &len);
        struct jpeg_written w;
        if (wp_future_error(b->futures[i]) != 0) {
            t.failed++;
        } else {
            t.succeeded++;
            if (res != NULL && len == sizeof w) {
                memcpy(&w, res, sizeof w); /* no alignment assumptions */
                t.bytes += w.bytes;
            }
        }
    }
    return t;
}

/* Each failure with the file it was about and the pool's explanation (the
   task's own message, or e.g. a crash); only the first few, a long list
   helps nobody. */
static void batch_list_failures(const struct batch *b)
{
    size_t listed = 0, failed = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (wp_future_error(b->futures[i]) == 0)
            continue;
        if (failed++ < MAX_LISTED_FAILURES) {
            print_failure(b->futures[i], b->labels[i], b->boxes[i]);
            listed++;
        }
    }
    if (failed > listed)
        printf("  ... and %zu more\n", failed - listed);
}

static int exit_status(const struct tally *t, int submit_error)
{
    if (submit_error != 0) {
        fprintf(stderr, "thumbnails: could not submit every task: %s\n",
                wp_strerror(submit_error));
        return EXIT_SETUP;
    }
    return t->failed > 0 ? EXIT_SOME_FAILED : 0;
}

/* ============================================================== options */

struct options {
    unsigned workers;     /* 0: the pool's default, one per CPU */
    const char *outdir;
    const char *dir;
    unsigned generate;    /* > 0: --generate N */
    bool corrupt;
    bool progress;
};

static const char usage_text[] =
    "Usage: thumbnails [-j WORKERS] [-o OUTDIR] [--progress] DIR\n"
    "       thumbnails --generate N [--corrupt] [-j WORKERS] [--progress] DIR\n";

static const char help_text[] =
    "\n"
    "Make JPEG thumbnails of every *.jpg and *.jpeg (any case) under DIR, in\n"
    "worker processes of a workerpool pool: one task per image and size.\n"
    "\n"
    "Sizes 1024, 512, 256, 128, 64 and 32: the longer side of a thumbnail is\n"
    "the size and the aspect ratio is kept.  A thumbnail goes to\n"
    "  OUTDIR/<S>x<S>/<path below DIR, with '/' replaced by '_'>\n"
    "where <S>x<S> names the box it fits in, not its own dimensions: e.g.\n"
    "OUTDIR/256x256/trip_beach.jpg may be 256x171.  Images are never\n"
    "upscaled: an image that already fits a box is written into that box's\n"
    "directory at its own size (re-encoded), so every directory is complete.\n"
    "Thumbnails are quality 65; existing ones are overwritten.  Greyscale\n"
    "JPEGs give greyscale thumbnails; CMYK JPEGs fail.  A corrupt or\n"
    "truncated JPEG (libjpeg warnings count) fails only its own tasks.\n"
    "OUTDIR is skipped when it lies under DIR.\n"
    "\n"
    "Options:\n"
    "  -j, --workers N   worker processes (default: one per CPU)\n"
    "  -o, --output DIR  where thumbnails go (default: ./thumbnails)\n"
    "      --progress    draw the progress bar on stderr even when it is not\n"
    "                    a terminal (on a terminal it is always drawn)\n"
    "      --generate N  instead, write N synthetic photo-like JPEGs\n"
    "                    DIR/img0000.jpg ... (800x600 to 2400x1600, some\n"
    "                    portrait, every tenth greyscale; the same N gives\n"
    "                    the same files), creating DIR if needed\n"
    "      --corrupt     with --generate: also write DIR/corrupt.jpg,\n"
    "                    truncated, to see a failure reported\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 all tasks succeeded, 1 some failed, 2 usage or setup error.\n";

/* why may be NULL when it has already been said. */
static int usage_error(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "thumbnails: %s\n", why);
    fprintf(stderr, "%sTry 'thumbnails --help'.\n", usage_text);
    return EXIT_SETUP;
}

static bool parse_count(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max || s[0] == '-')
        return false;
    *out = (unsigned)v;
    return true;
}

/* Returns -1 to go on, or the exit status to stop with (--help, errors). */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_PROGRESS = 256, OPT_GENERATE, OPT_CORRUPT };
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'j' },
        { "output", required_argument, NULL, 'o' },
        { "progress", no_argument, NULL, OPT_PROGRESS },
        { "generate", required_argument, NULL, OPT_GENERATE },
        { "corrupt", no_argument, NULL, OPT_CORRUPT },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    *o = (struct options){ .outdir = NULL };
    int c;
    while ((c = getopt_long(argc, argv, "j:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (!parse_count(optarg, 1024, &o->workers))
                return usage_error("-j wants a number of workers from 1 to 1024");
            break;
        case 'o':
            o->outdir = optarg;
            break;
        case OPT_PROGRESS:
            o->progress = true;
            break;
        case OPT_GENERATE:
            if (!parse_count(optarg, 1000000, &o->generate))
                return usage_error("--generate wants a number of images from 1 to 1000000");
            break;
        case OPT_CORRUPT:
            o->corrupt = true;
            break;
        case 'h':
            printf("%s%s", usage_text, help_text);
            return 0;
        default: /* getopt_long has said what was wrong */
            return usage_error(NULL);
        }
    }
    if (optind != argc - 1)
        return usage_error("expected exactly one DIR");
    o->dir = argv[optind];
    if (o->corrupt && o->generate == 0)
        return usage_error("--corrupt goes with --generate");
    if (o->outdir != NULL && o->generate > 0)
        return usage_error("-o makes no sense with --generate");
    if (o->outdir == NULL)
        o->outdir = "./thumbnails";
    if (!o->progress)
        o->progress = isatty(STDERR_FILENO);
    return -1;
}

/* ======================================================= thumbnail mode */

/* OUTDIR/<S>x<S>: named after the box, not the thumbnail's own size. */
static char *box_dir(const char *outdir, unsigned box)
{
    char name[32];
    snprintf(name, sizeof name, "%ux%u", box, box);
    return join_path(outdir, name);
}

/* OUTDIR and one directory per box; *outdir_stat lets the scan skip OUTDIR. */
static int prepare_output_dirs(const char *outdir, struct stat *outdir_stat)
{
    if (make_dirs(outdir) != 0)
        return -1;
    for (size_t i = 0; i < N_SIZES; i++) {
        char *sub = box_dir(outdir, thumb_sizes[i]);
        int rc = make_dirs(sub);
        free(sub);
        if (rc != 0)
            return -1;
    }
    return stat(outdir, outdir_stat);
}

/* The part of an image path below the scanned directory. */
static const char *relative_part(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return path + n + (n > 0 && dir[n - 1] == '/' ? 0 : 1);
}

static int submit_thumbnails(struct batch *b, wp_pool *pool, const struct options *o,
                             const struct path_list *images, struct progress *bar)
{
    for (size_t i = 0; i < images->n; i++) {
        char *name = flat_name(relative_part(images->items[i], o->dir));
        for (size_t s = 0; s < N_SIZES; s++) {
            struct thumb_job job = { .box = thumb_sizes[s] };
            char *dir = box_dir(o->outdir, job.box);
            char *out = join_path(dir, name);
            free(dir);
            const char *paths[2] = { images->items[i], out };
            int rc = batch_submit(b, pool, thumbnail_task, &job, sizeof job, paths, 2,
                                  images->items[i], job.box);
            free(out);
            if (rc != 0) {
                free(name);
                return rc;
            }
            progress_tick(bar, pool); /* submit blocks while the queue is full */
        }
        free(name);
    }
    return 0;
}

static int run_thumbnails(wp_pool *pool, const struct options *o)
{
    struct stat outdir_stat;
    if (prepare_output_dirs(o->outdir, &outdir_stat) != 0)
        return EXIT_SETUP;
    struct stat dir_stat;
    if (stat(o->dir, &dir_stat) == 0 && same_file(&dir_stat, &outdir_stat)) {
        fprintf(stderr, "thumbnails: OUTDIR must not be DIR itself\n");
        return EXIT_SETUP;
    }
    struct path_list images = { 0 };
    if (collect_jpegs(o->dir, &outdir_stat, &images, true) != 0)
        return EXIT_SETUP;
    if (images.n > 1) /* a stable order, whatever readdir gives */
        qsort(images.items, images.n, sizeof *images.items, compare_strings);

    struct batch b = { 0 };
    struct progress bar;
    progress_init(&bar, o->progress, "thumbnails");
    int submit_error = submit_thumbnails(&b, pool, o, &images, &bar);
    batch_wait(&b, pool, &bar);
    double elapsed = seconds_since(&bar.start);

    struct tally t = batch_tally(&b);
    printf("images found:  %zu\n", images.n);
    printf("tasks:         %zu\n", b.n);
    printf("succeeded:     %zu (%.1f MiB written to %s)\n", t.succeeded,
           (double)t.bytes / (1024.0 * 1024.0), o->outdir);
    printf("failed:        %zu\n", t.failed);
    batch_list_failures(&b);
    printf("elapsed:       %.2f s\n", elapsed);
    printf("thumbnails/s:  %.1f\n", elapsed > 0 ? (double)t.succeeded / elapsed : 0.0);

    batch_free(&b);
    path_list_free(&images);
    return exit_status(&t, submit_error);
}

/* ======================================================== generate mode */

static int submit_generators(struct batch *b, wp_pool *pool, const struct options *o,
                             struct path_list *names, struct progress *bar)
{
    for (unsigned i = 0; i <= o->generate; i++) {
        bool corrupt = i == o->generate;
        if (corrupt && !o->corrupt)
            break;
        /* Seeds spread out so neighbouring images do not look alike. */
        struct gen_job job = { .seed = (i + 1) * 2654435761u,
                               .flags = corrupt ? GEN_TRUNCATE : i % 10 == 9 ? GEN_GRAY : 0 };
        char file[32];
        if (corrupt)
            snprintf(file, sizeof file, "corrupt.jpg");
        else
            snprintf(file, sizeof file, "img%04u.jpg", i);
        char *path = join_path(o->dir, file);
        path_list_add(names, path);
        const char *paths[1] = { path };
        int rc = batch_submit(b, pool, generate_task, &job, sizeof job, paths, 1, path, 0);
        if (rc != 0)
            return rc;
        progress_tick(bar, pool);
    }
    return 0;
}

static int run_generate(wp_pool *pool, const struct options *o)
{
    if (make_dirs(o->dir) != 0)
        return EXIT_SETUP;
    struct path_list names = { 0 };
    struct batch b = { 0 };
    struct progress bar;
    progress_init(&bar, o->progress, "generating");
    int submit_error = submit_generators(&b, pool, o, &names, &bar);
    batch_wait(&b, pool, &bar);
    double elapsed = seconds_since(&bar.start);

    struct tally t = batch_tally(&b);
    printf("generated:     %zu JPEGs in %s (%.1f MiB)%s\n", t.succeeded, o->dir,
           (double)t.bytes / (1024.0 * 1024.0), o->corrupt ? ", corrupt.jpg included" : "");
    printf("failed:        %zu\n", t.failed);
    batch_list_failures(&b);
    printf("elapsed:       %.2f s\n", elapsed);

    batch_free(&b);
    path_list_free(&names);
    return exit_status(&t, submit_error);
}

/* ================================================================= main */

int main(int argc, char **argv)
{
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;

    /* Create the pool first: its fork server is a copy of this process as it
       is now, small and single-threaded, before any lists are built. */
    wp_pool *pool;
    wp_pool_options popts = { .workers = o.workers };
    int rc = wp_pool_create(&pool, &popts);
    if (rc != 0) {
        fprintf(stderr, "thumbnails: cannot start the worker pool: %s\n", wp_strerror(rc));
        return EXIT_SETUP;
    }

    status = o.generate > 0 ? run_generate(pool, &o) : run_thumbnails(pool, &o);
    wp_pool_destroy(pool);
    return status;
}
