/* SPDX-License-Identifier: MIT */
/* progress.c — see progress.h. */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h" /* DEMO_PRINTF_LIKE */

#define REDRAW_MS     100 /* at most ten redraws a second */
#define DEFAULT_WIDTH 80  /* when the terminal does not say */
#define MIN_BAR       10  /* narrower than this, the bar is left out */
#define TEXT_MAX      160 /* the line's text, before the bar */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return DEFAULT_WIDTH;
}

void progress_start(progress *p, const char *what, uint64_t total)
{
    *p = (progress){ .what = what, .total = total, .start_ms = now_ms(),
                     .tty = isatty(STDERR_FILENO) == 1 };
    p->drawn_ms = p->start_ms - REDRAW_MS;
}

/* Append to text[TEXT_MAX] at *len, keeping it a string; a full buffer
   stays full (the line is cut, never overrun). */
static void append(char *text, int *len, const char *fmt, ...) DEMO_PRINTF_LIKE(3, 4);
static void append(char *text, int *len, const char *fmt, ...)
{
    if (*len >= TEXT_MAX - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + *len, (size_t)(TEXT_MAX - *len), fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + n < TEXT_MAX - 1 ? *len + n : TEXT_MAX - 1;
}

/* "  123/456 photos, 2 failed, 85.3/s, 0:04 left" then a bar filling the
   rest of the line. */
static void draw(progress *p, uint64_t done, uint64_t failed, bool final)
{
    int64_t ms = now_ms() - p->start_ms;
    double rate = ms > 0 ? (double)done * 1000.0 / (double)ms : 0.0;
    char text[TEXT_MAX] = "";
    int len = 0;
    append(text, &len, " %llu/%llu %s", (unsigned long long)done, (unsigned long long)p->total,
           p->what);
    if (failed > 0)
        append(text, &len, ", %llu failed", (unsigned long long)failed);
    append(text, &len, ", %.1f/s", rate);
    if (final) {
        append(text, &len, ", %.2f s", (double)ms / 1000.0);
    } else if (rate > 0 && done < p->total) {
        long left = (long)((double)(p->total - done) / rate);
        append(text, &len, ", %ld:%02ld left", left / 60, left % 60);
    }
    int width = p->tty ? term_width() - 1 : 0; /* - 1: never wrap */
    int bar = width - len - 2;                  /* 2 brackets */
    if (p->tty)
        fputc('\r', stderr);
    if (bar >= MIN_BAR) {
        int fill = p->total > 0 ? (int)((double)bar * (double)done / (double)p->total) : bar;
        fputc('[', stderr);
        for (int i = 0; i < bar; i++)
            fputc(i < fill ? '#' : '.', stderr);
        fputc(']', stderr);
    } else if (p->tty && len > width && width > 0) {
        len = width;
    }
    fprintf(stderr, "%.*s", len, text);
    if (final)
        fputc('\n', stderr);
    else if (p->tty)
        fputs("\033[K", stderr); /* clear what a longer line left */
    fflush(stderr);
}

void progress_update(progress *p, uint64_t done, uint64_t failed)
{
    if (!p->tty)
        return;
    int64_t now = now_ms();
    if (now - p->drawn_ms < REDRAW_MS)
        return;
    p->drawn_ms = now;
    draw(p, done, failed, false);
}

void progress_finish(progress *p, uint64_t done, uint64_t failed)
{
    draw(p, done, failed, true);
}

bool failures_add(failures *f, const char *name, const char *cause)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        failure *v = realloc(f->v, cap * sizeof *v);
        if (v == NULL)
            return false;
        f->v = v;
        f->cap = cap;
    }
    char *n = strdup(name), *c = strdup(cause);
    if (n == NULL || c == NULL) {
        free(n);
        free(c);
        return false;
    }
    f->v[f->n++] = (failure){ n, c };
    return true;
}

typedef struct cause_count {
    const char *cause;
    size_t      n;
} cause_count;

static int by_count(const void *a, const void *b)
{
    const cause_count *x = a, *y = b;
    return x->n != y->n ? (x->n < y->n ? 1 : -1) : strcmp(x->cause, y->cause);
}

void failures_print(const failures *f, FILE *out, size_t max)
{
    if (f->n == 0)
        return;
    fprintf(out, "%zu failed:\n", f->n);
    for (size_t i = 0; i < f->n && i < max; i++)
        fprintf(out, "  %s: %s\n", f->v[i].name, f->v[i].cause);
    if (f->n > max)
        fprintf(out, "  ... and %zu more\n", f->n - max);
    /* Counting causes is O(failures x causes): a report, not a hot path. */
    cause_count *c = calloc(f->n, sizeof *c);
    if (c == NULL)
        return;
    size_t nc = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t j = 0;
        while (j < nc && strcmp(c[j].cause, f->v[i].cause) != 0)
            j++;
        if (j == nc)
            c[nc++] = (cause_count){ f->v[i].cause, 0 };
        c[j].n++;
    }
    qsort(c, nc, sizeof *c, by_count);
    fprintf(out, "failures by cause:\n");
    for (size_t j = 0; j < nc; j++)
        fprintf(out, "  %6zu  %s\n", c[j].n, c[j].cause);
    free(c);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const failure *)a)->name, ((const failure *)b)->name);
}

void failures_sort(failures *f)
{
    if (f->n > 1)
        qsort(f->v, f->n, sizeof *f->v, by_name);
}

void failures_free(failures *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].name);
        free(f->v[i].cause);
    }
    free(f->v);
    *f = (failures){ 0 };
}
