/* SPDX-License-Identifier: MIT */
/*
 * batch_insert_phase.c — the two timed phases of the batch_insert demo (see
 * batch_insert.c): THREADS threads each submit their slice of the rows,
 * through the batcher or one wp_submit() per row, and check every outcome;
 * the main thread meanwhile draws the progress line.  Each row's future
 * gets a done-callback that counts it as it settles; every failure is
 * collected and reported after the phase.
 */
#define _POSIX_C_SOURCE 200809L

#include "batch_insert.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "progress.h"

enum {
    MAX_LISTED_FAILURES = 5,
    PROGRESS_TICK_MS = 100, /* how often the main thread redraws while it waits */
    TEXT_MAX = 256
};

/* The one id that appears twice: the last row reuses the first row's id.
   Whichever of the two reaches the table second fails; either way the
   table ends up with ROWS - 1 rows, ids 1 .. ROWS - 1. */
#define DUPLICATE_ID 1

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
    struct row_counts *counts;    /* the progress line's; outlives the pool (see there) */
    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t finished;      /* signalled as each submitting thread ends */
    unsigned running;             /* submitting threads not yet ended */
    failures failed_rows;         /* every failure, planned or not, for the report */
};

struct submitter {
    struct phase *ph;
    unsigned thread;
    size_t first, count;
    struct tally t;
};

/* The done-callback: runs on the pool's dispatcher thread as each row's
   future settles, so it must not block; two atomic adds do not.  Its cost
   is one small allocation per row (the registration), paid by both phases
   alike.  Its ctx is not the phase, which ends when the waits return: a
   callback may run after that (see struct row_counts). */
static void count_settled(wp_future *f, void *ctx)
{
    struct row_counts *c = ctx;
    if (wp_future_error(f) != 0)
        atomic_fetch_add(&c->failed, 1);
    atomic_fetch_add(&c->settled, 1);
}

/* Collected, not printed: a line printed from a thread now would break the
   progress line, and a broken run would print thousands. */
static void record_failure(struct phase *ph, const char *verdict, const struct row *r,
                           const wp_future *f)
{
    int err = wp_future_error(f), code = wp_future_code(f);
    const char *msg = wp_future_message(f);
    /* A task's code is SQLite's, and for a whole batch that failed the
       message is only the pool's "task returned N": name the code too. */
    const char *meaning = err == WP_ETASK ? sqlite3_errstr(code) : wp_strerror(err);
    char name[TEXT_MAX], cause[TEXT_MAX];
    snprintf(name, sizeof name, "row id %" PRId64 " (thread %d, seq %d)", r->id, (int)r->thread,
             (int)r->seq);
    snprintf(cause, sizeof cause, "%s: %s [%s, code %d]", verdict,
             msg[0] != '\0' ? msg : wp_strerror(err), meaning, code);
    pthread_mutex_lock(&ph->lock);
    bool kept = failures_add(&ph->failed_rows, name, cause);
    pthread_mutex_unlock(&ph->lock);
    if (!kept)
        fputs("batch_insert: out of memory: a failure is counted but not listed\n", stderr);
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
        record_failure(ph, "duplicate, as planned", r, f);
        return;
    }
    t->unexpected++;
    record_failure(ph, err == 0 ? "wrong rowid" : "UNEXPECTED", r, f);
}

/* The thread body of both phases: submit every row of the slice, keeping
   each future, wait for all of them, then check every outcome. */
static void submit_and_check(struct submitter *s)
{
    const struct options *o = s->ph->opts;
    wp_future **futures = calloc(s->count ? s->count : 1, sizeof *futures);
    if (futures == NULL) {
        s->t.submit_error = WP_ENOMEM;
        return;
    }
    size_t n = 0;
    for (; n < s->count; n++) {
        struct row r = make_row(o, s->thread, s->first, s->first + n);
        int rc = s->ph->submit(s->ph->target, &r, &futures[n]);
        if (rc == 0)
            rc = wp_future_on_done(futures[n], count_settled, s->ph->counts);
        if (rc != 0) {
            s->t.submit_error = rc;
            n += futures[n] != NULL; /* submitted, only not counted: still waited for */
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
}

static void *submitter_main(void *arg)
{
    struct submitter *s = arg;
    submit_and_check(s);
    pthread_mutex_lock(&s->ph->lock);
    s->ph->running--;
    pthread_cond_signal(&s->ph->finished);
    pthread_mutex_unlock(&s->ph->lock);
    return NULL;
}

/* The main thread's part while the submitters run: redraw the progress
   line every PROGRESS_TICK_MS until the last submitter has ended. */
static void watch_phase(struct phase *ph, progress *bar)
{
    pthread_mutex_lock(&ph->lock);
    while (ph->running > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += PROGRESS_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ph->finished, &ph->lock, &until);
        progress_update(bar, atomic_load(&ph->counts->settled), atomic_load(&ph->counts->failed));
    }
    pthread_mutex_unlock(&ph->lock);
}

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

/* The phase's lock and condition variable; the condition waits on the
   monotonic clock, which a change of the wall clock cannot disturb. */
static int phase_init(struct phase *ph)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&ph->finished, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0 && (rc = pthread_mutex_init(&ph->lock, NULL)) != 0)
        pthread_cond_destroy(&ph->finished);
    return rc == 0 ? 0 : -1;
}

