/* SPDX-License-Identifier: MIT */
/*
 * batch_insert.h — what the two halves of the batch_insert demo share:
 * batch_insert.c is the workerpool side (threads, batcher, futures, the
 * progress line), batch_insert_db.c the SQLite side (each worker's
 * connection and inserts, and the main process's setup and checks).
 */
#ifndef DEMO_BATCH_INSERT_H
#define DEMO_BATCH_INSERT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

enum { NAME_LEN = 24 };

/* A row failed before SQLite saw it: its bytes are not a struct row. */
#define BAD_ROW_CODE (-1)

/* The two phases write to separate tables, so each can be counted alone and
   neither starts with the other's rows in its indexes. */
enum phase_kind { PHASE_BATCHED, PHASE_SINGLE, N_PHASES };

extern const char *const table_name[N_PHASES];

/* An item as it crosses to the worker: fixed size, no pointers, so the
   bytes can be copied and checked by length alone. */
struct row {
    int64_t id;
    int32_t thread;
    int32_t seq;
    double amount;
    char name[NAME_LEN];
};

/* ---- worker side (runs in the worker processes) */

/* wp_pool_options.worker_init; ctx is the database path. */
int open_worker_connection(void *ctx);
/* The batcher's batch function: one transaction per batch. */
int insert_batch(const wp_item *items, size_t n, wp_buf *const *results);
/* The comparison task: one row, one autocommit transaction. */
int insert_single(const void *arg, size_t arg_len, wp_buf *result);

/* ---- main side (before the pool exists and after it is gone) */

/* What to do with the database's journal mode. */
enum journal_choice {
    JOURNAL_DEFAULT, /* a new (empty) database gets WAL; an existing one is left alone */
    JOURNAL_WAL,     /* --wal: WAL in any case */
    JOURNAL_KEEP     /* --no-wal: never change it */
};

/* Open or create the database, settle its journal mode as `choice` says,
   print the mode in use and why, and (re)create the two tables.  Every
   error names the file.  0 or -1. */
int db_prepare(const char *path, enum journal_choice choice);

/* Check that each table holds ids 1 .. rows - 1 once each, printing one
   line per table.  True if both do. */
bool db_verify(const char *path, unsigned long rows);

/* --show: print the journal mode and the row count of each table, one
   `key=value` line each (read-only; never creates the file).  0 or -1. */
int db_show(const char *path);

/* Remove a database and the files SQLite keeps beside it. */
void db_remove(const char *path);

/* ---- the phases (batch_insert_phase.c) */

enum { TEMP_PATH_MAX = 64 };

struct options {
    unsigned threads;
    unsigned long rows;
    unsigned batch;
    unsigned workers;
    enum journal_choice journal;
    bool show;      /* --show: only print what the database holds */
    const char *db_path;
    bool temporary; /* db_path was made here and goes at the end */
    char temp_path[TEMP_PATH_MAX];
};

/* What became of one phase's rows. */
struct tally {
    size_t inserted, duplicates, unexpected;
    int submit_error; /* the first submit error, or 0 */
};

struct phase_result {
    double seconds;      /* first submit to last outcome checked */
    uint64_t pool_tasks; /* tasks the pool ran for this phase */
    struct tally t;
};

/* One phase's rows settled and failed, counted by a done-callback per row
   for the progress line.  A done-callback may still be running after every
   wait on its future has returned (waiters wake first, then callbacks
   run), so what it writes must outlive the pool, not only the phase: only
   wp_pool_destroy() (which joins the dispatcher thread) ends them all. */
struct row_counts {
    atomic_ulong settled, failed;
};

/* Each runs one phase on pool, prints its report, and returns 0, or -1 if
   it could not run at all (what it did is still in *res). */
int run_batched(wp_pool *pool, const struct options *o, struct row_counts *counts,
                struct phase_result *res);
int run_single(wp_pool *pool, const struct options *o, struct row_counts *counts,
               struct phase_result *res);
double rows_per_second(const struct phase_result *res);

#endif
