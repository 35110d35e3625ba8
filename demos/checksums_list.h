/* SPDX-License-Identifier: MIT */
/*
 * checksums_list.h — the checksums demo's input: a CSV file of paths, read
 * with libcsv into a list, each path stat()ed once as it is read.
 *
 * Kept apart from checksums.c so that file shows the fan-out alone.  The
 * stat at load time is what lets the report tell "no such file" (never
 * there) from "vanished during the run" (there when the list was read, gone
 * when its turn came), and it gives the byte total up front.
 */
#ifndef DEMO_CHECKSUMS_LIST_H
#define DEMO_CHECKSUMS_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct entry {
    char *path;
    unsigned long line; /* the CSV line the record began on */
    bool existed;       /* stat() succeeded when the list was read */
    uint64_t size;      /* bytes then, for a regular file; else 0 */
};

struct file_list {
    struct entry *v;
    size_t n, cap;
    uint64_t bytes; /* sum of the sizes */
};

struct list_options {
    unsigned column;         /* 1-based; 0: by name, column_name */
    const char *column_name; /* the header field naming the column (needs header) */
    bool header;             /* the first record is a header, not a path */
};

/*
 * Read the CSV file `name` ("-": standard input) into *list.  Strict CSV
 * (RFC 4180 quoting; a stray quote is an error); blank lines are skipped;
 * every record must have the column, and a non-empty path in it.
 * 0, or -1 after printing one error to stderr that names the file and,
 * for a CSV error, the line ("checksums: list.csv:7: ...").  The list is
 * the caller's to free, whatever the outcome.
 */
int list_load(struct file_list *list, const char *name, const struct list_options *o);

void list_free(struct file_list *list);

#endif
