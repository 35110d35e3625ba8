/* SPDX-License-Identifier: MIT */
/*
 * checksums — the workerpool fan-out demo: the SHA-256 of every file a CSV
 * list names, computed in worker processes, every failure collected in one
 * place.
 *
 * Why this job: many independent jobs, each of which can fail on its own —
 * permission denied, gone, a directory, a FIFO that never delivers, a disk
 * that hangs — where the program wants all the answers it can get and one
 * report of the rest.  In a worker process a job stuck in open() or read()
 * is simply killed at its deadline, which a thread cannot be.
 *
 * What it shows of the library (the pattern to copy is run_all()):
 *   - a bounded fan-out: wp_submit() keeps at most --in-flight files in the
 *     pool, and a completion queue (wp_cq_add / wp_cq_next) hands each
 *     future back as it settles, so memory stays bounded however long the
 *     list; lines still come out in list order;
 *   - wp_task_options.timeout_ms: a per-file deadline; past it the worker
 *     is killed, the future fails with WP_ETIMEDOUT and a new worker starts;
 *   - the task reports its own errors with wp_buf_fail(out, errno, text);
 *     the main process turns each outcome (task code, deadline, crash) plus
 *     what it knew when the list was read into one specific cause, and
 *     failures_print() ends with a table of failures by cause.
 *
 * checksums_hash.c is the task (libcrypto), checksums_list.c reads the CSV
 * (libcsv), progress.c draws the progress line and prints the report.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checksums_hash.h"
#include "checksums_list.h"
#include "cli.h"
#include "progress.h"
#include "workerpool.h"

enum {
    DEFAULT_TIMEOUT_MS = 60000,    /* per file: generous for a local disk */
    IN_FLIGHT_PER_WORKER = 2,      /* one running, one queued behind it */
    MAX_WORKERS = 1024,
    MAX_IN_FLIGHT = 65536,
    MAX_TIMEOUT_MS = 86400000,     /* a day */
    PROGRESS_TICK_MS = 100,        /* redraw while waiting for a slow file */
    MAX_LISTED_FAILURES = 50,      /* then "... and N more" and the table */
    CAUSE_MAX = 256,
    EXITED_CODE_BASE = 256,        /* WP_ECRASHED's code: a signal, or this + exit status */
    EXIT_FAILED = 1,
    EXIT_USAGE = CLI_EXIT_USAGE /* also: a list that cannot be read */
};

#define MIB (1024.0 * 1024.0)

/* ============================================================ the run */

struct settings {
    unsigned workers;   /* 0 = one per CPU */
    unsigned in_flight; /* 0 = IN_FLIGHT_PER_WORKER per worker */
    int64_t timeout_ms; /* 0 = none */
    struct list_options list;
    const char *csv;
};

/* What became of one entry of the list, kept until its turn to print. */
struct outcome {
    bool settled, ok;
    struct hash_result r; /* if ok */
    char *cause;          /* if not: why (NULL if even that could not be kept) */
};

struct run {
    const struct settings *s;
    const struct file_list *list;
    wp_pool *pool;
    wp_cq *cq;
    wp_task_options topts;
    struct outcome *out;  /* one per entry, in list order */
    /* The futures in flight and the entry each one hashes.  The pointers
       only identify them: the cq holds the references. */
    wp_future **flying;
    size_t *flying_entry;
    size_t n_flying;
    size_t next_print;    /* the first entry not yet printed or reported */
    uint64_t settled, failed, bytes;
    failures fails;
    progress bar;
};

/* An errno value from the task, made specific with what the list knew. */
static const char *errno_cause(int code, const struct entry *e, const char *message)
{
    switch (code) {
    case ENOENT:
        return e->existed ? "vanished during the run" : "no such file";
    case EACCES:
    case EPERM:
        return "permission denied";
    case EISDIR:
        return "is a directory";
    default:
        return message; /* the worker's own words, e.g. "read: Input/output error" */
    }
}

/* One cause per failure, worded so that equal causes group in the table:
   no pid, no path. */
