/* SPDX-License-Identifier: MIT */
/*
 * thumbnails — the workerpool demo: JPEG thumbnails of a whole photo tree,
 * made in worker processes.  `thumbnails [options] SRC_DIR [OUT_DIR]`.
 *
 * Why this job: thumbnailing is CPU-bound, embarrassingly parallel, and runs
 * a large C decoder on files nobody vouched for.  A damaged or hostile JPEG
 * can make a decoder fail, crash, hang or eat memory; in a worker process
 * that costs one task, which the pool reports, and the rest go on.
 *
 * What it shows of the library:
 *   - one task per image (or, with --per-size, per image and size) through
 *     wp_submit(); the argument is a few bytes (sizes and paths), the pixels
 *     never cross a pipe, and the result is a 16-byte struct;
 *   - wp_task_options.timeout_ms and wp_pool_options.worker_memory_limit:
 *     a decoder that loops fails as timed out, one that runs out of memory
 *     fails with libjpeg's message, and the worker is replaced;
 *   - a window of tasks in flight, settled in any order with wp_wait_any(),
 *     which also ticks the progress bar (a 100 ms timeout, never a sleep);
 *   - every failure named with its file: wp_future_error(), _message().
 *
 * With --mpi, under mpirun, the workers run on the other ranks of the job
 * (libworkerpool-mpi); this process drives them just the same.
 *
 * This file is the driver; the task (decode, shrink, orient, encode) is in
 * thumbs_task.c, the pixel work in thumbs_image.c, the tree in thumbs_walk.c,
 * the --mpi start in thumbs_mpi.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "cli.h"
#include "thumbs_mpi.h"
#include "thumbs_task.h"
#include "thumbs_walk.h"
#include "workerpool.h"

enum {
    DEFAULT_TIMEOUT_MS = 20000,   /* per task: a big photo takes well under a second */
    DEFAULT_MEMORY_MIB = 1024,    /* per worker (address space) */
    DEFAULT_MAX_MEGAPIXELS = 64,  /* larger headers fail before decoding */
    IN_FLIGHT_PER_WORKER = 4,     /* tasks submitted ahead, so no worker waits */
    TICK_MS = 100,                /* progress redraw while waiting */
    MAX_LISTED_FAILURES = 20,
    EXIT_SOME_FAILED = 1,
    EXIT_SETUP = CLI_EXIT_USAGE /* usage or setup error */
};

/* worker_memory_limit cannot work under ASan/TSan: their shadow memory
   already exceeds any sane RLIMIT_AS, so every allocation would fail. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

typedef struct options {
    unsigned workers;  /* 0: one per CPU (with --mpi: per serving rank) */
    bool per_size, mpi;
    unsigned long timeout_ms, memory_mib, max_megapixels;
    const char *src, *out;
} options;

/* =============================================================== a run */

typedef struct photo {
    unsigned pending; /* its tasks not settled yet */
    bool failed;
} photo;

typedef struct slot {
    size_t photo;
    thumbs_job job;
} slot;

typedef struct run {
    const options *o;
    wp_pool *pool;
    path_list images;
    photo *photos;
    failures failed;
    progress bar;
    uint64_t done, n_failed, thumbnails, bytes;
    /* the tasks in flight: futures[i] runs slots[i]; contiguous for wp_wait_any */
    wp_future **futures;
    slot *slots;
    size_t in_flight, window;
    char *made_dir;   /* the last relative directory created under every box */
} run;

static void photo_fails(run *r, size_t i, const char *cause)
{
    if (!r->photos[i].failed && !failures_add(&r->failed, r->images.v[i], cause))
        fprintf(stderr, "thumbnails: out of memory: %s: %s\n", r->images.v[i], cause);
    r->photos[i].failed = true;
}

static void photo_task_settled(run *r, size_t i)
{
    if (--r->photos[i].pending > 0)
        return;
    r->done++;
    r->n_failed += r->photos[i].failed;
    progress_update(&r->bar, r->done, r->n_failed);
}

