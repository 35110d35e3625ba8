/* SPDX-License-Identifier: MIT */
/*
 * batch_insert — the workerpool batcher demo: many threads insert rows into
 * SQLite through worker processes, one transaction per batch.
 *
 * Why this job: a database commit has a fixed cost (taking the write lock,
 * writing and syncing the log) that dwarfs the cost of one row, and so does
 * a round trip to a worker.  Code that produces rows one at a time — a
 * request handler, a parser thread — would pay both for every row.  The
 * batcher lets each producer keep its one-row-at-a-time shape and its own
 * future per row, while a worker inserts a whole batch in ONE transaction.
 *
 * What it shows of the library (this file is the workerpool side;
 * batch_insert_db.c is the SQLite side):
 *   - wp_pool_options.worker_init: each worker opens its own SQLite
 *     connection once, after fork, and prepares its statements; no
 *     connection ever crosses a fork;
 *   - wp_batcher: THREADS threads submit single rows and wait on their own
 *     futures with wp_wait_all(); the batch function wraps a batch in
 *     BEGIN IMMEDIATE ... COMMIT and answers each row with its rowid;
 *   - per-item failure: the data holds exactly one duplicate id; its insert
 *     fails alone through wp_buf_fail() with SQLite's error, and the rest of
 *     its batch is still committed;
 *   - whole-batch failure: a failed BEGIN or COMMIT fails every row of the
 *     batch (a non-zero return from the batch function);
 *   - a progress line counted by a done-callback per row
 *     (wp_future_on_done), and every failure collected for one report;
 *   - the same rows again with one wp_submit() task per row, each its own
 *     autocommit transaction, for comparison; then wp_batcher_get_stats()
 *     and a row count in the main process to check both tables.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_insert.h"
#include "cli.h"
#include "workerpool.h"

enum {
    DEFAULT_THREADS = 4,
    DEFAULT_ROWS = 20000,
    DEFAULT_BATCH = 64,
    DEFAULT_WORKERS = 2,
    MAX_THREADS = 1024,
    MAX_ROWS = 100000000,
    MAX_BATCH = 65536,
    MAX_WORKERS = 1024,
    EXIT_MISMATCH = 1,
    EXIT_SETUP = CLI_EXIT_USAGE /* usage, and a database that cannot be used */
};

/* ================================================================ options */

static const char usage_text[] =
    "Usage: batch_insert [-t THREADS] [-n ROWS] [-b BATCH] [-w WORKERS] [--wal | --no-wal] [DBFILE]\n"
    "       batch_insert --show DBFILE\n";

static const char help_text[] =
    "\n"
    "THREADS threads insert ROWS rows into the SQLite database DBFILE through\n"
    "WORKERS worker processes: first through a workerpool batcher (up to BATCH\n"
    "rows per task, one transaction per batch, table batched_rows), then with\n"
    "one task and one transaction per row (table single_rows).  The last row\n"
    "repeats the first row's id on purpose, so in each phase exactly one\n"
    "insert fails; the tables must end up with ROWS - 1 rows.  A progress line\n"
    "goes to stderr on a terminal; the failures are listed after each phase.\n"
    "\n"
    "Options:\n"
    "  -t, --threads=THREADS  submitting threads (default 4)\n"
    "  -n, --rows=ROWS        rows per phase, at least 2 (default 20000)\n"
    "  -b, --batch=BATCH      largest batch (default 64)\n"
    "  -w, --workers=WORKERS  worker processes (default 2)\n"
    "      --wal              put the database in WAL mode, even an existing one\n"
    "      --no-wal           never change the journal mode, even of a new database\n"
    "      --show             print DBFILE's journal mode and the row count of each\n"
    "                         table (key=value lines), change nothing, and exit\n"
    "  -h, --help             this text\n"
    "  DBFILE                 the database; its tables batched_rows and single_rows\n"
    "                         are replaced, and it is kept (default: a temporary\n"
    "                         file in /tmp, removed at the end)\n"
    "\n"
    "Journal mode: WAL lets the workers' commits append to a log, and it is a\n"
    "lasting property of the file.  So an existing database keeps the journal\n"
    "mode it has unless --wal is given; a new one (a DBFILE that does not exist\n"
    "or is empty, or the temporary file) is put in WAL mode unless --no-wal is\n"
    "given.  The mode in use, and why, is printed first.\n"
    "\n"
    "Exit status: 0 both tables hold the expected rows (--show: it could read\n"
    "them), 1 they do not (or a row had an unexpected outcome), 2 usage error\n"
    "or a database that cannot be opened or written (the message names it).\n";

static int usage_error(const char *why)
{
    return cli_usage_error("batch_insert", usage_text, why);
}