static void describe_failure(const struct run *r, const wp_future *f, const struct entry *e,
                             char *buf, size_t cap)
{
    int err = wp_future_error(f), code = wp_future_code(f);
    switch (err) {
    case 0:
        snprintf(buf, cap, "a result of the wrong size");
        break;
    case WP_ETASK:
        snprintf(buf, cap, "%s", errno_cause(code, e, wp_future_message(f)));
        break;
    case WP_ETIMEDOUT:
        snprintf(buf, cap, "timed out (past the %lld ms deadline)", (long long)r->s->timeout_ms);
        break;
    case WP_ECRASHED:
        if (code < EXITED_CODE_BASE)
            snprintf(buf, cap, "worker crashed (%s)", strsignal(code));
        else
            snprintf(buf, cap, "worker exited (status %d)", code - EXITED_CODE_BASE);
        break;
    default:
        snprintf(buf, cap, "%s", wp_strerror(err));
    }
}

/* sha256sum's format: a path holding a backslash, newline or carriage
   return is escaped, and its line starts with a backslash. */
static void print_line(const char *path, const unsigned char *digest)
{
    bool escape = strpbrk(path, "\\\n\r") != NULL;
    if (escape)
        putchar('\\');
    for (size_t i = 0; i < SHA256_BYTES; i++)
        printf("%02x", digest[i]);
    fputs("  ", stdout);
    for (const char *p = path; escape && *p != '\0'; p++) {
        if (*p == '\\')
            fputs("\\\\", stdout);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\r')
            fputs("\\r", stdout);
        else
            putchar(*p);
    }
    if (!escape)
        fputs(path, stdout);
    putchar('\n');
}

/* Print, in list order, every entry whose turn has come: a line for a
   hash, a record in the failure report for a failure. */
static void print_ready(struct run *r)
{
    while (r->next_print < r->list->n && r->out[r->next_print].settled) {
        const char *path = r->list->v[r->next_print].path;
        struct outcome *o = &r->out[r->next_print++];
        if (o->ok)
            print_line(path, o->r.digest);
        else if (!failures_add(&r->fails, path, o->cause != NULL ? o->cause : "out of memory"))
            fprintf(stderr, "checksums: out of memory: %s failed, not listed\n", path);
        free(o->cause);
        o->cause = NULL;
    }
}

/* Record entry's outcome: res on success, else cause. */
static void settle(struct run *r, size_t entry, const struct hash_result *res, const char *cause)
{
    struct outcome *o = &r->out[entry];
    o->settled = true;
    o->ok = res != NULL;
    r->settled++;
    if (o->ok) {
        o->r = *res;
        r->bytes += res->bytes;
    } else {
        o->cause = strdup(cause);
        r->failed++;
    }
    print_ready(r);
}

/* A settled future's outcome, for its entry. */
static void settle_future(struct run *r, size_t entry, const wp_future *f)
{
    size_t len;
    const void *bytes = wp_future_result(f, &len);
    struct hash_result res;
    if (bytes != NULL && len == sizeof res) {
        memcpy(&res, bytes, sizeof res);
        settle(r, entry, &res, NULL);
        return;
    }
    char cause[CAUSE_MAX];
    describe_failure(r, f, &r->list->v[entry], cause, sizeof cause);
    settle(r, entry, NULL, cause);
}

/* Hand one entry to the pool and to the completion queue.  The cq holds a
   reference of its own, so ours goes at once; the pointer is kept only to
   know the future again when the cq hands it back. */
static void submit_one(struct run *r, size_t entry)
{
    const char *path = r->list->v[entry].path;
    wp_future *f;
    int rc = wp_submit(r->pool, hash_file, path, strlen(path) + 1, &r->topts, &f);
    if (rc != 0) {
        char cause[CAUSE_MAX];
        snprintf(cause, sizeof cause, "not submitted: %s", wp_strerror(rc));
        settle(r, entry, NULL, cause);
        return;
    }
    if (wp_cq_add(r->cq, f) != 0) { /* out of memory: wait for this one alone */
        wp_future_wait(f, -1);
        settle_future(r, entry, f);
    } else {
        r->flying[r->n_flying] = f;
        r->flying_entry[r->n_flying++] = entry;
    }
    wp_future_release(f);
}

/* A future the cq handed back: find its entry (O(in flight), a handful),
   forget it, settle it, and release the cq's reference. */
