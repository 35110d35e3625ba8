/* SPDX-License-Identifier: MIT */
/*
 * thumbs_task.c — see thumbs_task.h.  Decode once, at the smallest DCT
 * scale that still covers the largest box; shrink to that box; turn the
 * pixels upright as the EXIF orientation says; then write each size and
 * shrink it to the next.  Every file is written to OUT.tmp and renamed into
 * place, so a reader never sees half a JPEG.
 *
 * Untrusted input: libjpeg's fatal errors longjmp back here (never exit()),
 * warnings that mean pixels were made up (a truncated or corrupt stream) are
 * fatal too, and the header's dimensions are checked before any pixel is
 * decoded.  What still goes wrong — a decoder that loops, a worker that runs
 * out of memory — the pool's deadline and memory limit contain.
 */
#define _POSIX_C_SOURCE 200809L
#include "thumbs_task.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <jerror.h>
#include <libexif/exif-data.h>

#include "thumbs_image.h"

const unsigned thumbs_sizes[THUMBS_N_SIZES] = { 1024, 512, 256, 128, 64, 32 };

enum {
    DCT_DENOM = 8,          /* libjpeg scales by M/8 while decoding */
    EXIF_MARKER = JPEG_APP0 + 1,
    EXIF_HEADER_LEN = 6,    /* "Exif\0\0" */
    MAX_MARKER = 0xffff,    /* a marker's whole payload */
    DECODE_ROWS = 16,       /* rows per jpeg_read_scanlines call (max_v_samp * DCT size) */
    ORIENTATION_UPRIGHT = 1,
    MESSAGE_MAX = 512
};

/* ------------------------------------------------------ argument bytes */

void *thumbs_pack(const thumbs_job *job, const char *src, const char *outdir, const char *rel,
                  size_t *len)
{
    const char *s[3] = { src, outdir, rel };
    size_t n[3], total = sizeof *job;
    for (int i = 0; i < 3; i++)
        total += n[i] = strlen(s[i]) + 1;
    char *arg = malloc(total), *p = arg;
    if (arg == NULL)
        return NULL;
    memcpy(p, job, sizeof *job);
    p += sizeof *job;
    for (int i = 0; i < 3; i++) {
        memcpy(p, s[i], n[i]);
        p += n[i];
    }
    *len = total;
    return arg;
}

/* The bytes crossed a process boundary: check the layout, trust nothing. */
static bool unpack(const void *arg, size_t len, thumbs_job *job, const char *s[3])
{
    if (arg == NULL || len < sizeof *job)
        return false;
    memcpy(job, arg, sizeof *job);
    const char *p = (const char *)arg + sizeof *job, *end = (const char *)arg + len;
    for (int i = 0; i < 3; i++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (nul == NULL)
            return false;
        s[i] = p;
        p = nul + 1;
    }
    return p == end && job->first_size < THUMBS_N_SIZES && job->n_sizes >= 1
        && job->n_sizes <= THUMBS_N_SIZES - job->first_size;
}

char *thumbs_out_path(const char *outdir, unsigned box, const char *rel, const char *suffix)
{
    size_t n = strlen(outdir) + strlen(rel) + strlen(suffix) + 32;
    char *path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "%s/%ux%u/%s%s", outdir, box, box, rel, suffix);
    return path;
}

/* ----------------------------------------------------------- task state */

/*
 * Everything a task may hold when libjpeg jumps out of it, so that one
 * function releases it on every path.  It lives in thumbs_task()'s frame,
 * not in the frame that calls setjmp, so it is still valid after a jump.
 */
