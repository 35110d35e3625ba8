/* SPDX-License-Identifier: MIT */
/*
 * progress.h — the demos' progress line and failure report, shared so that
 * each demo keeps to its own job.
 *
 * The progress bar is one line on stderr, as wide as the terminal
 * (TIOCGWINSZ, re-read on every redraw so a resize is followed), redrawn at
 * most every REDRAW_MS, showing done/total, failures, rate and time left.
 * When stderr is not a terminal it prints nothing until the final line.
 *
 * The failure report keeps every failure (name, cause) and prints one line
 * per failure up to a limit, then a count of the rest, then a table of
 * failures by cause.
 */
#ifndef DEMO_PROGRESS_H
#define DEMO_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct progress {
    const char *what;     /* "photos", "files", ... */
    uint64_t    total;
    int64_t     start_ms;
    int64_t     drawn_ms; /* last redraw */
    bool        tty;
} progress;

void progress_start(progress *p, const char *what, uint64_t total);
/* Redraw if due (cheap to call after every completion). */
void progress_update(progress *p, uint64_t done, uint64_t failed);
/* The final line, terminal or not. */
void progress_finish(progress *p, uint64_t done, uint64_t failed);

typedef struct failure {
    char *name;
    char *cause;
} failure;

typedef struct failures {
    failure *v;
    size_t   n, cap;
} failures;

/* Record one failure (copies both strings); false if out of memory. */
bool failures_add(failures *f, const char *name, const char *cause);
/* One line per failure, at most max of them, then "... and N more", then
   the count per cause, most frequent first.  Nothing when there is none. */
void failures_print(const failures *f, FILE *out, size_t max);
/* Sort by name (strcmp), e.g. to list them in the order of a sorted input
   rather than the order they happened to fail in. */
void failures_sort(failures *f);
void failures_free(failures *f);

#endif
