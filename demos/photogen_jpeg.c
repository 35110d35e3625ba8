/* SPDX-License-Identifier: MIT */
/* photogen_jpeg.c — see photogen_jpeg.h. */
#define _POSIX_C_SOURCE 200809L
#include "photogen_jpeg.h"

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <jerror.h>
#include <libexif/exif-data.h>

enum {
    EXIF_MARKER = JPEG_APP0 + 1,
    MAX_AL = 13,           /* the deepest successive approximation libjpeg accepts */
    DCT_COEFS = 64,
    BLOCK_SIDE = 8,
    MAX_EOB_RUN = 32767,   /* EOB14 with 14 extra bits */
    AC_SYMBOLS = 15        /* EOB0 .. EOB14, 4-bit codes */
};

/* ------------------------------------------------ libjpeg, errors caught */

typedef struct catcher {
    struct jpeg_error_mgr mgr; /* first: a jpeg_error_mgr * converts back */
    jmp_buf jump;
    char text[JMSG_LENGTH_MAX];
} catcher;

static void on_error(j_common_ptr cinfo)
{
    catcher *c = (catcher *)(void *)cinfo->err;
    cinfo->err->format_message(cinfo, c->text);
    longjmp(c->jump, 1);
}

/* Run body(ctx), catching libjpeg's fatal errors: false if one happened.
   The only function that calls setjmp; nothing of its own lives across it. */
static bool catching(catcher *c, void (*body)(void *), void *ctx)
{
    if (setjmp(c->jump) != 0)
        return false;
    body(ctx);
    return true;
}

static void set_error(char *err, size_t len, const char *what, const char *path, const char *why)
{
    snprintf(err, len, "%s %s: %s", what, path, why);
}

/* -------------------------------------------------------------- writing */

typedef struct writer {
    catcher err;
    struct jpeg_compress_struct c;
    FILE *out;
    unsigned char *row;
    const jpeg_spec *spec;
    paint_fn paint;
    void *ctx;
} writer;

static void write_exif_orientation(j_compress_ptr c, int orientation)
{
    ExifData *ed = exif_data_new();
    ExifEntry *e = exif_entry_new();
    if (ed == NULL || e == NULL)
        ERREXIT(c, JERR_OUT_OF_MEMORY);
    exif_data_set_byte_order(ed, EXIF_BYTE_ORDER_INTEL);
    exif_content_add_entry(ed->ifd[EXIF_IFD_0], e);
    exif_entry_initialize(e, EXIF_TAG_ORIENTATION);
    exif_set_short(e->data, EXIF_BYTE_ORDER_INTEL, (ExifShort)orientation);
    exif_entry_unref(e);
    unsigned char *block = NULL;
    unsigned int len = 0;
    exif_data_save_data(ed, &block, &len); /* starts with "Exif\0\0" */
    exif_data_unref(ed);
    if (block == NULL)
        ERREXIT(c, JERR_OUT_OF_MEMORY);
    jpeg_write_marker(c, EXIF_MARKER, block, len);
    free(block);
}

static void write_body(void *ctx)
{
    writer *w = ctx;
    const jpeg_spec *s = w->spec;
    w->c.image_width = s->width;
    w->c.image_height = s->height;
    w->c.input_components = (int)s->channels;
    w->c.in_color_space = s->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&w->c);
    jpeg_set_quality(&w->c, s->quality, TRUE);
    if (s->progressive)
        jpeg_simple_progression(&w->c);
    jpeg_stdio_dest(&w->c, w->out);
    jpeg_start_compress(&w->c, TRUE);
    if (s->orientation > 0)
        write_exif_orientation(&w->c, s->orientation);
    for (unsigned y = 0; y < s->height; y++) {
        w->paint(w->ctx, y, w->row);
        jpeg_write_scanlines(&w->c, &w->row, 1);
    }
    jpeg_finish_compress(&w->c);
}

