/* SPDX-License-Identifier: MIT */
/*
 * batch_insert_db.c — the SQLite side of the batch_insert demo (see
 * batch_insert.c for the whole story).
 *
 * Worker side: worker_init opens one connection per worker process, after
 * the fork, and prepares the inserts; the batch function wraps a batch in
 * one transaction and fails a bad row alone with wp_buf_fail().
 *
 * Main side: the schema and the journal mode are settled before the pool
 * exists, and the tables are counted after it is gone, so no connection is
 * ever open across a fork.  The journal mode is a lasting property of the
 * file: an existing database keeps its own unless --wal is given, and the
 * mode in use is always printed.  Every error names the database file.
 */
#define _POSIX_C_SOURCE 200809L

#include "batch_insert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

enum {
    BUSY_TIMEOUT_MS = 10000,
    SQL_MAX = 512,
    MODE_MAX = 16,    /* "delete", "truncate", "persist", "memory", "wal", "off" */
    SUFFIX_MAX = 16   /* room for "-journal" */
};

const char *const table_name[N_PHASES] = { "batched_rows", "single_rows" };

/* ====================================================== the worker side */

/* One connection per worker process, opened by worker_init after the fork
   and used by every task that worker runs. */
static sqlite3 *worker_db;
static sqlite3_stmt *worker_insert[N_PHASES];

static int prepare_insert(sqlite3 *db, const char *table, sqlite3_stmt **out)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (id, thread, seq, name, amount) VALUES (?1, ?2, ?3, ?4, ?5)", table);
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
}

/* worker_init: runs once in each new worker.  The schema and the journal
   mode are already in the file (the main process set them before the pool
   existed); here only per-connection settings.  The busy timeout is what
   lets two workers take turns at the write lock instead of failing with
   SQLITE_BUSY.  A worker has nowhere to report why it could not start but
   stderr. */
int open_worker_connection(void *ctx)
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
int insert_batch(const wp_item *items, size_t n, wp_buf *const *results)
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

int insert_single(const void *arg, size_t arg_len, wp_buf *result)
{
    return insert_row(worker_insert[PHASE_SINGLE], arg, arg_len, result);
}

/* ========================================================= the main side */

