/* SPDX-License-Identifier: MIT */
/*
 * checksums_list.c — read the checksums demo's CSV list of paths with
 * libcsv (see checksums_list.h).
 *
 * libcsv calls back once per field and once per record, but it does not
 * count lines.  So the file is fed to it one line at a time (getline), and
 * the loader counts: a parse error is on the line being fed, and a record
 * began on the first non-blank line fed since the previous record ended (a
 * quoted field may span lines).  The first error is printed and the rest of
 * the input ignored.
 *
 * Cost: one stat() per path, one after the other, in the main process; a
 * list of a million paths on a cold disk spends seconds here before the
 * first hash starts.
 */
#define _POSIX_C_SOURCE 200809L

#include "checksums_list.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <csv.h>

#include "cli.h"

enum { LIST_FIRST_CAP = 64 };

#define COLUMN_UNKNOWN SIZE_MAX /* a named column before the header is read */

struct loader {
    const char *name;           /* the CSV file, as messages name it */
    struct file_list *list;
    const struct list_options *o;
    unsigned long line;         /* the line being parsed */
    unsigned long record_line;  /* where the current record began; 0 between records */
    size_t field;               /* fields of this record seen so far */
    size_t column;              /* 0-based column of the paths, or COLUMN_UNKNOWN */
    char *path;                 /* this record's path, once its field has passed */
    bool in_header;             /* the current record is the header */
    bool failed;                /* an error was printed: ignore the rest */
};

/* The first error only; line 0 means the error is about the whole file. */
DEMO_PRINTF_LIKE(3, 4)
static void load_error(struct loader *ld, unsigned long line, const char *fmt, ...)
{
    if (ld->failed)
        return;
    ld->failed = true;
    fprintf(stderr, "checksums: %s:", ld->name);
    if (line > 0)
        fprintf(stderr, "%lu:", line);
    fputc(' ', stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Takes path (malloc'd) whatever happens. */
static void add_entry(struct loader *ld, char *path)
{
    struct file_list *l = ld->list;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : LIST_FIRST_CAP;
        struct entry *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) {
            free(path);
            load_error(ld, 0, "out of memory after %zu paths", l->n);
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    struct stat st;
    struct entry *e = &l->v[l->n++];
    *e = (struct entry){ .path = path, .line = ld->record_line,
                         .existed = stat(path, &st) == 0 };
    if (e->existed && S_ISREG(st.st_mode))
        e->size = (uint64_t)st.st_size;
    l->bytes += e->size;
}

/* libcsv's field callback. */
static void on_field(void *text, size_t len, void *data)
{
    struct loader *ld = data;
    if (ld->failed)
        return;
    size_t i = ld->field++;
    const char *name = ld->o->column_name;
    if (ld->in_header) {
        if (name != NULL && ld->column == COLUMN_UNKNOWN && len == strlen(name) &&
            memcmp(text, name, len) == 0)
            ld->column = i;
        return;
    }
    if (i != ld->column)
        return;
    if (len == 0)
        load_error(ld, ld->record_line, "empty path in column %zu", i + 1);
    else if (memchr(text, '\0', len) != NULL)
        load_error(ld, ld->record_line, "the path in column %zu holds a NUL byte", i + 1);
    else if ((ld->path = malloc(len + 1)) == NULL)
        load_error(ld, ld->record_line, "out of memory");
    else {
        memcpy(ld->path, text, len);
        ld->path[len] = '\0';
    }
}

/* libcsv's end-of-record callback. */
static void on_record(int terminator, void *data)
{
    (void)terminator;
    struct loader *ld = data;
    if (ld->failed)
        return;
    if (ld->in_header) {
        ld->in_header = false;
        if (ld->column == COLUMN_UNKNOWN)
            load_error(ld, ld->record_line, "the header has no column named \"%s\"",
                       ld->o->column_name);
    } else if (ld->path == NULL) {
        load_error(ld, ld->record_line, "no column %zu: the record has %zu field%s",
                   ld->column + 1, ld->field, ld->field == 1 ? "" : "s");
    } else {
        add_entry(ld, ld->path);
        ld->path = NULL;
    }
    ld->field = 0;
    ld->record_line = 0;
}

static const char *csv_problem(const struct csv_parser *p)
{
    switch (csv_error((struct csv_parser *)p)) {
    case CSV_EPARSE:
        return "malformed CSV: a quote inside an unquoted field, or text after a closing quote";
    case CSV_ENOMEM:
        return "out of memory";
    case CSV_ETOOBIG:
        return "a field too large to hold";
    default:
        return "malformed CSV";
    }
}

/* Feed the file line by line, counting lines; then the end of input, where
   strict mode catches a quoted field that is never closed. */
static void parse_lines(struct loader *ld, struct csv_parser *p, FILE *fp)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    while (!ld->failed && (len = getline(&buf, &cap, fp)) > 0) {
        ld->line++;
        if (ld->record_line == 0 && buf[0] != '\n' && buf[0] != '\r')
            ld->record_line = ld->line;
        if (csv_parse(p, buf, (size_t)len, on_field, on_record, ld) != (size_t)len)
            load_error(ld, ld->line, "%s", csv_problem(p));
    }
    if (!ld->failed && ferror(fp))
        load_error(ld, 0, "%s", strerror(errno));
    free(buf);
    if (!ld->failed && csv_fini(p, on_field, on_record, ld) != 0) {
        const char *why = csv_error(p) == CSV_EPARSE
                              ? "malformed CSV: a quoted field is never closed"
                              : csv_problem(p);
        load_error(ld, ld->record_line > 0 ? ld->record_line : ld->line, "%s", why);
    }
}

int list_load(struct file_list *list, const char *name, const struct list_options *o)
{
    bool is_stdin = strcmp(name, "-") == 0;
    struct loader ld = { .name = is_stdin ? "(standard input)" : name, .list = list, .o = o,
                         .column = o->column > 0 ? o->column - 1 : COLUMN_UNKNOWN,
                         .in_header = o->header };
    *list = (struct file_list){ 0 };
    FILE *fp = is_stdin ? stdin : fopen(name, "r");
    if (fp == NULL) {
        load_error(&ld, 0, "%s", strerror(errno));
        return -1;
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        load_error(&ld, 0, "out of memory");
    else {
        parse_lines(&ld, &p, fp);
        csv_free(&p);
    }
    free(ld.path); /* a record cut short by an error */
    if (!is_stdin)
        fclose(fp);
    return ld.failed ? -1 : 0;
}

void list_free(struct file_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->v[i].path);
    free(list->v);
    *list = (struct file_list){ 0 };
}