int pg_write_jpeg(const char *path, const jpeg_spec *spec, paint_fn paint, void *ctx,
                  char *err, size_t err_len)
{
    size_t n = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(n);
    writer w = { .spec = spec, .paint = paint, .ctx = ctx };
    w.row = malloc((size_t)spec->width * spec->channels);
    if (tmp == NULL || w.row == NULL) {
        free(tmp);
        free(w.row);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    snprintf(tmp, n, "%s.tmp", path);
    int rc = -1;
    w.out = fopen(tmp, "wb");
    if (w.out == NULL) {
        set_error(err, err_len, "cannot create", tmp, strerror(errno));
    } else {
        w.c.err = jpeg_std_error(&w.err.mgr);
        w.err.mgr.error_exit = on_error;
        jpeg_create_compress(&w.c);
        bool ok = catching(&w.err, write_body, &w);
        jpeg_destroy_compress(&w.c);
        if (!ok)
            set_error(err, err_len, "libjpeg:", tmp, w.err.text);
        else if (fclose(w.out) != 0 || rename(tmp, path) != 0)
            set_error(err, err_len, "cannot write", path, strerror(errno));
        else
            rc = 0;
        if (!ok)
            fclose(w.out);
        if (rc != 0)
            remove(tmp);
    }
    free(tmp);
    free(w.row);
    return rc;
}

/* -------------------------------------------------------------- reading */

typedef struct reader {
    catcher err;
    struct jpeg_decompress_struct d;
    FILE *in;
    decoded *out;
} reader;

static void read_body(void *ctx)
{
    reader *r = ctx;
    jpeg_stdio_src(&r->d, r->in);
    jpeg_read_header(&r->d, TRUE);
    r->d.out_color_space = r->d.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&r->d);
    decoded *o = r->out;
    o->width = r->d.output_width;
    o->height = r->d.output_height;
    o->channels = (unsigned)r->d.output_components;
    size_t stride = (size_t)o->width * o->channels;
    o->pixels = malloc(stride * o->height);
    if (o->pixels == NULL)
        ERREXIT(&r->d, JERR_OUT_OF_MEMORY);
    while (r->d.output_scanline < r->d.output_height) {
        JSAMPROW row = o->pixels + stride * r->d.output_scanline;
        jpeg_read_scanlines(&r->d, &row, 1);
    }
    jpeg_finish_decompress(&r->d);
}

/* The EXIF orientation tag, read by libexif straight from the file. */
static int orientation_tag(const char *path)
{
    ExifData *ed = exif_data_new_from_file(path);
    if (ed == NULL)
        return 0;
    ExifEntry *e = exif_data_get_entry(ed, EXIF_TAG_ORIENTATION);
    int o = e != NULL && e->format == EXIF_FORMAT_SHORT && e->size >= 2
        ? exif_get_short(e->data, exif_data_get_byte_order(ed)) : 0;
    exif_data_unref(ed);
    return o;
}

