/* SPDX-License-Identifier: MIT */
/*
 * check_mpi.h — the MPI suite's shared parts (tests/mpi/check_mpi.c says how
 * it runs: under mpirun, rank 0 runs the Check tests, every other rank
 * serves each pool the tests create).
 */
#ifndef CHECK_MPI_H
#define CHECK_MPI_H

#include <check.h>
#include <stdint.h>

#include "workerpool-mpi.h"

#define MT_DEADLINE_MS 60000 /* no wait of the suite's is longer: a hang fails */

/* What the serving ranks run each pool with (the root broadcasts it). */
enum mt_serve {
    MT_DONE = 0,      /* no more pools: leave */
    MT_PLAIN,         /* wp_mpi_serve without worker_init */
    MT_INIT,          /* with worker_init = mt_worker_init (sets mt_init_mark) */
    MT_INIT_FAILS,    /* with a worker_init that fails */
    MT_INIT_HANGS,    /* with a worker_init that never returns */
    MT_NO_SIGCHLD     /* without worker_init, SIGCHLD ignored while it serves */
};

/* Set by mt_worker_init in a worker of an MT_INIT pool. */
extern int mt_init_mark;
#define MT_INIT_MARK 4242

/* The pool of the running test, made by mt_pool (serving ranks told how to
   serve it) and destroyed by mt_pool_done or, if the test failed first, by
   the fixture.  How many ranks serve it. */
wp_pool *mt_pool(wp_pool_options o, enum mt_serve how);
void     mt_pool_done(void);
/* mt_pool_done, which must not take long (half of MT_DEADLINE_MS): no
   shutdown may wait for a lost message. */
void     mt_pool_done_promptly(void);
int      mt_serving_ranks(void);

/* Tell the serving ranks to serve one pool, how; for tests that call
   wp_mpi_pool_create themselves (and must then make sure the collective
   happens: a call on the root that gets as far as it). */
void mt_serve_next(enum mt_serve how);

/* The rank a worker runs on (its environment says, under Open MPI), -1 if
   unknown. */
int mt_worker_rank(void);

/* Wait for f (MT_DEADLINE_MS at most) and check it settled in state. */
void mt_wait_state(wp_future *f, int state);
/* Wait (MT_DEADLINE_MS at most) until f is running, looking every
   MT_POLL_PAUSE_NS. */
#define MT_POLL_PAUSE_NS 1000000L
void mt_wait_running(wp_future *f);
/* Wait (MT_DEADLINE_MS at most) until p has at least `alive` workers up
   and has started at least `started` in all (READY counts: a replacement
   is started once it is ready, not when the task it replaces settles). */
void mt_wait_workers(wp_pool *p, unsigned alive, uint64_t started);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t mt_now_ms(void);
/* A task whose result is its argument; submit one with the int v. */
int        mt_id_task(const void *arg, size_t len, wp_buf *out);
wp_future *mt_submit_int(wp_pool *p, wp_task_fn fn, int v, const wp_task_options *o);
/* The pool still runs tasks: two per serving rank at once, each answering
   its own argument. */
void mt_still_works(wp_pool *p);

TCase *mt_tasks_tcase(void);
TCase *mt_faults_tcase(void);
TCase *mt_chaos_tcase(void);
TCase *mt_hostile_tcase(void);
TCase *mt_limits_tcase(void);

#endif
