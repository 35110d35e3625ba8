/* SPDX-License-Identifier: MIT */
/*
 * image.c — describing this process's loaded objects and finding, in
 * another image of the same program, where a described address is
 * (image.h says why; docs/ARCHITECTURE.md, "Exec start").
 *
 * Everything goes through the loader's own table (dl_iterate_phdr), which
 * also covers a statically linked program (one object) and needs no
 * symbols: a static function is found as well as an exported one.
 */
#include "config.h"

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

/* Only in the shared library (libtool compiles its objects with PIC
   defined): a statically linked program gets no dlopen, and no link
   warning, for this; there an object the worker lacks is just missing.
   Weak, so that a C library keeping dlopen in libdl leaves it NULL. */
#ifdef PIC
#pragma weak dlopen
#define IMAGE_CAN_LOAD 1
#else
#define IMAGE_CAN_LOAD 0
#endif

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define NT_GNU_BUILD_ID_TYPE 3 /* elf.h's NT_GNU_BUILD_ID */
#define GNU_NOTE_NAME "GNU"

/* ------------------------------------------------------------- build IDs */

/* The GNU build ID in one PT_NOTE segment, or NULL. */
static const unsigned char *note_build_id(const char *p, size_t size, uint32_t *len)
{
    size_t at = 0;
    while (size - at >= sizeof(ElfW(Nhdr))) {
        ElfW(Nhdr) nh;
        memcpy(&nh, p + at, sizeof nh);
        size_t name_at = at + sizeof nh;
        size_t desc_at = name_at + ((nh.n_namesz + 3u) & ~3u);
        size_t next = desc_at + ((nh.n_descsz + 3u) & ~3u);
        if (next > size || next <= at)
            return NULL;
        if (nh.n_type == NT_GNU_BUILD_ID_TYPE && nh.n_namesz == sizeof GNU_NOTE_NAME &&
            memcmp(p + name_at, GNU_NOTE_NAME, sizeof GNU_NOTE_NAME) == 0 &&
            nh.n_descsz <= IMAGE_BUILD_ID_MAX) {
            *len = nh.n_descsz;
            return (const unsigned char *)p + desc_at;
        }
        at = next;
    }
    return NULL;
}

/* One loaded object: its span, and its build ID (NULL, 0 if none). */
typedef struct obj_view {
    uintptr_t            lo, hi;
    const unsigned char *build_id;
    uint32_t             build_id_len;
} obj_view;

static obj_view view_of(const struct dl_phdr_info *info)
{
    obj_view v = { .lo = UINTPTR_MAX, .hi = 0 };
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type == PT_LOAD) {
            v.lo = start < v.lo ? start : v.lo;
            v.hi = start + ph->p_memsz > v.hi ? start + ph->p_memsz : v.hi;
        } else if (ph->p_type == PT_NOTE && v.build_id == NULL) {
            v.build_id = note_build_id((const char *)start, ph->p_memsz, &v.build_id_len);
        }
    }
    return v;
}

/* ------------------------------------------------------------- describing */

typedef struct describe_ctx {
    char  *buf;
    size_t len, cap;
    uint32_t count;
    int    rc;
} describe_ctx;

static int describe_one(struct dl_phdr_info *info, size_t size, void *data)
{
    describe_ctx *d = data;
    WP_UNUSED(size);
    obj_view v = view_of(info);
    const char *name = info->dlpi_name != NULL ? info->dlpi_name : "";
    size_t name_len = strnlen(name, IMAGE_NAME_MAX + 1);
    if (v.hi <= v.lo || name_len > IMAGE_NAME_MAX)
        return 0; /* nothing loaded, or a name no worker could look up */
    if (d->count == IMAGE_OBJECTS_MAX) {
        d->rc = WP_E2BIG;
        return 1;
    }
    size_t need = ALIGN8(sizeof(image_record) + name_len + v.build_id_len);
    if (d->len + need > d->cap) {
        size_t cap = d->cap * 2 > d->len + need ? d->cap * 2 : d->len + need;
        char *b = realloc(d->buf, cap);
        if (b == NULL) {
            d->rc = WP_ENOMEM;
            return 1;
        }
        d->buf = b;
        d->cap = cap;
    }
    image_record r = { .base = (uint64_t)info->dlpi_addr, .lo = v.lo, .hi = v.hi,
                       .name_len = (uint32_t)name_len, .build_id_len = v.build_id_len };
    char *at = d->buf + d->len;
    memset(at, 0, need);
    memcpy(at, &r, sizeof r);
    memcpy(at + sizeof r, name, name_len);
    if (v.build_id_len > 0)
        memcpy(at + sizeof r + name_len, v.build_id, v.build_id_len);
    d->len += need;
    d->count++;
    return 0;
}