typedef struct task {
    struct jpeg_error_mgr jerr;
    jmp_buf jump;
    struct jpeg_decompress_struct dec;
    struct jpeg_compress_struct enc;
    bool dec_created, enc_created;
    FILE *in, *out;
    char *tmp_path, *out_path;
    unsigned char *rows;     /* DECODE_ROWS decoded rows */
    shrinker sh;
    image cur, next;         /* the size being written, the next one */
    const char *src, *outdir, *rel;
    thumbs_job job;
    unsigned upright_w, upright_h; /* the image's own size, seen upright */
    thumbs_done done;
    int code; /* why it failed (enum thumbs_failure), with message */
    char message[MESSAGE_MAX];
} task;

static void task_release(task *t)
{
    if (t->dec_created)
        jpeg_destroy_decompress(&t->dec);
    if (t->enc_created)
        jpeg_destroy_compress(&t->enc);
    t->dec_created = t->enc_created = false;
    if (t->in != NULL)
        fclose(t->in);
    if (t->out != NULL)
        fclose(t->out);
    t->in = t->out = NULL;
    if (t->tmp_path != NULL)
        unlink(t->tmp_path);
    free(t->tmp_path);
    free(t->out_path);
    t->tmp_path = t->out_path = NULL;
    free(t->rows);
    t->rows = NULL;
    shrinker_free(&t->sh);
    image_free(&t->cur);
    image_free(&t->next);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(task *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->message, sizeof t->message, fmt, ap);
    va_end(ap);
    return t->code = code;
}

/* ------------------------------------------------ libjpeg errors, caught */

/* libjpeg reports a fatal error by calling error_exit, which must not
   return: jumping back into the task is the documented way to survive it. */
static void on_jpeg_error(j_common_ptr cinfo)
{
    task *t = (task *)(void *)cinfo->err; /* jerr is task's first member */
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    fail(t, cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? TF_NOMEM : TF_JPEG, "libjpeg: %s", text);
    longjmp(t->jump, 1);
}

/* Odd metadata is no reason to give up on the pixels. */
static bool harmless_warning(int code)
{
    return code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM
        || code == JWRN_BOGUS_ICC;
}

/* Other warnings are fatal: for a truncated or corrupt stream libjpeg warns
   and fills the rest with grey, a plausible-looking but wrong thumbnail.
   Trace messages (level >= 0) are dropped. */
static void on_jpeg_message(j_common_ptr cinfo, int level)
{
    if (level < 0 && !harmless_warning(cinfo->err->msg_code))
        on_jpeg_error(cinfo);
}

/* ------------------------------------------------------------- reading */

/* Tag 274 of IFD0, if the APP1 "Exif" block has it and it makes sense. */
static int exif_orientation(struct jpeg_decompress_struct *dec)
{
    for (jpeg_saved_marker_ptr m = dec->marker_list; m != NULL; m = m->next) {
        /* APP1 also carries XMP; only "Exif\0\0" blocks are EXIF. */
        if (m->marker != EXIF_MARKER || m->data_length < EXIF_HEADER_LEN
            || memcmp(m->data, "Exif\0\0", EXIF_HEADER_LEN) != 0)
            continue;
        ExifData *ed = exif_data_new_from_data(m->data, m->data_length);
        if (ed == NULL)
            continue;
        ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
        int o = 0;
        if (e != NULL && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->size >= 2)
            o = exif_get_short(e->data, exif_data_get_byte_order(ed));
        exif_data_unref(ed);
        if (o >= 1 && o <= 8)
            return o;
    }
    return ORIENTATION_UPRIGHT;
}

/* Grey stays grey; YCbCr and RGB come out as RGB.  CMYK and YCCK would need
   an ink model (and usually an ICC profile) to look right. */
static int choose_colour(task *t)
{
    switch (t->dec.jpeg_color_space) {
    case JCS_GRAYSCALE:
        t->dec.out_color_space = JCS_GRAYSCALE;
        return 0;
    case JCS_YCbCr:
    case JCS_RGB:
        t->dec.out_color_space = JCS_RGB;
        return 0;
    default:
        return fail(t, TF_COLOR, "unsupported JPEG colour space %d (CMYK?)",
                    (int)t->dec.jpeg_color_space);
    }
}