/* A count from 1 to max, into an unsigned. */
static bool parse_unsigned(const char *s, unsigned long max, unsigned *out)
{
    unsigned long v;
    if (!cli_number(s, 1, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

/* Returns -1 to go on, or the exit status to stop with (--help, errors). */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_WAL = 256, OPT_NO_WAL, OPT_SHOW };
    static const struct option longopts[] = {
        { "threads", required_argument, NULL, 't' },
        { "rows", required_argument, NULL, 'n' },
        { "batch", required_argument, NULL, 'b' },
        { "workers", required_argument, NULL, 'w' },
        { "wal", no_argument, NULL, OPT_WAL },
        { "no-wal", no_argument, NULL, OPT_NO_WAL },
        { "show", no_argument, NULL, OPT_SHOW },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    *o = (struct options){ .threads = DEFAULT_THREADS, .rows = DEFAULT_ROWS,
                           .batch = DEFAULT_BATCH, .workers = DEFAULT_WORKERS,
                           .journal = JOURNAL_DEFAULT };
    bool wal = false, no_wal = false;
    int c;
    while ((c = getopt_long(argc, argv, "t:n:b:w:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!parse_unsigned(optarg, MAX_THREADS, &o->threads))
                return usage_error("-t wants a number of threads from 1 to 1024");
            break;
        case 'n':
            if (!cli_number(optarg, 2, MAX_ROWS, &o->rows))
                return usage_error("-n wants a number of rows from 2 to 100000000");
            break;
        case 'b':
            if (!parse_unsigned(optarg, MAX_BATCH, &o->batch))
                return usage_error("-b wants a batch size from 1 to 65536");
            break;
        case 'w':
            if (!parse_unsigned(optarg, MAX_WORKERS, &o->workers))
                return usage_error("-w wants a number of workers from 1 to 1024");
            break;
        case OPT_WAL:
            wal = true;
            o->journal = JOURNAL_WAL;
            break;
        case OPT_NO_WAL:
            no_wal = true;
            o->journal = JOURNAL_KEEP;
            break;
        case OPT_SHOW:
            o->show = true;
            break;
        case 'h':
            printf("%s%s", usage_text, help_text);
            return 0;
        default: /* getopt_long has said what was wrong */
            return usage_error(NULL);
        }
    }
    if (argc - optind > 1)
        return usage_error("expected at most one DBFILE");
    o->db_path = optind < argc ? argv[optind] : NULL;
    if (wal && no_wal)
        return usage_error("--wal and --no-wal contradict each other");
    if (o->show && o->db_path == NULL)
        return usage_error("--show needs a DBFILE");
    if (o->db_path != NULL && strcmp(o->db_path, ":memory:") == 0)
        return usage_error("DBFILE must be a file: each worker would get its own :memory:");
    return -1;
}

/* A fresh empty file: SQLite takes an empty file as an empty database. */
static int make_temp_database(struct options *o)
{
    snprintf(o->temp_path, sizeof o->temp_path, "/tmp/batch_insert-XXXXXX");
    int fd = mkstemp(o->temp_path);
    if (fd < 0) {
        fprintf(stderr, "batch_insert: cannot create a file in /tmp: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    o->db_path = o->temp_path;
    o->temporary = true;
    return 0;
}

/* ================================================================== main */

static int run_demo(const struct options *o)
{
    /* The pool first, before any thread of ours exists, and after the
       schema is in place: a worker's first act is to open the database. */
    wp_pool *pool;
    wp_pool_options popts = { .workers = o->workers,
                              .worker_init = open_worker_connection,
                              .worker_init_ctx = (void *)o->db_path };
    int rc = wp_pool_create(&pool, &popts);
    if (rc != 0) {
        fprintf(stderr, "batch_insert: cannot start the worker pool: %s\n", wp_strerror(rc));
        return EXIT_SETUP;
    }
    printf("%lu rows from %u threads, %u workers, database %s\n\n", o->rows, o->threads,
           o->workers, o->db_path);

    /* Here, not in the phases: the done-callbacks that count rows may run
       until wp_pool_destroy() returns. */
    struct row_counts counts[N_PHASES];
    for (int k = 0; k < N_PHASES; k++) {
        atomic_init(&counts[k].settled, 0);
        atomic_init(&counts[k].failed, 0);
    }
    struct phase_result batched, single;
    int setup = run_batched(pool, o, &counts[PHASE_BATCHED], &batched);
    if (setup == 0)
        setup = run_single(pool, o, &counts[PHASE_SINGLE], &single);
    wp_pool_destroy(pool);
    if (setup != 0)
        return EXIT_SETUP;

    double single_rate = rows_per_second(&single);
    printf("batched: %.0f rows/s, one row per task: %.0f rows/s: %.1fx\n\n",
           rows_per_second(&batched), single_rate,
           single_rate > 0 ? rows_per_second(&batched) / single_rate : 0.0);

    bool ok = db_verify(o->db_path, o->rows);
    bool outcomes_ok = batched.t.duplicates == 1 && batched.t.unexpected == 0 &&
                       batched.t.submit_error == 0 && single.t.duplicates == 1 &&
                       single.t.unexpected == 0 && single.t.submit_error == 0;
    if (!outcomes_ok)
        printf("some rows did not come back as expected (see above)\n");
    printf("%s\n", ok && outcomes_ok ? "OK" : "FAILED");
    return ok && outcomes_ok ? 0 : EXIT_MISMATCH;
}

int main(int argc, char **argv)
{
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    if (o.show)
        return db_show(o.db_path) == 0 ? 0 : EXIT_SETUP;
    if (o.db_path == NULL && make_temp_database(&o) != 0)
        return EXIT_SETUP;
    status = db_prepare(o.db_path, o.journal) == 0 ? run_demo(&o) : EXIT_SETUP;
    if (o.temporary)
        db_remove(o.db_path);
    return status;
}
