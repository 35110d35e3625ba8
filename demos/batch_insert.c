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
 * What it shows of the library:
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
 *   - the same rows again with one wp_submit() task per row, each its own
 *     autocommit transaction, for comparison; then wp_batcher_get_stats()
 *     and a row count in the main process to check both tables.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "workerpool.h"

enum {
    DEFAULT_THREADS = 4,
    DEFAULT_ROWS = 20000,
    DEFAULT_BATCH = 64,
    DEFAULT_WORKERS = 2,
    BUSY_TIMEOUT_MS = 10000,
    MAX_LISTED_FAILURES = 5,
    NAME_LEN = 24,
    TEMP_PATH_MAX = 64,
    EXIT_MISMATCH = 1,
    EXIT_SETUP = 2
};

/* The one id that appears twice: the last row reuses the first row's id.
   Whichever of the two reaches the table second fails; either way the
   table ends up with ROWS - 1 rows, ids 1 .. ROWS - 1. */
#define DUPLICATE_ID 1

/* A row failed before SQLite saw it: its bytes are not a struct row. */
#define BAD_ROW_CODE (-1)

/* The two phases write to separate tables, so each can be counted alone and
   neither starts with the other's rows in its indexes. */
enum phase_kind { PHASE_BATCHED, PHASE_SINGLE, N_PHASES };

static const char *const table_name[N_PHASES] = { "batched_rows", "single_rows" };

/* An item as it crosses to the worker: fixed size, no pointers, so the
   bytes can be copied and checked by length alone. */
struct row {
    int64_t id;
    int32_t thread;
    int32_t seq;
    double amount;
    char name[NAME_LEN];
};

/* ====================================================== the worker side */

/* One connection per worker process, opened by worker_init after the fork
   and used by every task that worker runs. */
static sqlite3 *worker_db;
static sqlite3_stmt *worker_insert[N_PHASES];

static int prepare_insert(sqlite3 *db, const char *table, sqlite3_stmt **out)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (id, thread, seq, name, amount) VALUES (?1, ?2, ?3, ?4, ?5)", table);
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
}

/* worker_init: runs once in each new worker.  The schema and WAL mode are
   already in the file (the main process set them before the pool existed);
   here only per-connection settings.  The busy timeout is what lets two
   workers take turns at the write lock instead of failing with SQLITE_BUSY.
   A worker has nowhere to report why it could not start but stderr. */
static int open_worker_connection(void *ctx)
{
    const char *path = ctx;
    int rc = sqlite3_open_v2(path, &worker_db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(worker_db, 1); /* tell a duplicate key from other constraints */
        rc = sqlite3_busy_timeout(worker_db, BUSY_TIMEOUT_MS);
    }
    for (int k = 0; rc == SQLITE_OK && k < N_PHASES; k++)
        rc = prepare_insert(worker_db, table_name[k], &worker_insert[k]);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "batch_insert: worker %ld: %s: %s\n", (long)getpid(), path,
                worker_db != NULL ? sqlite3_errmsg(worker_db) : sqlite3_errstr(rc));
        return 1;
    }
    return 0;
}

/*
 * Insert one row with a prepared statement; the result is its rowid.  A
 * failed insert (a duplicate key...) fails this row's result only: SQLite
 * undoes just the failed statement, so the transaction around it, if any,
 * goes on.  Returns the failure code, which a single-row task passes on and
 * the batch function ignores.
 */
static int insert_row(sqlite3_stmt *stmt, const void *data, size_t len, wp_buf *result)
{
    struct row r;
    if (len != sizeof r)
        return wp_buf_fail(result, BAD_ROW_CODE, "malformed row bytes");
    memcpy(&r, data, sizeof r); /* the item bytes carry no alignment promise for a struct */
    sqlite3_bind_int64(stmt, 1, r.id);
    sqlite3_bind_int(stmt, 2, r.thread);
    sqlite3_bind_int(stmt, 3, r.seq);
    sqlite3_bind_text(stmt, 4, r.name, (int)strnlen(r.name, sizeof r.name), SQLITE_STATIC);
    sqlite3_bind_double(stmt, 5, r.amount);
    int rc = sqlite3_step(stmt);
    int code = 0;
    if (rc == SQLITE_DONE) {
        int64_t rowid = sqlite3_last_insert_rowid(worker_db);
        code = wp_buf_append(result, &rowid, sizeof rowid);
    } else {
        /* Before the reset, which would replace the error message. */
        code = wp_buf_fail(result, sqlite3_extended_errcode(worker_db), sqlite3_errmsg(worker_db));
    }
    sqlite3_reset(stmt);
    return code;
}