int pg_read_jpeg(const char *path, decoded *out, char *err, size_t err_len)
{
    reader r = { .out = out };
    *out = (decoded){ .orientation = orientation_tag(path) };
    r.in = fopen(path, "rb");
    if (r.in == NULL) {
        set_error(err, err_len, "cannot open", path, strerror(errno));
        return -1;
    }
    r.d.err = jpeg_std_error(&r.err.mgr);
    r.err.mgr.error_exit = on_error;
    jpeg_create_decompress(&r.d);
    bool ok = catching(&r.err, read_body, &r);
    jpeg_destroy_decompress(&r.d);
    fclose(r.in);
    if (!ok) {
        set_error(err, err_len, "libjpeg:", path, r.err.text);
        free(out->pixels);
        out->pixels = NULL;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------- JPEG bytes, by hand */

typedef struct bytes {
    unsigned char *v;
    size_t n, cap;
    bool failed;
    uint32_t bits;  /* entropy-coded bits not yet written, high first */
    unsigned nbits;
} bytes;

static void put(bytes *b, unsigned char c)
{
    if (b->n == b->cap && !b->failed) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        unsigned char *v = realloc(b->v, cap);
        if (v == NULL)
            b->failed = true;
        else
            b->v = v, b->cap = cap;
    }
    if (!b->failed)
        b->v[b->n++] = c;
}

static void put16(bytes *b, unsigned v)
{
    put(b, (unsigned char)(v >> 8));
    put(b, (unsigned char)v);
}

/* A marker segment: FF, code, length (counting itself), payload. */
static void segment(bytes *b, unsigned char code, const unsigned char *payload, size_t len)
{
    put(b, 0xFF);
    put(b, code);
    put16(b, (unsigned)len + 2);
    for (size_t i = 0; i < len; i++)
        put(b, payload[i]);
}

/* Entropy-coded data: an 0xFF byte is followed by a stuffed 0x00. */
static void put_bits(bytes *b, uint32_t value, unsigned n)
{
    for (unsigned i = n; i-- > 0;) {
        b->bits = (b->bits << 1) | ((value >> i) & 1u);
        if (++b->nbits == 8) {
            put(b, (unsigned char)b->bits);
            if ((b->bits & 0xFF) == 0xFF)
                put(b, 0x00);
            b->bits = b->nbits = 0;
        }
    }
}

static void flush_bits(bytes *b) /* pad with ones, as the standard says */
{
    while (b->nbits != 0)
        put_bits(b, 1, 1);
}

/* SOI, a quantisation table, a progressive frame of n_comp components (all
   sampled 1x1), and the two Huffman tables every scan below uses: DC with
   one 1-bit code (difference 0), AC with the 15 end-of-band-run codes. */
static void start_progressive(bytes *b, unsigned width, unsigned height, unsigned n_comp)
{
    unsigned char dqt[1 + DCT_COEFS], sof[6 + 3 * 3], dht[1 + 16 + 1 + 1 + 16 + AC_SYMBOLS];
    put(b, 0xFF);
    put(b, 0xD8);
    memset(dqt, 1, sizeof dqt);
    dqt[0] = 0; /* 8-bit table 0 */
    segment(b, 0xDB, dqt, sizeof dqt);
    sof[0] = 8;
    sof[1] = (unsigned char)(height >> 8), sof[2] = (unsigned char)height;
    sof[3] = (unsigned char)(width >> 8), sof[4] = (unsigned char)width;
    sof[5] = (unsigned char)n_comp;
    for (unsigned i = 0; i < n_comp; i++) {
        sof[6 + 3 * i] = (unsigned char)(i + 1); /* component id */
        sof[7 + 3 * i] = 0x11;                   /* 1x1 sampling */
        sof[8 + 3 * i] = 0;                      /* table 0 */
    }
    segment(b, 0xC2, sof, 6 + 3 * n_comp);
    memset(dht, 0, sizeof dht);
    dht[0] = 0x00;                       /* DC table 0 */
    dht[1] = 1;                          /* one code of length 1 ... */
    dht[17] = 0;                         /* ... for category 0 */
    dht[18] = 0x10;                      /* AC table 0 */
    dht[18 + 4] = AC_SYMBOLS;            /* 15 codes of length 4 ... */
    for (unsigned i = 0; i < AC_SYMBOLS; i++)
        dht[35 + i] = (unsigned char)(i << 4); /* ... EOB0 .. EOB14 */
    segment(b, 0xC4, dht, sizeof dht);
}

static void start_scan(bytes *b, unsigned ss, unsigned se, unsigned ah, unsigned al)
{
    unsigned char sos[6] = { 1, 1, 0x00, (unsigned char)ss, (unsigned char)se,
                             (unsigned char)(ah << 4 | al) };
    segment(b, 0xDA, sos, sizeof sos);
}

/* A band left empty in every block: runs of end-of-band. */
static void empty_band(bytes *b, uint64_t blocks)
{
    while (blocks > 0) {
        unsigned run = blocks > MAX_EOB_RUN ? MAX_EOB_RUN : (unsigned)blocks, r = 0;
        while ((run >> (r + 1)) != 0)
            r++;
        put_bits(b, r, 4); /* symbol EOBr has code r */
        put_bits(b, run - (1u << r), r);
        blocks -= run;
    }
    flush_bits(b);
}

static int save(const char *path, bytes *b, char *err, size_t err_len)
{
    put(b, 0xFF);
    put(b, 0xD9); /* EOI */
    FILE *f = b->failed ? NULL : fopen(path, "wb");
    int rc = -1;
    if (b->failed)
        snprintf(err, err_len, "out of memory");
    else if (f == NULL)
        set_error(err, err_len, "cannot create", path, strerror(errno));
    else if (fwrite(b->v, 1, b->n, f) != b->n || fclose(f) != 0)
        set_error(err, err_len, "cannot write", path, strerror(errno));
    else
        rc = 0;
    if (f != NULL && rc != 0)
        fclose(f);
    free(b->v);
    return rc;
}

/* Three full-resolution components: a decoder that believes the header
   needs width x height x 3 coefficients of 2 bytes before the first scan,
   which then has no data. */
int pg_write_bomb(const char *path, unsigned width, unsigned height, char *err, size_t err_len)
{
    bytes b = { 0 };
    start_progressive(&b, width, height, 3);
    start_scan(&b, 0, 0, 0, 0); /* a header ends at the first scan */
    return save(path, &b, err, err_len);
}

/* DC first; then each AC coefficient on its own at the coarsest bit, then
   refined one bit at a time: 1 + 63 * 14 scans, every one of them valid. */
int pg_write_slow(const char *path, unsigned side, char *err, size_t err_len)
{
    bytes b = { 0 };
    uint64_t per_side = (side + BLOCK_SIDE - 1) / BLOCK_SIDE, blocks = per_side * per_side;
    start_progressive(&b, side, side, 1);
    start_scan(&b, 0, 0, 0, 0);
    for (uint64_t i = 0; i < blocks; i++)
        put_bits(&b, 0, 1); /* DC difference 0 */
    flush_bits(&b);
    for (unsigned al = MAX_AL + 1; al-- > 0;)
        for (unsigned k = 1; k < DCT_COEFS; k++) {
            start_scan(&b, k, k, al == MAX_AL ? 0 : al + 1, al);
            empty_band(&b, blocks);
        }
    return save(path, &b, err, err_len);
}
