/* SPDX-License-Identifier: MIT */
/*
 * image.h — where the program's code is, as one process sees it, so that
 * another image of the same program finds the same function
 * (docs/ARCHITECTURE.md, "Exec start").
 *
 * A forked worker shares its parent's addresses, so a function pointer
 * means the same thing on both sides of a pipe.  An exec'd worker is a
 * fresh image: every object (the executable, each shared library) may be
 * loaded at another address (ASLR, PIE).  The pool therefore describes its
 * own objects once — for each, its name as the loader knows it, where it
 * was loaded, the span of its segments and its GNU build ID — and the
 * worker turns a pointer of the pool's into its own: find the object that
 * holds it, find the object of that name in this process (the loader's own
 * table, dl_iterate_phdr), check that its build ID is the same (so a
 * library upgraded on disk meanwhile is refused, not run at a wrong
 * offset), and add the offset.  An object the pool loaded with dlopen and
 * the worker has not is loaded by its path, on first use.
 *
 * The description travels as bytes (wp__image_describe writes them,
 * wp__image_parse reads them back); the parser does no I/O and trusts
 * nothing, so it is fuzzed directly (fuzz/fuzz_image.c).
 */
#ifndef WP_IMAGE_H
#define WP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define IMAGE_MAGIC        0x4d495057u /* "WPIM", little-endian */
#define IMAGE_VERSION      1u
#define IMAGE_OBJECTS_MAX  4096u  /* objects a description may hold */
#define IMAGE_NAME_MAX     4096u  /* bytes of an object's name (PATH_MAX) */
#define IMAGE_BUILD_ID_MAX 64u    /* bytes of a build ID (SHA-1 ones are 20) */

/* The bytes: one header, then per object one image_record followed by its
   name (no NUL) and its build ID, each record 8-byte aligned.  Host byte
   order: both sides are the same program. */
typedef struct image_header {
    uint32_t magic, version;
    uint32_t count;     /* objects */
    uint32_t reserved;  /* zero */
    uint64_t bytes;     /* the whole description, header included */
} image_header;

typedef struct image_record {
    uint64_t base;          /* the loader's load bias (dlpi_addr) */
    uint64_t lo, hi;        /* [lo, hi): the span of its loaded segments */
    uint32_t name_len, build_id_len;
} image_record;

/* What a looked-up object is in this process. */
enum { OBJ_UNKNOWN = 0, OBJ_FOUND, OBJ_MISSING, OBJ_CHANGED };

typedef struct image_object {
    uint64_t             base, lo, hi;   /* in the process that described it */
    const char          *name;           /* NUL-terminated copy */
    const unsigned char *build_id;
    uint32_t             build_id_len;
    int                  state;          /* OBJ_*: looked up here yet, and found? */
    uintptr_t            here;           /* its load bias in this process, once found */
} image_object;

typedef struct image {
    image_object *obj;
    size_t        n;
    char         *names;    /* the names and build IDs the objects point into */
    size_t        last;     /* the object the last lookup hit: lookups repeat */
} image;

/* Describe this process's loaded objects: *out (malloc'd) and its length.
   0, WP_ENOMEM, or WP_E2BIG past IMAGE_OBJECTS_MAX.  O(objects). */
int wp__image_describe(void **out, size_t *len) WP_INTERNAL;

/* Read a description back: 0, or WP_EPROTO for anything malformed (a
   bad magic, version or length, a record past the end, a name with a NUL
   or too long, objects that overlap), WP_ENOMEM.  O(bytes + objects log
   objects).  No I/O: the fuzzer calls it on any bytes. */
int wp__image_parse(image *im, const void *bytes, size_t len) WP_INTERNAL;
void wp__image_free(image *im) WP_INTERNAL;

/* The address in this process of what is at `addr` in the described one:
   code (in an executable segment of the same object here) if `code`, else
   anything loaded (static data).  NULL if no object holds addr, the
   object is not here and cannot be loaded, or its build ID differs.
   O(log objects), and one dl_iterate_phdr per object the first time.
   *why, if not NULL, says in words why not. */
void *wp__image_translate(image *im, uint64_t addr, bool code, const char **why) WP_INTERNAL;

/* Is addr inside an object loaded in this process — in an executable
   segment if `code`, in any loaded one otherwise?  O(objects). */
bool wp__image_holds(const void *addr, bool code) WP_INTERNAL;

#endif