static void collect(struct run *r, wp_future *f)
{
    size_t i = 0;
    while (i < r->n_flying && r->flying[i] != f)
        i++;
    if (i < r->n_flying) {
        size_t entry = r->flying_entry[i];
        r->n_flying--;
        r->flying[i] = r->flying[r->n_flying];
        r->flying_entry[i] = r->flying_entry[r->n_flying];
        settle_future(r, entry, f);
    }
    wp_future_release(f);
}

/*
 * The fan-out: keep the pool fed with at most in_flight files, take each
 * future back from the completion queue as it settles, and redraw the
 * progress line at least every PROGRESS_TICK_MS while a slow file runs.
 * Every entry is settled exactly once: hashed, failed, or not submitted.
 */
static void run_all(struct run *r, size_t in_flight)
{
    size_t next = 0;
    while (next < r->list->n || r->n_flying > 0) {
        while (next < r->list->n && r->n_flying < in_flight)
            submit_one(r, next++);
        wp_future *f;
        int rc = r->n_flying > 0 ? wp_cq_next(r->cq, PROGRESS_TICK_MS, &f) : WP_EAGAIN;
        if (rc == 0)
            collect(r, f);
        else if (rc != WP_ETIMEDOUT && rc != WP_EAGAIN) { /* a bug: say so, never spin */
            fprintf(stderr, "checksums: waiting for results: %s\n", wp_strerror(rc));
            break;
        }
        progress_update(&r->bar, r->settled, r->failed);
    }
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Create the pool and the cq, run, and report.  The exit status. */
static int checksum_list(const struct settings *s, const struct file_list *list)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned workers = s->workers > 0 ? s->workers : (cpus > 0 ? (unsigned)cpus : 1);
    size_t in_flight = s->in_flight > 0 ? s->in_flight : (size_t)workers * IN_FLIGHT_PER_WORKER;
    struct run r = { .s = s, .list = list, .topts = { .timeout_ms = s->timeout_ms } };
    r.out = calloc(list->n ? list->n : 1, sizeof *r.out);
    r.flying = calloc(in_flight, sizeof *r.flying);
    r.flying_entry = calloc(in_flight, sizeof *r.flying_entry);
    wp_pool_options popts = { .workers = workers };
    int rc = r.out && r.flying && r.flying_entry ? wp_cq_create(&r.cq) : WP_ENOMEM;
    if (rc == 0 && (rc = wp_pool_create(&r.pool, &popts)) != 0)
        wp_cq_destroy(r.cq);
    if (rc != 0) {
        fprintf(stderr, "checksums: cannot start: %s\n", wp_strerror(rc));
        free(r.out);
        free(r.flying);
        free(r.flying_entry);
        return EXIT_USAGE;
    }
    fprintf(stderr, "checksums: %zu paths (%.1f MiB), %u worker%s, %zu in flight, ", list->n,
            (double)list->bytes / MIB, workers, workers == 1 ? "" : "s", in_flight);
    if (s->timeout_ms > 0)
        fprintf(stderr, "%lld ms deadline per file\n", (long long)s->timeout_ms);
    else
        fprintf(stderr, "no deadline\n");

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    progress_start(&r.bar, "files", list->n);
    run_all(&r, in_flight);
    progress_finish(&r.bar, r.settled, r.failed);
    double secs = seconds_since(&start);
    wp_pool_destroy(r.pool);
    wp_cq_destroy(r.cq);

    fprintf(stderr, "checksums: %.1f MiB hashed in %.2f s: %.1f MiB/s\n", (double)r.bytes / MIB,
            secs, secs > 0 ? (double)r.bytes / MIB / secs : 0.0);
    failures_print(&r.fails, stderr, MAX_LISTED_FAILURES);
    failures_free(&r.fails);
    free(r.out);
    free(r.flying);
    free(r.flying_entry);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "checksums: writing the output: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    return r.failed > 0 ? EXIT_FAILED : 0;
}

/* ================================================================ options */

static const char usage_text[] =
    "Usage: checksums [-j WORKERS] [--in-flight N] [--timeout-ms MS] [--header]\n"
    "                 [--column N|NAME] LIST.csv\n";