/* The batch function: the whole batch is one transaction, so the commit
   cost is paid once per batch.  IMMEDIATE takes the write lock up front; a
   deferred transaction that upgrades later could fail with SQLITE_BUSY
   without the busy timeout ever being consulted.  If BEGIN or COMMIT fails
   no row of the batch is known to be stored, so the batch fails whole; an
   insert error that undoes the whole transaction (disk full, I/O) also
   surfaces there, as a failed COMMIT. */
static int insert_batch(const wp_item *items, size_t n, wp_buf *const *results)
{
    int rc = sqlite3_exec(worker_db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        insert_row(worker_insert[PHASE_BATCHED], items[i].data, items[i].len, results[i]);
    rc = sqlite3_exec(worker_db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        /* Leave the connection clean for the next batch this worker gets. */
        sqlite3_exec(worker_db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return 0;
}

/* The comparison task: one row, SQLite's autocommit makes it one
   transaction. */
static int insert_single(const void *arg, size_t arg_len, wp_buf *result)
{
    return insert_row(worker_insert[PHASE_SINGLE], arg, arg_len, result);
}

/* ========================================================= the main side */

struct options {
    unsigned threads;
    unsigned long rows;
    unsigned batch;
    unsigned workers;
    const char *db_path;
    bool temporary; /* db_path was made here and goes at the end */
    char temp_path[TEMP_PATH_MAX];
};

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Thread t owns rows [first, first + count): contiguous slices, as evenly
   sized as the division allows. */
static void thread_slice(const struct options *o, unsigned t, size_t *first, size_t *count)
{
    size_t lo = (size_t)((uint64_t)o->rows * t / o->threads);
    size_t hi = (size_t)((uint64_t)o->rows * (t + 1) / o->threads);
    *first = lo;
    *count = hi - lo;
}

/* Row `index` (0-based, global) is the same in both phases and on every
   run, so the threads can regenerate it to check its outcome instead of
   keeping it. */
static struct row make_row(const struct options *o, unsigned thread, size_t first, size_t index)
{
    static const char *const words[] = { "alpha", "bravo", "charlie", "delta",
                                         "echo",  "foxtrot", "golf", "hotel" };
    struct row r = { 0 };
    r.id = index == o->rows - 1 ? DUPLICATE_ID : (int64_t)index + 1;
    r.thread = (int32_t)thread;
    r.seq = (int32_t)(index - first);
    r.amount = (double)((index * 7919u) % 100000u) / 100.0;
    snprintf(r.name, sizeof r.name, "%s-%zu", words[index % 8], index);
    return r;
}

/* ---------------------------------------------------------------- phases */

/* How a phase hands one row to the library: the only thing that differs
   between the two phases' submitting threads. */
typedef int (*submit_fn)(void *target, const struct row *r, wp_future **out);

static int submit_to_batcher(void *batcher, const struct row *r, wp_future **out)
{
    return wp_batcher_submit(batcher, r, sizeof *r, out);
}

static int submit_to_pool(void *pool, const struct row *r, wp_future **out)
{
    return wp_submit(pool, insert_single, r, sizeof *r, NULL, out);
}

struct phase {
    const char *title;
    submit_fn submit;
    void *target;
    const struct options *opts;
    atomic_uint listed; /* failure lines printed so far, from any thread */
};

struct tally {
    size_t inserted, duplicates, unexpected;
    int submit_error;
};

struct submitter {
    struct phase *ph;
    unsigned thread;
    size_t first, count;
    struct tally t;
};

/* Failures are printed by the thread that found them, one printf per line
   (stdio locks the stream per call), and only the first few of a phase: a
   broken run would otherwise print thousands. */
static void list_failure(struct phase *ph, const char *verdict, const struct row *r,
                         const wp_future *f)
{
    if (atomic_fetch_add(&ph->listed, 1) >= MAX_LISTED_FAILURES)
        return;
    int err = wp_future_error(f), code = wp_future_code(f);
    const char *msg = wp_future_message(f);
    /* A task's code is SQLite's, and for a whole batch that failed the
       message is only the pool's "task returned N": name the code too. */
    const char *meaning = err == WP_ETASK ? sqlite3_errstr(code) : wp_strerror(err);
    printf("  %s: row id %" PRId64 " (thread %d, seq %d): %s [%s, code %d]\n", verdict, r->id,
           (int)r->thread, (int)r->seq, msg[0] != '\0' ? msg : wp_strerror(err), meaning, code);
}

/* A row should come back as its own id (INTEGER PRIMARY KEY is the rowid),
   except the one duplicate, which must fail with SQLite's primary-key
   error.  Anything else — a whole batch failing, a crash — is unexpected.
   Only the duplicate id's rows can fail as the duplicate; which of the two
   does depends on which commits first. */
static void check_outcome(struct phase *ph, struct tally *t, const struct row *r,
                          const wp_future *f)
{
    int err = wp_future_error(f);
    if (err == 0) {
        size_t len;
        const void *res = wp_future_result(f, &len);
        int64_t rowid = 0;
        if (len == sizeof rowid)
            memcpy(&rowid, res, sizeof rowid);
        if (len == sizeof rowid && rowid == r->id) {
            t->inserted++;
            return;
        }
    } else if (err == WP_ETASK && r->id == DUPLICATE_ID &&
               wp_future_code(f) == SQLITE_CONSTRAINT_PRIMARYKEY) {
        t->duplicates++;
        list_failure(ph, "duplicate, as planned", r, f);
        return;
    }
    t->unexpected++;
    list_failure(ph, err == 0 ? "wrong rowid" : "UNEXPECTED", r, f);
}

/* The thread body of both phases: submit every row of the slice, keeping
   each future, wait for all of them, then check every outcome. */
static void *submit_slice(void *arg)
{
    struct submitter *s = arg;
    const struct options *o = s->ph->opts;
    wp_future **futures = calloc(s->count ? s->count : 1, sizeof *futures);
    if (futures == NULL) {
        s->t.submit_error = WP_ENOMEM;
        return NULL;
    }
    size_t n = 0;
    for (; n < s->count; n++) {
        struct row r = make_row(o, s->thread, s->first, s->first + n);
        int rc = s->ph->submit(s->ph->target, &r, &futures[n]);
        if (rc != 0) {
            s->t.submit_error = rc;
            break;
        }
    }
    if (n > 0 && wp_wait_all(futures, n, -1) != 0)
        s->t.submit_error = WP_EINVAL; /* cannot happen with a full, non-NULL array */
    for (size_t i = 0; i < n; i++) {
        struct row r = make_row(o, s->thread, s->first, s->first + i);
        check_outcome(s->ph, &s->t, &r, futures[i]);
        wp_future_release(futures[i]);
    }
    free(futures);
    return NULL;
}

struct phase_result {
    double seconds;
    uint64_t pool_tasks;
    struct tally t;
};

static void add_tally(struct tally *sum, const struct tally *t)
{
    sum->inserted += t->inserted;
    sum->duplicates += t->duplicates;
    sum->unexpected += t->unexpected;
    if (sum->submit_error == 0)
        sum->submit_error = t->submit_error;
}

static uint64_t pool_tasks_submitted(wp_pool *pool)
{
    wp_pool_stats st;
    return wp_pool_get_stats(pool, &st) == 0 ? st.submitted : 0;
}

/* Run the submitting threads of one phase and time them from the first
   submit to the last outcome checked.  -1 if the threads could not all be
   started (those that did are still joined). */
static int run_phase(struct phase *ph, wp_pool *pool, struct phase_result *res)
{
    const struct options *o = ph->opts;
    struct submitter *subs = calloc(o->threads, sizeof *subs);
    pthread_t *tids = calloc(o->threads, sizeof *tids);
    if (subs == NULL || tids == NULL) {
        free(subs);
        free(tids);
        fputs("batch_insert: out of memory\n", stderr);
        return -1;
    }
    printf("%s\n", ph->title);
    uint64_t tasks_before = pool_tasks_submitted(pool);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned started = 0;
    int rc = 0;
    for (; started < o->threads; started++) {
        struct submitter *s = &subs[started];
        s->ph = ph;
        s->thread = started;
        thread_slice(o, started, &s->first, &s->count);
        rc = pthread_create(&tids[started], NULL, submit_slice, s);
        if (rc != 0) {
            fprintf(stderr, "batch_insert: cannot start a thread: %s\n", strerror(rc));
            break;
        }
    }
    *res = (struct phase_result){ 0 };
    for (unsigned i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        add_tally(&res->t, &subs[i].t);
    }
    res->seconds = seconds_since(&start);
    res->pool_tasks = pool_tasks_submitted(pool) - tasks_before;
    free(subs);
    free(tids);
    return rc == 0 ? 0 : -1;
}

static double rows_per_second(const struct phase_result *res)
{
    return res->seconds > 0 ? (double)res->t.inserted / res->seconds : 0.0;
}

static void print_phase(const struct phase_result *res)
{
    printf("  %zu rows inserted in %.3f s: %.0f rows/s, %" PRIu64 " pool tasks\n",
           res->t.inserted, res->seconds, rows_per_second(res), res->pool_tasks);
    printf("  failed: %zu duplicate (expected 1), %zu unexpected\n", res->t.duplicates,
           res->t.unexpected);
    if (res->t.submit_error != 0)
        printf("  submitting stopped early: %s\n", wp_strerror(res->t.submit_error));
}

/* The wait is submit-to-send: besides max_wait_ms it includes the time
   items queue while every worker is busy with a batch, which is most of it
   when the threads submit faster than SQLite commits. */
static void print_batcher_stats(wp_batcher *b)
{
    wp_batcher_stats st;
    if (wp_batcher_get_stats(b, &st) != 0)
        return;
    printf("  batcher: %" PRIu64 " items in %" PRIu64 " batches, mean batch size %.1f,"
           " mean wait %.0f us (max %" PRIu64 " us)\n",
           st.items, st.batches, st.mean_batch_size, st.mean_wait_us, st.wait_us_max);
}

static int run_batched(wp_pool *pool, const struct options *o, struct phase_result *res)
{
    wp_batcher *b;
    wp_batcher_options bopts = { .max_batch_size = o->batch };
    int rc = wp_batcher_create(&b, pool, insert_batch, &bopts);
    if (rc != 0) {
        fprintf(stderr, "batch_insert: cannot create the batcher: %s\n", wp_strerror(rc));
        return -1;
    }
    char title[96];
    snprintf(title, sizeof title, "batched: up to %u rows per task and transaction", o->batch);
    struct phase ph = { .title = title, .submit = submit_to_batcher, .target = b, .opts = o };
    int status = run_phase(&ph, pool, res);
    /* Every item has settled (the threads waited), so this only stops the
       batcher thread; the stats are final. */
    wp_batcher_shutdown(b, -1);
    print_phase(res);
    print_batcher_stats(b);
    printf("\n");
    wp_batcher_destroy(b);
    return status;
}

static int run_single(wp_pool *pool, const struct options *o, struct phase_result *res)
{
    struct phase ph = { .title = "one row per task: each its own transaction",
                        .submit = submit_to_pool, .target = pool, .opts = o };
    int status = run_phase(&ph, pool, res);
    print_phase(res);
    printf("\n");
    return status;
}

/* ------------------------------------------------------------ the database */

static int exec_all(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "batch_insert: %s\n", err != NULL ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
    }
    return rc;
}

/* Done in the main process before the pool exists, and the connection
   closed again: a SQLite connection must never be open across a fork, and
   the fork server is a copy of this process as it is when the pool is
   created.  WAL is a property of the file, so it is set once here for every
   worker's connection; it lets the workers' commits append to the log while
   readers go on. */
static int prepare_database(const char *path)
{
    sqlite3 *db;
    int rc = sqlite3_open(path, &db);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "batch_insert: %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    char sql[512] = "PRAGMA journal_mode=WAL;";
    for (int k = 0; k < N_PHASES; k++) {
        size_t used = strlen(sql);
        snprintf(sql + used, sizeof sql - used,
                 "DROP TABLE IF EXISTS %s;"
                 "CREATE TABLE %s (id INTEGER PRIMARY KEY, thread INTEGER NOT NULL,"
                 " seq INTEGER NOT NULL, name TEXT NOT NULL, amount REAL NOT NULL);",
                 table_name[k], table_name[k]);
    }
    rc = exec_all(db, sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* Count the rows and sum their ids: the count says how many rows made it,
   the sum that they are the right ones (ids 1 .. ROWS - 1, once each). */
static bool verify_table(sqlite3 *db, const char *table, const struct options *o)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT COUNT(*), TOTAL(id) FROM %s", table);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "batch_insert: %s: %s\n", table, sqlite3_errmsg(db));
        return false;
    }
    int64_t count = -1;
    double id_sum = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        count = sqlite3_column_int64(stmt, 0);
        id_sum = sqlite3_column_double(stmt, 1);
    }
    sqlite3_finalize(stmt);
    int64_t want = (int64_t)o->rows - 1;
    double want_sum = (double)want * (double)(want + 1) / 2.0; /* exact below 2^53 */
    bool ok = count == want && id_sum == want_sum;
    printf("  %-13s %" PRId64 " rows (expected %" PRId64 "), ids %s\n", table, count, want,
           id_sum == want_sum ? "1..ROWS-1 once each" : "NOT 1..ROWS-1");
    return ok;
}

/* After the pool is gone, so every worker connection is closed and this is
   the only one: its close also checkpoints the WAL back into the file. */
static bool verify_database(const struct options *o)
{
    sqlite3 *db;
    if (sqlite3_open_v2(o->db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "batch_insert: %s: %s\n", o->db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return false;
    }
    printf("verify (SELECT COUNT(*) in the main process):\n");
    bool ok = true;
    for (int k = 0; k < N_PHASES; k++)
        ok = verify_table(db, table_name[k], o) && ok;
    sqlite3_close(db);
    return ok;
}

/* Only ever the temporary database, whose name is short. */
static void remove_database(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char name[TEMP_PATH_MAX + 16];
        snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
        if (unlink(name) != 0 && errno != ENOENT)
            fprintf(stderr, "batch_insert: cannot remove %s: %s\n", name, strerror(errno));
    }
}

/* ================================================================ options */

static const char usage_text[] =
    "Usage: batch_insert [-t THREADS] [-n ROWS] [-b BATCH] [-w WORKERS] [DBFILE]\n";

static const char help_text[] =
    "\n"
    "THREADS threads insert ROWS rows into the SQLite database DBFILE through\n"
    "WORKERS worker processes: first through a workerpool batcher (up to BATCH\n"
    "rows per task, one transaction per batch, table batched_rows), then with\n"
    "one task and one transaction per row (table single_rows).  The last row\n"
    "repeats the first row's id on purpose, so in each phase exactly one\n"
    "insert fails; the tables must end up with ROWS - 1 rows.\n"
    "\n"
    "Options:\n"
    "  -t THREADS  submitting threads (default 4)\n"
    "  -n ROWS     rows per phase, at least 2 (default 20000)\n"
    "  -b BATCH    largest batch (default 64)\n"
    "  -w WORKERS  worker processes (default 2)\n"
    "  -h          this text\n"
    "  DBFILE      the database; its tables batched_rows and single_rows are\n"
    "              replaced, and it is kept (default: a temporary file in /tmp,\n"
    "              removed at the end)\n"
    "\n"
    "Exit status: 0 both tables hold the expected rows, 1 they do not (or a\n"
    "row had an unexpected outcome), 2 usage or setup error.\n";

static int usage_error(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "batch_insert: %s\n", why);
    fprintf(stderr, "%sTry 'batch_insert -h'.\n", usage_text);
    return EXIT_SETUP;
}

