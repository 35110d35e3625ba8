/* SPDX-License-Identifier: MIT */
/*
 * thumbs_task.h — the thumbnails demo's task, the code that runs in a worker
 * process: what the main process sends (a job), what comes back (a
 * summary), and the task function itself.
 *
 * A job is one image and a run of consecutive sizes from thumbs_sizes: all
 * of them (one decode for every size, the default) or just one (the
 * --per-size mode, one task per image and size).
 */
#ifndef THUMBS_TASK_H
#define THUMBS_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

/* The boxes, largest first: each size is shrunk from the one before. */
extern const unsigned thumbs_sizes[];
enum { THUMBS_N_SIZES = 6, THUMBS_QUALITY = 65 };

/* The task's own failure codes (wp_future_code() of a WP_ETASK failure). */
enum thumbs_failure {
    TF_BADARG = 1, /* argument bytes not as thumbs_pack() made them */
    TF_IO,         /* cannot open, write or rename a file */
    TF_JPEG,       /* libjpeg gave up: a corrupt, truncated or odd file */
    TF_TOO_BIG,    /* the header claims more pixels than max_pixels */
    TF_COLOR,      /* a colour space this demo does not convert (CMYK...) */
    TF_NOMEM
};

/* The fixed head of a task argument; three NUL-terminated strings follow:
   the input path, the output directory and the input's path below the
   source directory (which is also its path below OUT_DIR/<W>x<H>). */
typedef struct thumbs_job {
    uint32_t first_size, n_sizes; /* thumbs_sizes[first_size ...] */
    uint64_t max_pixels;          /* 0 = no limit */
} thumbs_job;

/* A successful task's result. */
typedef struct thumbs_done {
    uint64_t bytes;       /* written, all sizes */
    uint32_t thumbnails;  /* files written */
    uint32_t orientation; /* the EXIF orientation applied (1 = none) */
} thumbs_done;

/* The argument bytes (malloc'd, *len set), or NULL when out of memory. */
void *thumbs_pack(const thumbs_job *job, const char *src, const char *outdir, const char *rel,
                  size_t *len);

/* OUTDIR/<box>x<box>/REL followed by suffix ("" or ".tmp"), malloc'd. */
char *thumbs_out_path(const char *outdir, unsigned box, const char *rel, const char *suffix);

/* The task function. */
int thumbs_task(const void *arg, size_t arg_len, wp_buf *result);

#endif