static const char help_text[] =
    "\n"
    "Print the SHA-256 of every file that the CSV file LIST.csv names (\"-\":\n"
    "standard input), computed in worker processes, and report every failure.\n"
    "\n"
    "Options:\n"
    "  -j, --workers=N       worker processes (default: one per CPU)\n"
    "      --in-flight=N     files in the pool at once, at most (default: 2 per\n"
    "                        worker)\n"
    "      --timeout-ms=MS   deadline per file, counted from when a worker starts\n"
    "                        it; past it the worker is killed (default 60000;\n"
    "                        0: none)\n"
    "  -c, --column=N|NAME   the column holding the paths: a number from 1, or a\n"
    "                        name from the header row (default 1)\n"
    "      --header          the first record is a header row, not a path\n"
    "  -h, --help            this text\n"
    "\n"
    "The list is strict CSV (quote a field holding a comma, a quote or a line\n"
    "break; double a quote inside quotes); blank lines are skipped.  Each path\n"
    "is stat()ed as the list is read and read as sha256sum reads it: a FIFO\n"
    "with no writer blocks until its deadline.\n"
    "\n"
    "Output: on stdout, one line per file hashed, as sha256sum prints it\n"
    "(HASH  PATH; `sha256sum -c` reads it back), in the order of the list.\n"
    "On stderr: a progress line (updated on a terminal), then the failures in\n"
    "list order (the first 50) and a table of failures by cause: permission\n"
    "denied, no such file, vanished during the run (there when the list was\n"
    "read), is a directory, timed out, worker crashed, ...\n"
    "\n"
    "Exit status: 0 every file hashed, 1 some failed, 2 usage error or a list\n"
    "that cannot be read (the message names the file and line).\n";

static int usage_error(const char *why)
{
    return cli_usage_error("checksums", usage_text, why);
}

/* Returns -1 to go on, or the exit status to stop with (--help, errors). */
static int parse_options(int argc, char **argv, struct settings *s)
{
    enum { OPT_IN_FLIGHT = 256, OPT_TIMEOUT, OPT_HEADER };
    static const struct option longopts[] = {
        { "workers", required_argument, NULL, 'j' },
        { "in-flight", required_argument, NULL, OPT_IN_FLIGHT },
        { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
        { "column", required_argument, NULL, 'c' },
        { "header", no_argument, NULL, OPT_HEADER },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    *s = (struct settings){ .timeout_ms = DEFAULT_TIMEOUT_MS, .list = { .column = 1 } };
    unsigned long v;
    int c;
    while ((c = getopt_long(argc, argv, "j:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (!cli_number(optarg, 1, MAX_WORKERS, &v))
                return usage_error("-j wants a number of workers from 1 to 1024");
            s->workers = (unsigned)v;
            break;
        case OPT_IN_FLIGHT:
            if (!cli_number(optarg, 1, MAX_IN_FLIGHT, &v))
                return usage_error("--in-flight wants a number from 1 to 65536");
            s->in_flight = (unsigned)v;
            break;
        case OPT_TIMEOUT:
            if (!cli_number(optarg, 0, MAX_TIMEOUT_MS, &v))
                return usage_error("--timeout-ms wants milliseconds from 0 to 86400000");
            s->timeout_ms = (int64_t)v;
            break;
        case 'c':
            if (cli_number(optarg, 1, UINT32_MAX, &v)) {
                s->list.column = (unsigned)v;
                s->list.column_name = NULL;
            } else if (optarg[0] != '\0' && strspn(optarg, "0123456789") != strlen(optarg)) {
                s->list.column = 0;
                s->list.column_name = optarg;
            } else {
                return usage_error("--column wants a column number from 1, or a name");
            }
            break;
        case OPT_HEADER:
            s->list.header = true;
            break;
        case 'h':
            printf("%s%s", usage_text, help_text);
            return 0;
        default: /* getopt_long has said what was wrong */
            return usage_error(NULL);
        }
    }
    if (optind != argc - 1)
        return usage_error("expected exactly one LIST.csv");
    s->csv = argv[optind];
    if (s->list.column_name != NULL && !s->list.header)
        return usage_error("a column named by a name needs --header");
    return -1;
}

/* ================================================================== main */

int main(int argc, char **argv)
{
    struct settings s;
    int status = parse_options(argc, argv, &s);
    if (status >= 0)
        return status;
    struct file_list list;
    status = list_load(&list, s.csv, &s.list) == 0 ? checksum_list(&s, &list) : EXIT_USAGE;
    list_free(&list);
    return status;
}