static void db_error(const char *path, sqlite3 *db, int rc)
{
    fprintf(stderr, "batch_insert: %s: %s\n", path,
            db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static sqlite3 *db_open(const char *path, int flags)
{
    sqlite3 *db;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        db_error(path, db, rc);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* The first column of the first row of sql, as text (empty if no row).
   0, or -1 with the error printed. */
static int query_one(sqlite3 *db, const char *path, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        db_error(path, db, 0);
        return -1;
    }
    int rc = sqlite3_step(stmt);
    out[0] = '\0';
    if (rc == SQLITE_ROW) {
        const unsigned char *text = sqlite3_column_text(stmt, 0);
        snprintf(out, cap, "%s", text != NULL ? (const char *)text : "");
    } else if (rc != SQLITE_DONE) {
        db_error(path, db, 0);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Settle the journal mode and say which it is and why.  A database with no
   page yet is new (SQLite takes an empty file as an empty database); only
   such a one gets WAL without --wal.  The mode printed is the one SQLite
   reports after the change, which may not be WAL where WAL cannot work. */
static int settle_journal_mode(sqlite3 *db, const char *path, enum journal_choice choice)
{
    char pages[MODE_MAX], mode[MODE_MAX];
    if (query_one(db, path, "PRAGMA page_count", pages, sizeof pages) != 0 ||
        query_one(db, path, "PRAGMA journal_mode", mode, sizeof mode) != 0)
        return -1;
    bool fresh = strcmp(pages, "0") == 0;
    const char *why;
    if (choice == JOURNAL_WAL || (choice == JOURNAL_DEFAULT && fresh)) {
        if (query_one(db, path, "PRAGMA journal_mode=WAL", mode, sizeof mode) != 0)
            return -1;
        why = choice == JOURNAL_WAL ? "set by --wal" : "new, so set by this demo; --no-wal not to";
    } else {
        why = fresh ? "new, left as SQLite makes it: --no-wal"
                    : "the database's own, kept; --wal to change it";
    }
    printf("database %s: journal mode %s (%s)\n", path, mode, why);
    return 0;
}

/* Done in the main process before the pool exists, and the connection
   closed again: a SQLite connection must never be open across a fork, and
   the fork server is a copy of this process as it is when the pool is
   created.  The journal mode is a property of the file, so it is settled
   once here for every worker's connection. */
int db_prepare(const char *path, enum journal_choice choice)
{
    sqlite3 *db = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (db == NULL)
        return -1;
    int rc = settle_journal_mode(db, path, choice);
    char sql[SQL_MAX] = "";
    for (int k = 0; k < N_PHASES; k++) {
        size_t used = strlen(sql);
        snprintf(sql + used, sizeof sql - used,
                 "DROP TABLE IF EXISTS %s;"
                 "CREATE TABLE %s (id INTEGER PRIMARY KEY, thread INTEGER NOT NULL,"
                 " seq INTEGER NOT NULL, name TEXT NOT NULL, amount REAL NOT NULL);",
                 table_name[k], table_name[k]);
    }
    if (rc == 0 && sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        db_error(path, db, 0);
        rc = -1;
    }
    sqlite3_close(db);
    return rc;
}

/* Count the rows and sum their ids: the count says how many rows made it,
   the sum that they are the right ones (ids 1 .. ROWS - 1, once each). */
static bool verify_table(sqlite3 *db, const char *path, const char *table, unsigned long rows)
{
    char sql[SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT COUNT(*), TOTAL(id) FROM %s", table);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        db_error(path, db, 0);
        return false;
    }
    int64_t count = -1;
    double id_sum = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        count = sqlite3_column_int64(stmt, 0);
        id_sum = sqlite3_column_double(stmt, 1);
    }
    sqlite3_finalize(stmt);
    int64_t want = (int64_t)rows - 1;
    double want_sum = (double)want * (double)(want + 1) / 2.0; /* exact below 2^53 */
    bool ok = count == want && id_sum == want_sum;
    printf("  %-13s %" PRId64 " rows (expected %" PRId64 "), ids %s\n", table, count, want,
           id_sum == want_sum ? "1..ROWS-1 once each" : "NOT 1..ROWS-1");
    return ok;
}

/* After the pool is gone, so every worker connection is closed and this is
   the only one: its close also checkpoints the WAL back into the file. */
bool db_verify(const char *path, unsigned long rows)
{
    sqlite3 *db = db_open(path, SQLITE_OPEN_READWRITE);
    if (db == NULL)
        return false;
    printf("verify (SELECT COUNT(*) in the main process):\n");
    bool ok = true;
    for (int k = 0; k < N_PHASES; k++)
        ok = verify_table(db, path, table_name[k], rows) && ok;
    sqlite3_close(db);
    return ok;
}

/* Read-write without create, though it only reads: as the last connection
   to a WAL database, its close removes the -wal and -shm files that a
   read-only one would leave behind.  (SQLite opens a write-protected file
   read-only by itself.) */
int db_show(const char *path)
{
    sqlite3 *db = db_open(path, SQLITE_OPEN_READWRITE);
    if (db == NULL)
        return -1;
    char value[MODE_MAX];
    int rc = query_one(db, path, "PRAGMA journal_mode", value, sizeof value);
    if (rc == 0)
        printf("journal_mode=%s\n", value);
    for (int k = 0; rc == 0 && k < N_PHASES; k++) {
        char sql[SQL_MAX];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table_name[k]);
        rc = query_one(db, path, sql, value, sizeof value);
        if (rc == 0)
            printf("%s=%s\n", table_name[k], value);
    }
    sqlite3_close(db);
    return rc;
}

void db_remove(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t cap = strlen(path) + SUFFIX_MAX;
        char *name = malloc(cap);
        if (name == NULL)
            return;
        snprintf(name, cap, "%s%s", path, suffixes[i]);
        if (unlink(name) != 0 && errno != ENOENT)
            fprintf(stderr, "batch_insert: cannot remove %s: %s\n", name, strerror(errno));
        free(name);
    }
}
