/* SPDX-License-Identifier: MIT */
/*
 * chaos.h — the machinery of the chaos suite (check_chaos): a page shared
 * with every worker in which worker_init records who the workers are, a
 * task that checks its argument and leaves a mark when it starts, per-task
 * records that count done-callbacks, a killer thread (chaos_killer.c), and
 * the checks that every test ends with (outcomes, stats, descriptors,
 * processes).
 *
 * Why a shared page: the test must know which processes are this pool's
 * workers (to SIGKILL them at random moments without ever hitting anything
 * else) and whether a task had started when its worker died (a task that
 * never started must not fail).  Workers are forked from an image that
 * already holds the mapping, so an anonymous MAP_SHARED page made before
 * wp_pool_create() is seen by the fork server and every worker.
 *
 * Nothing here allocates while the pool may be forking, so the tests stay
 * sound under WP_START_FORK with AddressSanitizer (TU_ASAN in testutil.h):
 * the killer reads /proc with plain system calls, waits are raw waits on
 * futures, done-callbacks only count.
 */
#ifndef WP_CHAOS_H
#define WP_CHAOS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "testutil.h"

#define CHAOS_RING      8192   /* worker records kept (a wrap only loses old pids) */
#define CHAOS_MAX_TASKS 32768  /* tasks one pool of a test may run */
#define CHAOS_GONE_MS   TU_PROMPT_MS /* for processes that must be gone */
#define CHAOS_BAD_ARG   77     /* chaos_task's own failure code: its argument was corrupted */
#define CHAOS_TIMEOUT_S 60     /* Check's per-test timeout: the hang detector */

enum chaos_stage { CHAOS_UNUSED, CHAOS_INIT, CHAOS_READY };

typedef struct chaos_worker {
    atomic_int  pid;
    atomic_int  ppid;
    atomic_int  stage;   /* enum chaos_stage */
    atomic_uint tasks;   /* task functions it entered */
} chaos_worker;

typedef struct chaos_shared {
    atomic_uint  nworkers;       /* workers that entered worker_init */
    atomic_int   go;             /* workers wait in worker_init until it is set ... */
    atomic_uint  free_workers;   /* ... except the first free_workers ones */
    atomic_uint  init_us_max;    /* then spend a random 0..init_us_max µs there */
    chaos_worker w[CHAOS_RING];
    atomic_uchar entered[CHAOS_MAX_TASKS]; /* times each task's function was entered */
} chaos_shared;

/* The shared page of the running test (one at a time), made by
   chaos_shared_open() before the pool; workers inherit the pointer.
   chaos_shared_open also notes the descriptors open (chaos_fds_before),
   to tell a leak at the end. */
extern chaos_shared *chaos_mem;
extern tu_fds chaos_fds_before;

void chaos_shared_open(void);
void chaos_shared_close(void);
/* worker_init for the pools of this suite; ctx unused. */
int  chaos_worker_init(void *ctx);
/* Options for a pool with the test's start method (tu_method) whose
   workers record themselves (and wait for go if hold is set). */
wp_pool_options chaos_pool_options(unsigned workers, bool hold);
/* Wait (without allocating) until n workers have entered worker_init. */
void chaos_wait_forked(unsigned n);
/* The expected parent of this pool's workers: the fork server (learned from
   a worker) or this process. */
int  chaos_worker_parent(void);

/* ------------------------------------------------------------ the task */

/* chaos_task's argument: this header, then `payload` bytes of
   tu_pattern(seed).  It answers `result` bytes of tu_pattern(seed + 1 +
   index), so a result delivered to the wrong future shows. */
typedef struct chaos_arg {
    uint32_t index;    /* its mark in chaos_mem->entered */
    uint32_t seed;
    uint64_t payload;
    uint64_t result;
    uint32_t run_us;   /* time it spends running (asleep) */
    uint32_t pad;
} chaos_arg;

int chaos_task(const void *arg, size_t len, wp_buf *out);

/* A test's view of one task. */
typedef struct chaos_rec {
    wp_future *f;
    uint32_t   index, seed;
    uint64_t   result;
    atomic_int callbacks;   /* done-callbacks run */
    atomic_int cancel_ok;   /* a wp_future_cancel of it returned 0 */
    atomic_int cancel_busy; /* ... returned WP_EBUSY (shielded and running) */
    atomic_int bad_state;   /* a callback saw it unsettled */
} chaos_rec;

/* The index of the task that settled last (done-callbacks set it), for
   tests that aim at the tasks running right now. */
extern atomic_uint chaos_last_settled;

/* Submit chaos_task for rec (arg bytes from `pattern`, which holds at
   least `payload` bytes of tu_pattern(seed)) and register the counting
   done-callback.  Returns wp_submit's code. */
int chaos_submit(wp_pool *p, chaos_rec *rec, uint32_t index, const void *pattern,
                 uint32_t seed, uint64_t payload, uint64_t result, uint32_t run_us,
                 const wp_task_options *opts);
/* The same with a done-callback of the caller's (ctx = rec) and no Check
   calls, for use on the dispatcher thread.  0, wp_submit's code, or
   wp_future_on_done's (rec->f is then set). */