int wp__image_describe(void **out, size_t *len)
{
    describe_ctx d = { .cap = sizeof(image_header) * 64 };
    d.buf = malloc(d.cap);
    if (d.buf == NULL)
        return WP_ENOMEM;
    d.len = sizeof(image_header);
    dl_iterate_phdr(describe_one, &d);
    if (d.rc < 0) {
        free(d.buf);
        return d.rc;
    }
    image_header h = { .magic = IMAGE_MAGIC, .version = IMAGE_VERSION, .count = d.count,
                       .bytes = d.len };
    memcpy(d.buf, &h, sizeof h);
    *out = d.buf;
    *len = d.len;
    return 0;
}

/* ---------------------------------------------------------------- parsing */

static int by_lo(const void *a, const void *b)
{
    const image_object *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Record i at *at: checked against the end, its name and build ID copied
   into *names.  0 or WP_EPROTO. */
static int parse_record(const char *bytes, size_t len, size_t *at, image_object *o, char **names)
{
    image_record r;
    if (len - *at < sizeof r)
        return WP_EPROTO;
    memcpy(&r, bytes + *at, sizeof r);
    if (r.name_len > IMAGE_NAME_MAX || r.build_id_len > IMAGE_BUILD_ID_MAX || r.hi <= r.lo ||
        r.base > r.lo)
        return WP_EPROTO;
    size_t body = sizeof r + r.name_len + r.build_id_len;
    if (len - *at < ALIGN8(body))
        return WP_EPROTO;
    const char *name = bytes + *at + sizeof r;
    if (memchr(name, '\0', r.name_len) != NULL)
        return WP_EPROTO;
    *o = (image_object){ .base = r.base, .lo = r.lo, .hi = r.hi, .name = *names,
                         .build_id_len = r.build_id_len };
    memcpy(*names, name, r.name_len);
    (*names)[r.name_len] = '\0';
    *names += r.name_len + 1;
    o->build_id = (const unsigned char *)*names;
    memcpy(*names, name + r.name_len, r.build_id_len);
    *names += r.build_id_len;
    *at += ALIGN8(body);
    return 0;
}

int wp__image_parse(image *im, const void *bytes, size_t len)
{
    *im = (image){ 0 };
    image_header h;
    if (len < sizeof h)
        return WP_EPROTO;
    memcpy(&h, bytes, sizeof h);
    if (h.magic != IMAGE_MAGIC || h.version != IMAGE_VERSION || h.reserved != 0 ||
        h.bytes != len || h.count > IMAGE_OBJECTS_MAX)
        return WP_EPROTO;
    /* Names and build IDs together are shorter than the bytes they came in. */
    im->obj = calloc(h.count ? h.count : 1, sizeof *im->obj);
    im->names = malloc(len);
    if (im->obj == NULL || im->names == NULL) {
        wp__image_free(im);
        return WP_ENOMEM;
    }
    size_t at = sizeof h;
    char *names = im->names;
    for (uint32_t i = 0; i < h.count; i++)
        if (parse_record(bytes, len, &at, &im->obj[i], &names) < 0) {
            wp__image_free(im);
            return WP_EPROTO;
        }
    im->n = h.count;
    qsort(im->obj, im->n, sizeof *im->obj, by_lo);
    for (size_t i = 1; i < im->n; i++)
        if (im->obj[i].lo < im->obj[i - 1].hi) { /* overlapping objects: not one process */
            wp__image_free(im);
            return WP_EPROTO;
        }
    if (at != len) {
        wp__image_free(im);
        return WP_EPROTO;
    }
    return 0;
}

void wp__image_free(image *im)
{
    free(im->obj);
    free(im->names);
    *im = (image){ 0 };
}

/* ------------------------------------------------------------ translating */

typedef struct find_ctx {
    const image_object *want;
    int                 state;
    uintptr_t           base;
} find_ctx;

static int find_one(struct dl_phdr_info *info, size_t size, void *data)
{
    find_ctx *f = data;
    WP_UNUSED(size);
    if (strcmp(info->dlpi_name != NULL ? info->dlpi_name : "", f->want->name) != 0)
        return 0;
    obj_view v = view_of(info);
    if (v.hi <= v.lo)
        return 0;
    bool same = v.build_id_len == f->want->build_id_len &&
                (v.build_id_len == 0 || memcmp(v.build_id, f->want->build_id, v.build_id_len) == 0);
    f->state = same && v.hi - v.lo == f->want->hi - f->want->lo ? OBJ_FOUND : OBJ_CHANGED;
    f->base = (uintptr_t)info->dlpi_addr;
    return 1;
}

/* Look o up here once; an object missing here that has a path is loaded. */
static void resolve(image_object *o)
{
    find_ctx f = { .want = o, .state = OBJ_MISSING };
    dl_iterate_phdr(find_one, &f);
#if IMAGE_CAN_LOAD
    if (f.state == OBJ_MISSING && o->name[0] == '/' && dlopen != NULL &&
        dlopen(o->name, RTLD_NOW | RTLD_LOCAL) != NULL) {
        f.state = OBJ_MISSING; /* the handle stays open: the worker keeps the object */
        dl_iterate_phdr(find_one, &f);
    }
#endif
    o->state = f.state;
    o->here = f.base;
}

/* The object holding addr, or NULL.  O(log n). */
static image_object *holder(image *im, uint64_t addr)
{
    if (im->last < im->n && addr - im->obj[im->last].lo < im->obj[im->last].hi - im->obj[im->last].lo)
        return &im->obj[im->last];
    size_t lo = 0, hi = im->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr < im->obj[mid].lo)
            hi = mid;
        else if (addr >= im->obj[mid].hi)
            lo = mid + 1;
        else {
            im->last = mid;
            return &im->obj[mid];
        }
    }
    return NULL;
}