static bool parse_count(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_unsigned(const char *s, unsigned long max, unsigned *out)
{
    unsigned long v;
    if (!parse_count(s, 1, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

/* Returns -1 to go on, or the exit status to stop with (-h, errors). */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){ .threads = DEFAULT_THREADS, .rows = DEFAULT_ROWS,
                           .batch = DEFAULT_BATCH, .workers = DEFAULT_WORKERS };
    int c;
    while ((c = getopt(argc, argv, "t:n:b:w:h")) != -1) {
        switch (c) {
        case 't':
            if (!parse_unsigned(optarg, 1024, &o->threads))
                return usage_error("-t wants a number of threads from 1 to 1024");
            break;
        case 'n':
            if (!parse_count(optarg, 2, 100000000, &o->rows))
                return usage_error("-n wants a number of rows from 2 to 100000000");
            break;
        case 'b':
            if (!parse_unsigned(optarg, 65536, &o->batch))
                return usage_error("-b wants a batch size from 1 to 65536");
            break;
        case 'w':
            if (!parse_unsigned(optarg, 1024, &o->workers))
                return usage_error("-w wants a number of workers from 1 to 1024");
            break;
        case 'h':
            printf("%s%s", usage_text, help_text);
            return 0;
        default: /* getopt has said what was wrong */
            return usage_error(NULL);
        }
    }
    if (argc - optind > 1)
        return usage_error("expected at most one DBFILE");
    o->db_path = optind < argc ? argv[optind] : NULL;
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

    struct phase_result batched, single;
    int setup = run_batched(pool, o, &batched);
    if (setup == 0)
        setup = run_single(pool, o, &single);
    wp_pool_destroy(pool);
    if (setup != 0)
        return EXIT_SETUP;

    double single_rate = rows_per_second(&single);
    printf("batched: %.0f rows/s, one row per task: %.0f rows/s: %.1fx\n\n",
           rows_per_second(&batched), single_rate,
           single_rate > 0 ? rows_per_second(&batched) / single_rate : 0.0);

    bool ok = verify_database(o);
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
    if (o.db_path == NULL && make_temp_database(&o) != 0)
        return EXIT_SETUP;
    status = prepare_database(o.db_path) == 0 ? run_demo(&o) : EXIT_SETUP;
    if (o.temporary)
        remove_database(o.db_path);
    return status;
}
