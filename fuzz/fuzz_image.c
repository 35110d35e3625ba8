/* SPDX-License-Identifier: MIT */
/*
 * fuzz_image.c — libFuzzer target for the image description parser
 * (lib/image.c, wp__image_parse): the bytes an exec'd worker reads from
 * the pool's configuration memfd (docs/ARCHITECTURE.md, "Exec start").
 * An input is one misalignment byte, then the description's bytes.  They
 * are parsed twice, from a malloc'ed (aligned) buffer of exactly their
 * size and from one misaligned by 1..7 bytes, so a read past the end is
 * caught and alignment must change nothing.
 * The properties: the answer is 0, WP_EPROTO or WP_ENOMEM; it is 0
 * exactly when the rules of image.h, walked here on their own, accept the
 * bytes; then there is one object per record, sorted by lo and not
 * overlapping, each with its record's base, span, name (NUL-terminated,
 * no NUL inside) and build ID (at most IMAGE_BUILD_ID_MAX bytes).
 * wp__image_translate is never called: it would dlopen paths the fuzzer
 * chose.
 */
#include "config.h"

#include "fuzz.h"
#include "image.h"

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

/* The records of an accepted description, as the rules read them. */
typedef struct model {
    bool          ok;
    uint32_t      count;
    image_record *rec;       /* count records */
    const char  **name;      /* each record's name bytes, in the input */
} model;

static void model_free(model *m)
{
    free(m->rec);
    free(m->name);
}

/* image.h's layout, record by record; m->ok says whether it holds. */
static model walk(const uint8_t *b, size_t len)
{
    model m = { .ok = false };
    image_header h = { 0 };
    memcpy(&h, b, len < sizeof h ? len : sizeof h);
    bool header_ok = len >= sizeof h && h.magic == IMAGE_MAGIC && h.version == IMAGE_VERSION &&
                     h.reserved == 0 && h.bytes == len && h.count <= IMAGE_OBJECTS_MAX;
    if (!header_ok)
        return m;
    m.count = h.count;
    m.rec = calloc(h.count + 1u, sizeof *m.rec);
    m.name = calloc(h.count + 1u, sizeof *m.name);
    FUZZ_CHECK(m.rec != NULL && m.name != NULL);
    size_t at = sizeof h;
    for (uint32_t i = 0; i < h.count; i++) {
        image_record *r = &m.rec[i];
        if (len - at < sizeof *r)
            return m;
        memcpy(r, b + at, sizeof *r);
        size_t body = sizeof *r + (size_t)r->name_len + r->build_id_len;
        if (r->name_len > IMAGE_NAME_MAX || r->build_id_len > IMAGE_BUILD_ID_MAX ||
            r->hi <= r->lo || r->base > r->lo || len - at < ALIGN8(body))
            return m;
        m.name[i] = (const char *)b + at + sizeof *r;
        for (uint32_t k = 0; k < r->name_len; k++)
            if (m.name[i][k] == '\0')
                return m;
        at += ALIGN8(body);
    }
    if (at != len)
        return m;
    /* No two spans overlap (O(n^2): n is small in any input the fuzzer keeps). */
    for (uint32_t i = 0; i < h.count; i++)
        for (uint32_t j = i + 1; j < h.count; j++)
            if (m.rec[i].lo < m.rec[j].hi && m.rec[j].lo < m.rec[i].hi)
                return m;
    m.ok = true;
    return m;
}

/* An accepted image against the records it came from. */
static void check_image(const image *im, const model *m)
{
    FUZZ_CHECK(im->n == m->count);
    for (size_t i = 0; i < im->n; i++) {
        const image_object *o = &im->obj[i];
        FUZZ_CHECK(o->lo < o->hi && o->base <= o->lo);
        if (i > 0)
            FUZZ_CHECK(im->obj[i - 1].hi <= o->lo);
        FUZZ_CHECK(o->build_id_len <= IMAGE_BUILD_ID_MAX);
        FUZZ_CHECK(o->state == OBJ_UNKNOWN);
        uint32_t r = 0;
        while (r < m->count && m->rec[r].lo != o->lo)
            r++;
        FUZZ_CHECK(r < m->count); /* lo is unique: spans do not overlap */
        const image_record *rec = &m->rec[r];
        FUZZ_CHECK(o->base == rec->base && o->hi == rec->hi);
        FUZZ_CHECK(o->name != NULL && strlen(o->name) == rec->name_len);
        FUZZ_CHECK(memcmp(o->name, m->name[r], rec->name_len) == 0);
        FUZZ_CHECK(o->build_id_len == rec->build_id_len);
        FUZZ_CHECK(o->build_id_len == 0 ||
                   memcmp(o->build_id, m->name[r] + rec->name_len, o->build_id_len) == 0);
    }
}

static bool same_image(const image *a, const image *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const image_object *x = &a->obj[i], *y = &b->obj[i];
        if (x->base != y->base || x->lo != y->lo || x->hi != y->hi ||
            strcmp(x->name, y->name) != 0 || x->build_id_len != y->build_id_len ||
            memcmp(x->build_id, y->build_id, x->build_id_len) != 0)
            return false;
    }
    return true;
}

/* Parse n bytes placed `misalign` bytes into a block of exactly that size. */
static int parse_at(image *im, const uint8_t *src, size_t n, size_t misalign)
{
    uint8_t *block = malloc(misalign + n + (misalign + n == 0));
    FUZZ_CHECK(block != NULL);
    memcpy(block + misalign, src, n);
    int rc = wp__image_parse(im, block + misalign, n);
    free(block); /* the image holds copies, never pointers into the bytes */
    FUZZ_CHECK(rc == 0 || rc == WP_EPROTO || rc == WP_ENOMEM);
    if (rc != 0)
        FUZZ_CHECK(im->obj == NULL && im->names == NULL && im->n == 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = { data, size };
    size_t misalign = 1u + fuzz_byte(&in) % (IMAGE_FUZZ_MISALIGN - 1u);
    model m = walk(in.data, in.size);
    image a, b;
    int rc = parse_at(&a, in.data, in.size, 0);
    int rc_mis = parse_at(&b, in.data, in.size, misalign);
    if (rc != WP_ENOMEM && rc_mis != WP_ENOMEM) {
        FUZZ_CHECK(rc == rc_mis);
        FUZZ_CHECK((rc == 0) == m.ok);
    }
    if (rc == 0)
        check_image(&a, &m);
    if (rc == 0 && rc_mis == 0)
        FUZZ_CHECK(same_image(&a, &b));
    wp__image_free(&a);
    wp__image_free(&b);
    model_free(&m);
    return 0;
}