/* OUTDIR/<W>x<H>/<dir of the image> for every size, the tree mirrored. */
static int make_output_dirs(run *r, const char *rel, char *why, size_t why_len)
{
    char *dir = parent_of(rel);
    if (dir == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (r->made_dir != NULL && strcmp(dir, r->made_dir) == 0) {
        free(dir);
        return 0;
    }
    for (int s = 0; s < THUMBS_N_SIZES; s++) {
        char *path = thumbs_out_path(r->o->out, thumbs_sizes[s], dir, "");
        int rc = path != NULL ? make_dirs(path) : -1;
        if (rc != 0) {
            snprintf(why, why_len, "cannot create %s: %s", path ? path : dir,
                     path ? strerror(errno) : "out of memory");
            free(path);
            free(dir);
            return -1;
        }
        free(path);
    }
    free(r->made_dir);
    r->made_dir = dir;
    return 0;
}

static void submit(run *r, size_t i, uint32_t first_size, uint32_t n_sizes)
{
    const char *rel = r->images.v[i];
    char why[256];
    if (first_size == 0 && make_output_dirs(r, rel, why, sizeof why) != 0) {
        photo_fails(r, i, why);
        photo_task_settled(r, i);
        return;
    }
    thumbs_job job = { .first_size = first_size, .n_sizes = n_sizes,
                       .max_pixels = (uint64_t)r->o->max_megapixels * 1000000u };
    char *src = malloc(strlen(r->o->src) + strlen(rel) + 2);
    size_t len = 0;
    void *arg = NULL;
    if (src != NULL) {
        sprintf(src, "%s/%s", r->o->src, rel);
        arg = thumbs_pack(&job, src, r->o->out, rel, &len);
    }
    wp_task_options topts = { .timeout_ms = (int64_t)r->o->timeout_ms };
    wp_future **f = &r->futures[r->in_flight];
    int rc = arg != NULL ? wp_submit(r->pool, thumbs_task, arg, len, &topts, f) : WP_ENOMEM;
    free(arg);
    free(src);
    if (rc != 0) {
        photo_fails(r, i, wp_strerror(rc));
        photo_task_settled(r, i);
        return;
    }
    r->slots[r->in_flight++] = (slot){ .photo = i, .job = job };
}

/* A worker that was killed could not remove its half-written file. */
static void remove_leftovers(const run *r, const slot *s)
{
    for (uint32_t k = 0; k < s->job.n_sizes; k++) {
        char *tmp = thumbs_out_path(r->o->out, thumbs_sizes[s->job.first_size + k],
                                    r->images.v[s->photo], ".tmp");
        if (tmp != NULL)
            unlink(tmp);
        free(tmp);
    }
}

/* The task's own message, or what the pool says happened. */
static void describe_failure(const run *r, const wp_future *f, char *buf, size_t len)
{
    int err = wp_future_error(f);
    const char *msg = wp_future_message(f);
    if (err == WP_ETIMEDOUT)
        snprintf(buf, len, "timed out after %lu ms (--timeout-ms)", r->o->timeout_ms);
    else if (err == WP_ETASK && wp_future_code(f) == TF_NOMEM && r->o->memory_mib > 0)
        snprintf(buf, len, "%s (worker memory limit %lu MiB, --memory-limit)", msg,
                 r->o->memory_mib);
    else if (err == WP_ETASK)
        snprintf(buf, len, "%s", msg);
    else
        snprintf(buf, len, "%s%s%s", wp_strerror(err), msg[0] ? ": " : "", msg);
}

/* Take in the task in slot k and close the gap with the last one. */
static void settle(run *r, size_t k)
{
    wp_future *f = r->futures[k];
    slot s = r->slots[k];
    size_t len;
    const void *res = wp_future_result(f, &len);
    if (res != NULL && len == sizeof(thumbs_done)) {
        thumbs_done d;
        memcpy(&d, res, sizeof d); /* no alignment assumptions */
        r->thumbnails += d.thumbnails;
        r->bytes += d.bytes;
    } else {
        char cause[768];
        describe_failure(r, f, cause, sizeof cause);
        photo_fails(r, s.photo, cause);
        if (wp_future_error(f) != WP_ETASK)
            remove_leftovers(r, &s);
    }
    wp_future_release(f);
    r->in_flight--;
    r->futures[k] = r->futures[r->in_flight];
    r->slots[k] = r->slots[r->in_flight];
    photo_task_settled(r, s.photo);
}

static void run_all(run *r)
{
    uint32_t per_photo = r->o->per_size ? THUMBS_N_SIZES : 1;
    size_t next = 0, total = r->images.n * per_photo;
    for (size_t i = 0; i < r->images.n; i++)
        r->photos[i].pending = per_photo;
    progress_start(&r->bar, "photos", r->images.n);
    while (next < total || r->in_flight > 0) {
        for (; next < total && r->in_flight < r->window; next++) {
            uint32_t s = (uint32_t)(next % per_photo);
            submit(r, next / per_photo, s, r->o->per_size ? 1 : THUMBS_N_SIZES);
        }
        size_t k;
        if (r->in_flight == 0)
            continue;
        if (wp_wait_any(r->futures, r->in_flight, TICK_MS, &k) == 0)
            settle(r, k);
        else
            progress_update(&r->bar, r->done, r->n_failed);
    }
    progress_finish(&r->bar, r->done, r->n_failed);
}

static int thumbnails(wp_pool *pool, const options *o, unsigned workers)
{
    run r = { .o = o, .pool = pool, .window = (size_t)workers * IN_FLIGHT_PER_WORKER };
    struct stat out_st, src_st;
    if (make_dirs(o->out) != 0 || stat(o->out, &out_st) != 0) {
        fprintf(stderr, "thumbnails: cannot create %s: %s\n", o->out, strerror(errno));
        return EXIT_SETUP;
    }
    if (stat(o->src, &src_st) == 0 && src_st.st_dev == out_st.st_dev
        && src_st.st_ino == out_st.st_ino) {
        fprintf(stderr, "thumbnails: OUT_DIR must not be SRC_DIR itself\n");
        return EXIT_SETUP;
    }
    if (walk_jpegs(o->src, &out_st, &r.images, &r.failed) != 0)
        return EXIT_SETUP;
    r.photos = calloc(r.images.n + 1, sizeof *r.photos);
    r.futures = malloc(r.window * sizeof *r.futures);
    r.slots = malloc(r.window * sizeof *r.slots);
    if (r.photos == NULL || r.futures == NULL || r.slots == NULL) {
        fprintf(stderr, "thumbnails: out of memory\n");
        return EXIT_SETUP;
    }
    uint64_t unreadable = r.failed.n; /* found by the walk */
    run_all(&r);

    printf("%zu photos: %llu thumbnails (%.1f MiB) in %s/%s, %llu failed\n", r.images.n,
           (unsigned long long)r.thumbnails, (double)r.bytes / (1024.0 * 1024.0), o->out,
           "<W>x<H>", (unsigned long long)(r.n_failed + unreadable));
    failures_sort(&r.failed);
    failures_print(&r.failed, stderr, MAX_LISTED_FAILURES);
    int status = r.n_failed + unreadable > 0 ? EXIT_SOME_FAILED : 0;
    failures_free(&r.failed);
    path_list_free(&r.images);
    free(r.photos);
    free(r.futures);
    free(r.slots);
    free(r.made_dir);
    return status;
}

/* ============================================================= options */

static const char usage_text[] = "Usage: thumbnails [options] SRC_DIR [OUT_DIR]\n";

static const char help_text[] =
    "\n"
    "JPEG thumbnails of every *.jpg and *.jpeg (any case) under SRC_DIR, made\n"
    "in worker processes.  Sizes 1024, 512, 256, 128, 64 and 32: the longer\n"
    "side becomes the size, the aspect ratio is kept, nothing is upscaled.\n"
    "SRC_DIR/a/b.jpg gives OUT_DIR/<S>x<S>/a/b.jpg for each size S (OUT_DIR\n"
    "defaults to ./thumbnails and is skipped when it lies inside SRC_DIR).\n"
    "Pixels are turned upright as the EXIF orientation says, and thumbnails\n"
    "carry no EXIF.  Quality 65, optimised Huffman tables.  A file that\n"
    "cannot be thumbnailed (corrupt, truncated, too big, too slow...) fails\n"
    "alone and is listed at the end.\n"
    "\n"
    "Options:\n"
    "  -j, --workers N          worker processes (default: one per CPU); with\n"
    "                           --mpi, on each rank but rank 0\n"
    "      --per-size           one task per image and size (each decodes the\n"
    "                           file again) instead of one task per image\n"
    "      --timeout-ms MS      deadline per task; 0 = none (default 20000)\n"
    "      --memory-limit MIB   address space per worker; 0 = none (default\n"
    "                           1024; not applied under ASan/TSan)\n"
    "      --max-megapixels N   larger images fail before decoding; 0 = no\n"
    "                           limit (default 64)\n"
    "      --mpi                workers on the other ranks of an MPI job:\n"
    "                           `mpirun -n 3 thumbnails --mpi SRC_DIR OUT_DIR`\n"
    "                           (rank 0 walks, submits and reports; every rank\n"
    "                           must see SRC_DIR and OUT_DIR at the same paths)\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 every image done, 1 some failed, 2 usage or setup error.\n";

static int usage_error(const char *why)
{
    return cli_usage_error("thumbnails", usage_text, why);
}

/* Returns -1 to go on, or the exit status to stop with (--help, errors). */
static int parse_options(int argc, char **argv, options *o)
{
    enum { OPT_PER_SIZE = 256, OPT_TIMEOUT, OPT_MEMORY, OPT_MEGAPIXELS, OPT_MPI };
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'j' },
        { "per-size", no_argument, NULL, OPT_PER_SIZE },
        { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
        { "memory-limit", required_argument, NULL, OPT_MEMORY },
        { "max-megapixels", required_argument, NULL, OPT_MEGAPIXELS },
        { "mpi", no_argument, NULL, OPT_MPI },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    *o = (options){ .timeout_ms = DEFAULT_TIMEOUT_MS, .memory_mib = DEFAULT_MEMORY_MIB,
                    .max_megapixels = DEFAULT_MAX_MEGAPIXELS, .out = "thumbnails" };
    unsigned long v;
    int c;
    while ((c = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (!cli_number(optarg, 1, 1024, &v))
                return usage_error("-j wants a number of workers from 1 to 1024");
            o->workers = (unsigned)v;
            break;
        case OPT_PER_SIZE:
            o->per_size = true;
            break;
        case OPT_TIMEOUT:
            if (!cli_number(optarg, 0, 86400000ul, &o->timeout_ms))
                return usage_error("--timeout-ms wants milliseconds, at most a day");
            break;
        case OPT_MEMORY:
            if (!cli_number(optarg, 0, 1ul << 20, &o->memory_mib))
                return usage_error("--memory-limit wants MiB, at most 1048576");
            break;
        case OPT_MEGAPIXELS:
            if (!cli_number(optarg, 0, 1000000ul, &o->max_megapixels))
                return usage_error("--max-megapixels wants a number, at most 1000000");
            break;
        case OPT_MPI:
            o->mpi = true;
            break;
        case 'h':
            printf("%s%s", usage_text, help_text);
            if (!thumbs_mpi_built)
                printf("This build has no MPI: --mpi fails (configure found none).\n");
            return 0;
        default: /* getopt_long has said what was wrong */
            return usage_error(NULL);
        }
    }
    if (optind >= argc || argc - optind > 2)
        return usage_error("expected SRC_DIR and at most one OUT_DIR");
    o->src = argv[optind];
    if (argc - optind == 2)
        o->out = argv[optind + 1];
    return -1;
}

int main(int argc, char **argv)
{
    options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    if (UNDER_SANITIZER && o.memory_mib > 0) {
        fprintf(stderr, "thumbnails: --memory-limit not applied under a sanitizer\n");
        o.memory_mib = 0;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned workers = o.workers > 0 ? o.workers : cpus > 0 ? (unsigned)cpus : 1;

    /* Create the pool first: its fork server is a copy of this process as it
       is now, small and single-threaded, before any lists are built.  With
       --mpi, only rank 0 goes on past this point. */
    wp_pool *pool;
    wp_pool_options popts = { .workers = workers,
                              .worker_memory_limit = (size_t)o.memory_mib << 20 };
    if (o.mpi) {
        status = thumbs_mpi_begin(&argc, &argv, &popts, &pool, &workers);
        if (status >= 0)
            return status;
    } else {
        int rc = wp_pool_create(&pool, &popts);
        if (rc != 0) {
            fprintf(stderr, "thumbnails: cannot start the worker pool: %s\n", wp_strerror(rc));
            return EXIT_SETUP;
        }
    }
    status = thumbnails(pool, &o, workers);
    wp_pool_destroy(pool);
    if (o.mpi)
        thumbs_mpi_end();
    return status;
}