/* Run the submitting threads of one phase and time them from the first
   submit to the last outcome checked.  -1 if the threads could not all be
   started (those that did are still joined). */
static int run_phase(struct phase *ph, wp_pool *pool, struct phase_result *res)
{
    const struct options *o = ph->opts;
    struct submitter *subs = calloc(o->threads, sizeof *subs);
    pthread_t *tids = calloc(o->threads, sizeof *tids);
    if (subs == NULL || tids == NULL || phase_init(ph) != 0) {
        free(subs);
        free(tids);
        fputs("batch_insert: out of memory\n", stderr);
        return -1;
    }
    printf("%s\n", ph->title);
    fflush(stdout); /* before the progress line, on the terminal */
    uint64_t tasks_before = pool_tasks_submitted(pool);
    progress bar;
    progress_start(&bar, "rows", o->rows);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned started = 0;
    int rc = 0;
    for (; started < o->threads; started++) {
        struct submitter *s = &subs[started];
        s->ph = ph;
        s->thread = started;
        thread_slice(o, started, &s->first, &s->count);
        pthread_mutex_lock(&ph->lock);
        ph->running++;
        pthread_mutex_unlock(&ph->lock);
        rc = pthread_create(&tids[started], NULL, submitter_main, s);
        if (rc != 0) {
            pthread_mutex_lock(&ph->lock);
            ph->running--; /* the thread that would have counted itself down */
            pthread_mutex_unlock(&ph->lock);
            fprintf(stderr, "batch_insert: cannot start a thread: %s\n", strerror(rc));
            break;
        }
    }
    watch_phase(ph, &bar);
    *res = (struct phase_result){ 0 };
    for (unsigned i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        add_tally(&res->t, &subs[i].t);
    }
    res->seconds = seconds_since(&start);
    /* The final line from the outcomes checked, which are complete now; the
       callbacks' counts may still be a few rows behind. */
    const struct tally *t = &res->t;
    progress_finish(&bar, t->inserted + t->duplicates + t->unexpected,
                    t->duplicates + t->unexpected);
    res->pool_tasks = pool_tasks_submitted(pool) - tasks_before;
    pthread_mutex_destroy(&ph->lock);
    pthread_cond_destroy(&ph->finished);
    free(subs);
    free(tids);
    return rc == 0 ? 0 : -1;
}

double rows_per_second(const struct phase_result *res)
{
    return res->seconds > 0 ? (double)res->t.inserted / res->seconds : 0.0;
}

static void print_phase(struct phase *ph, const struct phase_result *res)
{
    printf("  %zu rows inserted in %.3f s: %.0f rows/s, %" PRIu64 " pool tasks\n",
           res->t.inserted, res->seconds, rows_per_second(res), res->pool_tasks);
    printf("  failed: %zu duplicate (expected 1), %zu unexpected\n", res->t.duplicates,
           res->t.unexpected);
    if (res->t.submit_error != 0)
        printf("  submitting stopped early: %s\n", wp_strerror(res->t.submit_error));
    failures_print(&ph->failed_rows, stdout, MAX_LISTED_FAILURES);
    failures_free(&ph->failed_rows);
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

int run_batched(wp_pool *pool, const struct options *o, struct row_counts *counts,
                struct phase_result *res)
{
    wp_batcher *b;
    wp_batcher_options bopts = { .max_batch_size = o->batch };
    int rc = wp_batcher_create(&b, pool, insert_batch, &bopts);
    if (rc != 0) {
        fprintf(stderr, "batch_insert: cannot create the batcher: %s\n", wp_strerror(rc));
        return -1;
    }
    char title[TEXT_MAX];
    snprintf(title, sizeof title, "batched: up to %u rows per task and transaction", o->batch);
    struct phase ph = { .title = title, .submit = submit_to_batcher, .target = b, .opts = o,
                        .counts = counts };
    int status = run_phase(&ph, pool, res);
    /* Every item has settled (the threads waited), so this only stops the
       batcher thread; the stats are final. */
    wp_batcher_shutdown(b, -1);
    print_phase(&ph, res);
    print_batcher_stats(b);
    printf("\n");
    wp_batcher_destroy(b);
    return status;
}

int run_single(wp_pool *pool, const struct options *o, struct row_counts *counts,
               struct phase_result *res)
{
    struct phase ph = { .title = "one row per task: each its own transaction",
                        .submit = submit_to_pool, .target = pool, .opts = o,
                        .counts = counts };
    int status = run_phase(&ph, pool, res);
    print_phase(&ph, res);
    printf("\n");
    return status;
}
