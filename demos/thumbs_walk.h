/* SPDX-License-Identifier: MIT */
/*
 * thumbs_walk.h — the thumbnails demo's file-system side: find every JPEG
 * under a directory (the whole list first, so the progress bar knows the
 * real total) and create the output directories that mirror the tree.
 */
#ifndef THUMBS_WALK_H
#define THUMBS_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "progress.h"

typedef struct path_list {
    char **v; /* paths relative to the walked directory, sorted */
    size_t n, cap;
} path_list;

/*
 * Every *.jpg and *.jpeg (any case) under dir, by path relative to dir.
 * Symlinks to files count; symlinks to directories are not followed (no
 * cycles).  The directory `skip` (the output, when it lies inside dir) is
 * passed over.  What cannot be read below dir goes into `failed`, so no
 * input is lost silently.  -1 (and a message on stderr) if dir itself cannot
 * be read or memory runs out.
 */
int walk_jpegs(const char *dir, const struct stat *skip, path_list *out, failures *failed);
void path_list_free(path_list *l);

/* mkdir -p; 0, or -1 with errno set. */
int make_dirs(const char *path);

/* "a/b/c.jpg" -> "a/b" (malloc'd; "" for a file at the top), or NULL. */
char *parent_of(const char *rel);

#endif
