/* SPDX-License-Identifier: MIT */
/* thumbs_walk.c — see thumbs_walk.h. */
#define _POSIX_C_SOURCE 200809L
#include "thumbs_walk.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { FIRST_CAPACITY = 64 };

static bool is_jpeg_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* "a" + "b" -> "a/b"; "" + "b" -> "b".  NULL when out of memory. */
static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s%s%s", a, a[0] != '\0' ? "/" : "", b);
    return p;
}

static bool list_add(path_list *l, char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : FIRST_CAPACITY;
        char **v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = path;
    return true;
}

void path_list_free(path_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (path_list){ 0 };
}

typedef struct walk {
    const char *top;
    const struct stat *skip;
    path_list *out;
    failures *failed;
} walk;

/* One entry of a directory: false only when out of memory. */
static bool visit(walk *w, const char *rel, const char *name);

/* opendir rather than nftw: nftw's callback takes no context pointer. */
static bool walk_dir(walk *w, const char *rel)
{
    char *path = join(w->top, rel);
    if (path == NULL)
        return false;
    DIR *d = opendir(path);
    free(path);
    if (d == NULL)
        return rel[0] != '\0' && failures_add(w->failed, rel, strerror(errno));
    bool ok = true;
    struct dirent *e;
    while (ok && (errno = 0, e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            ok = visit(w, rel, e->d_name);
    if (ok && errno != 0)
        ok = failures_add(w->failed, rel[0] ? rel : ".", strerror(errno));
    closedir(d);
    return ok;
}

/* A JPEG by name that is not a regular file (a dangling symlink, a FIFO
   that would block the reader...) is reported, not silently dropped. */
static bool visit(walk *w, const char *rel, const char *name)
{
    char *sub = join(rel, name);
    char *path = sub != NULL ? join(w->top, sub) : NULL;
    if (path == NULL) {
        free(sub);
        return false;
    }
    struct stat sb;
    bool ok = true, keep = false;
    if (lstat(path, &sb) != 0)
        ok = failures_add(w->failed, sub, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        ok = same_file(&sb, w->skip) || walk_dir(w, sub);
    else if (!is_jpeg_name(name))
        ; /* not ours */
    else if (stat(path, &sb) != 0) /* follows a symlink */
        ok = failures_add(w->failed, sub, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        ok = failures_add(w->failed, sub, "not a regular file");
    else
        keep = true;
    free(path);
    if (keep && list_add(w->out, sub))
        return true;
    free(sub);
    return ok && !keep;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int walk_jpegs(const char *dir, const struct stat *skip, path_list *out, failures *failed)
{
    walk w = { .top = dir, .skip = skip, .out = out, .failed = failed };
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "thumbnails: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    closedir(d);
    if (!walk_dir(&w, "")) {
        fprintf(stderr, "thumbnails: out of memory\n");
        return -1;
    }
    if (out->n > 1) /* a stable order, whatever readdir gives */
        qsort(out->v, out->n, sizeof *out->v, by_name);
    return 0;
}

int make_dirs(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return -1;
    int rc = 0;
    for (char *cut = p + 1; rc == 0; cut++) {
        char saved = *cut;
        if (saved != '\0' && saved != '/')
            continue;
        *cut = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            rc = -1;
        *cut = saved;
        if (saved == '\0')
            break;
    }
    int saved_errno = errno;
    free(p);
    errno = saved_errno;
    return rc;
}

char *parent_of(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    size_t n = slash != NULL ? (size_t)(slash - rel) : 0;
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, rel, n);
        p[n] = '\0';
    }
    return p;
}