/* Let the decoder do most of the shrinking: an M/8 IDCT costs far less than
   decoding at full size.  The smallest M that still yields at least tw x th
   pixels, so what follows only ever shrinks. */
static void choose_dct_scale(struct jpeg_decompress_struct *dec, unsigned tw, unsigned th)
{
    dec->scale_denom = DCT_DENOM;
    for (unsigned m = 1; m <= DCT_DENOM; m++) {
        dec->scale_num = m;
        jpeg_calc_output_dimensions(dec);
        if (dec->output_width >= tw && dec->output_height >= th)
            return;
    }
}

static int open_input(task *t)
{
    t->in = fopen(t->src, "rb");
    if (t->in == NULL)
        return fail(t, TF_IO, "cannot open: %s", strerror(errno));
    jpeg_create_decompress(&t->dec);
    t->dec_created = true;
    jpeg_stdio_src(&t->dec, t->in);
    jpeg_save_markers(&t->dec, EXIF_MARKER, MAX_MARKER);
    jpeg_read_header(&t->dec, TRUE);
    uint64_t pixels = (uint64_t)t->dec.image_width * t->dec.image_height;
    if (t->job.max_pixels > 0 && pixels > t->job.max_pixels)
        return fail(t, TF_TOO_BIG, "%ux%u is %.1f megapixels, over the limit of %.1f",
                    t->dec.image_width, t->dec.image_height, (double)pixels / 1e6,
                    (double)t->job.max_pixels / 1e6);
    return choose_colour(t);
}

/* Decode into t->cur at the first box's size, upright. */
static int read_first_size(task *t)
{
    int rc = open_input(t);
    if (rc != 0)
        return rc;
    t->done.orientation = (uint32_t)exif_orientation(&t->dec);
    bool turned = t->done.orientation >= 5; /* 5..8 swap width and height */
    t->upright_w = turned ? t->dec.image_height : t->dec.image_width;
    t->upright_h = turned ? t->dec.image_width : t->dec.image_height;
    unsigned tw, th;
    fit_in_box(t->dec.image_width, t->dec.image_height, thumbs_sizes[t->job.first_size], &tw, &th);
    choose_dct_scale(&t->dec, tw, th);
    jpeg_start_decompress(&t->dec);

    size_t stride = (size_t)t->dec.output_width * (size_t)t->dec.output_components;
    JSAMPROW rows[DECODE_ROWS];
    t->rows = malloc(stride * DECODE_ROWS);
    if (t->rows == NULL || !image_alloc(&t->next, tw, th, (unsigned)t->dec.output_components)
        || !shrinker_init(&t->sh, t->dec.output_width, t->dec.output_height, &t->next))
        return fail(t, TF_NOMEM, "out of memory");
    for (int i = 0; i < DECODE_ROWS; i++)
        rows[i] = t->rows + stride * (size_t)i;
    while (t->dec.output_scanline < t->dec.output_height) {
        JDIMENSION got = jpeg_read_scanlines(&t->dec, rows, DECODE_ROWS);
        for (JDIMENSION i = 0; i < got; i++)
            shrinker_push(&t->sh, rows[i]);
    }
    jpeg_finish_decompress(&t->dec);
    jpeg_destroy_decompress(&t->dec);
    t->dec_created = false;
    fclose(t->in);
    t->in = NULL;
    shrinker_free(&t->sh);

    if (t->done.orientation == ORIENTATION_UPRIGHT) {
        t->cur = t->next;
        t->next = (image){ 0 };
    } else {
        if (!image_orient(&t->next, (int)t->done.orientation, &t->cur))
            return fail(t, TF_NOMEM, "out of memory");
        image_free(&t->next);
    }
    return 0;
}

/* ------------------------------------------------------------- writing */