void *wp__image_translate(image *im, uint64_t addr, bool code, const char **why)
{
    static const char *const reasons[] = {
        [OBJ_MISSING] = "not in the worker's image: its object is not loaded there and cannot be",
        [OBJ_CHANGED] = "not in the worker's image: its object there is not the pool's (another "
                        "build on disk?)",
    };
    const char *no = "not in the worker's image: in no object the pool had loaded when it was "
                     "created";
    image_object *o = holder(im, addr);
    if (o != NULL && o->state == OBJ_UNKNOWN)
        resolve(o);
    if (o != NULL && o->state != OBJ_FOUND)
        no = reasons[o->state];
    if (o != NULL && o->state == OBJ_FOUND) {
        void *here = (void *)(uintptr_t)(addr - o->base + o->here);
        if (wp__image_holds(here, code))
            return here;
        no = code ? "not code in the worker's image" : "not loaded in the worker's image";
    }
    if (why != NULL)
        *why = no;
    return NULL;
}

/* ----------------------------------------------------------------- holds */

typedef struct holds_ctx {
    uintptr_t addr;
    bool      code;
} holds_ctx;

static int holds_one(struct dl_phdr_info *info, size_t size, void *data)
{
    const holds_ctx *h = data;
    WP_UNUSED(size);
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (h->code && !(ph->p_flags & PF_X)))
            continue;
        uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (h->addr - start < (uintptr_t)ph->p_memsz) /* wraps when below start */
            return 1;
    }
    return 0;
}

bool wp__image_holds(const void *addr, bool code)
{
    holds_ctx h = { .addr = (uintptr_t)addr, .code = code };
    return addr != NULL && dl_iterate_phdr(holds_one, &h) != 0;
}
