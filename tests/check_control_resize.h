/* SPDX-License-Identifier: MIT */
/*
 * check_control_resize.h — what the resize tests of the control suite
 * share (check_control_resize.c defines it): task runs counted in memory
 * shared with every worker, a task that counts its run and says which
 * worker ran it, and a pool whose workers are held while they start.
 */
#ifndef WP_CHECK_CONTROL_RESIZE_H
#define WP_CHECK_CONTROL_RESIZE_H

#include "check_control.h"

enum { RZ_MAX_TASKS = 8 * 400 }; /* the most tasks a test counts (resize_stress) */

/* Shared with every worker: how often each task ran, and when (the order
   of its first run among all tasks). */
typedef struct rz_shared {
    atomic_int seq;
    atomic_int runs[RZ_MAX_TASKS];
    atomic_int order[RZ_MAX_TASKS];
} rz_shared;
extern rz_shared *rz;

/* Map rz before the pool, so that every worker shares it (tu_shared_create:
   under every start method); unmap after the pool is gone. */
void runs_map(void);
void runs_unmap(void);

/* rz_task: counts its run, spins spin_us, answers { index, worker pid }. */
typedef struct rz_arg {
    int index;
    int spin_us;
} rz_arg;
typedef struct rz_result {
    int index;
    int pid;
} rz_result;
int rz_task(const void *arg, size_t len, wp_buf *out);
wp_future *submit_rz(wp_pool *p, int index, int spin_us);
/* Submit rz_task(a) into *f with count_done(calls) as its done-callback:
   0, or what wp_submit or wp_future_on_done said. */
int submit_counted(wp_pool *p, const rz_arg *a, wp_future **f, atomic_int *calls);

/* f, task `index`, succeeded having run exactly once; its worker's pid. */
int check_ran_once(wp_future *f, int index);

/* The pool's workers_alive now. */
unsigned alive_now(wp_pool *p);

/* A pool of `workers` whose every worker, in worker_init, writes its pid
   to g's report FIFO and then waits for a byte at g's gate: it stays
   STARTING until the test lets it go.  Opens g (the caller closes it once
   the pool is gone). */
wp_pool *gated_pool(unsigned workers, tu_hold *g);

#endif