int chaos_submit_with(wp_pool *p, chaos_rec *rec, uint32_t index, const void *pattern,
                      uint32_t seed, uint64_t payload, uint64_t result, uint32_t run_us,
                      const wp_task_options *opts, wp_done_fn done);
/* The done-callback chaos_submit registers: counts, notes the last settled. */
void chaos_count_done(wp_future *f, void *ctx);

/* Outcomes a task may have; chaos_classify says which one it had, or
   CHAOS_BAD with why in `why`. */
enum chaos_outcome {
    CHAOS_SUCCEEDED, CHAOS_KILLED, CHAOS_CANCELLED, CHAOS_NOSPAWN, CHAOS_SHUTDOWN,
    CHAOS_OTHER, CHAOS_BAD, CHAOS_OUTCOMES
};
#define CHAOS_ALLOW(o) (1u << (o))
int chaos_classify(const chaos_rec *r, char *why, size_t size);

/* Tally of a test's records.  A task killed before its function ran is
   "cold" when it was its worker's first (see chaos_settle_check). */
typedef struct chaos_tally {
    unsigned n[CHAOS_OUTCOMES];
    unsigned unentered_kills;  /* CHAOS_KILLED whose function never ran ... */
    unsigned unentered_cold;   /* ... of which on a worker that had run none */
    char     first_bad[256];   /* the first disallowed outcome, described */
} chaos_tally;

/* Wait for every record's future (raw waits, no allocation) until
   deadline_ms; true if all settled. */
bool chaos_wait_all(chaos_rec *recs, unsigned n, int64_t deadline_ms);
/* After the pool has stopped (every callback has run): classify, check the
   exactly-once callbacks and the run-at-most-once marks, release the
   futures.  Fails the test on anything outside `allowed`. */
chaos_tally chaos_settle_check(chaos_rec *recs, unsigned n, unsigned allowed, uint64_t seed,
                               const char *what);
/* Tasks killed before their function ran: none on a worker that had run
   a task before, and only a few on fresh ones (chaos.c says why). */
void chaos_check_unentered(const chaos_tally *t, uint64_t seed, const char *what);
/* Stats add up once everything has settled: every task the tally counts
   was submitted, and its outcome counted; `others` tasks that are not in
   the tally were submitted too and succeeded. */
void chaos_check_stats(wp_pool *p, const chaos_tally *t, unsigned others, uint64_t seed);

/* The test's seed (tu_seed), printed with the test's name and start
   method. */
uint64_t chaos_seed(const char *test);

/* Sleep (without allocating) until *flag is set. */
void chaos_linger(atomic_int *flag);


/*
 * wp_pool_shutdown(pool, grace) — or wp_batcher_shutdown(batcher, grace)
 * if batcher is set — on a thread of its own, once *start is set (at once
 * if start is NULL); and the join that fails the test if it has not
 * returned within CHAOS_SHUTDOWN_MS of the join (every test gets there
 * with its tasks settled or about to: what is left takes milliseconds).
 */
#define CHAOS_SHUTDOWN_MS 10000
typedef struct chaos_shutter {
    wp_pool    *pool;
    wp_batcher *batcher;
    int64_t     grace;
    atomic_int *start;
    int         rc;
    pthread_t   thread;
} chaos_shutter;
void chaos_shutdown_start(chaos_shutter *s);
void chaos_shutdown_join(chaos_shutter *s, uint64_t seed, const char *what);

/* The end of most tests: shut p down (every callback has run), check the
   records and the stats (`others` as for chaos_check_stats), destroy p,
   check nothing is left, close the shared page.  Returns the tally. */
chaos_tally chaos_finish(wp_pool *p, chaos_rec *recs, unsigned n, unsigned allowed, unsigned others,
                         uint64_t seed, const char *what);

/* Every worker recorded in chaos_mem is gone, no child of ours is left
   (reaped or not), and no descriptor is open that was not when
   chaos_shared_open was called. */
void chaos_check_nothing_left(uint64_t seed, const char *what);

/* --------------------------------------------------------- the killer */

enum chaos_kill_mode {
    CHAOS_KILL_ANY,         /* any recorded worker */
    CHAOS_KILL_INIT_FIRST   /* a worker still in worker_init if there is one */
};

typedef struct chaos_killer {
    wp_pool   *pool;
    int        mode;        /* enum chaos_kill_mode */
    int        parent;      /* a victim's parent must be this */
    unsigned   workers;     /* the pool's */
    unsigned   gap_us;      /* random 0..gap_us µs between kills */
    uint64_t   rng;
    atomic_bool stop;
    atomic_uint kills;      /* SIGKILLs sent to live workers */
    pthread_t  thread;
} chaos_killer;

void chaos_killer_start(chaos_killer *k);
unsigned chaos_killer_stop(chaos_killer *k); /* joins; returns the kills */

/* The storm tests (chaos_storm.c), the races of destroy, the batcher and
   done-callbacks (chaos_race.c), the deterministic stopped-worker cases
   (chaos_stopped.c) and the line under kills and resizes
   (chaos_priority.c), added to the suite by check_chaos.c. */
void chaos_add_storm_tests(Suite *s, const tu_suite *def);
void chaos_add_race_tests(Suite *s, const tu_suite *def);
void chaos_add_stopped_tests(Suite *s, const tu_suite *def);
void chaos_add_priority_tests(Suite *s, const tu_suite *def);

#endif