static int write_jpeg(task *t, const image *im, unsigned box)
{
    t->out_path = thumbs_out_path(t->outdir, box, t->rel, "");
    t->tmp_path = thumbs_out_path(t->outdir, box, t->rel, ".tmp");
    if (t->out_path == NULL || t->tmp_path == NULL)
        return fail(t, TF_NOMEM, "out of memory");
    t->out = fopen(t->tmp_path, "wb");
    if (t->out == NULL)
        return fail(t, TF_IO, "cannot create %s: %s", t->tmp_path, strerror(errno));
    if (!t->enc_created) {
        jpeg_create_compress(&t->enc);
        t->enc_created = true;
    }
    jpeg_stdio_dest(&t->enc, t->out);
    t->enc.image_width = im->w;
    t->enc.image_height = im->h;
    t->enc.input_components = (int)im->channels;
    t->enc.in_color_space = im->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&t->enc);
    jpeg_set_quality(&t->enc, THUMBS_QUALITY, TRUE);
    t->enc.optimize_coding = TRUE; /* Huffman tables fitted to the image: smaller files */
    jpeg_start_compress(&t->enc, TRUE); /* JFIF only: no EXIF, so no orientation */
    while (t->enc.next_scanline < t->enc.image_height) {
        JSAMPROW row = image_row(im, t->enc.next_scanline);
        jpeg_write_scanlines(&t->enc, &row, 1);
    }
    jpeg_finish_compress(&t->enc);

    struct stat sb;
    int closed = fflush(t->out) != 0 || fstat(fileno(t->out), &sb) != 0;
    closed |= fclose(t->out) != 0;
    t->out = NULL;
    if (closed)
        return fail(t, TF_IO, "cannot write %s: %s", t->tmp_path, strerror(errno));
    if (rename(t->tmp_path, t->out_path) != 0)
        return fail(t, TF_IO, "cannot rename into %s: %s", t->out_path, strerror(errno));
    free(t->tmp_path);
    free(t->out_path);
    t->tmp_path = t->out_path = NULL;
    t->done.bytes += (uint64_t)sb.st_size;
    t->done.thumbnails++;
    return 0;
}

static int make_thumbnails(task *t)
{
    int rc = read_first_size(t);
    for (uint32_t i = 0; rc == 0 && i < t->job.n_sizes; i++) {
        unsigned box = thumbs_sizes[t->job.first_size + i];
        if (i > 0) {
            /* the size from the upright original, as if shrunk from it */
            fit_in_box(t->upright_w, t->upright_h, box, &t->next.w, &t->next.h);
            if (!image_shrink(&t->cur, &t->next))
                return fail(t, TF_NOMEM, "out of memory");
            image_free(&t->cur);
            t->cur = t->next;
            t->next = (image){ 0 };
        }
        rc = write_jpeg(t, &t->cur, box);
    }
    return rc;
}

/* The only function that calls setjmp; it keeps nothing of its own across
   the jump, so no local can be clobbered. */
static int run_catching_jpeg_errors(task *t)
{
    if (setjmp(t->jump) != 0)
        return t->code; /* on_jpeg_error wrote the message */
    return make_thumbnails(t);
}

int thumbs_task(const void *arg, size_t arg_len, wp_buf *result)
{
    task t;
    memset(&t, 0, sizeof t);
    const char *s[3];
    if (!unpack(arg, arg_len, &t.job, s))
        return wp_buf_fail(result, TF_BADARG, "malformed thumbnail task argument");
    t.src = s[0];
    t.outdir = s[1];
    t.rel = s[2];
    jpeg_std_error(&t.jerr);
    t.jerr.error_exit = on_jpeg_error;
    t.jerr.emit_message = on_jpeg_message;
    t.dec.err = &t.jerr;
    t.enc.err = &t.jerr;
    int rc = run_catching_jpeg_errors(&t);
    task_release(&t);
    if (rc != 0)
        return wp_buf_fail(result, rc, t.message);
    return wp_buf_append(result, &t.done, sizeof t.done);
}
