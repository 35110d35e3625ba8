/* SPDX-License-Identifier: MIT */
/*
 * workerpool-mpi.h — workers on other machines, over MPI (libworkerpool-mpi;
 * pkg-config workerpool-mpi).  Built only where configure found MPI; the
 * core library never depends on it.
 *
 * Every rank runs the same program (mpirun -n N prog, srun prog).  On the
 * root rank wp_mpi_pool_create() gives an ordinary wp_pool: submit, wait,
 * cancel, the batcher and the stats are those of workerpool.h.  Its workers
 * live on the other ranks, opts->workers on each; each of those ranks
 * calls wp_mpi_serve(), which starts a local fork server and the workers,
 * carries their traffic, and returns once the root's pool has shut down
 * (wp_pool_shutdown, or wp_pool_destroy).
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
 *     int rank;
 *     MPI_Comm_rank(MPI_COMM_WORLD, &rank);
 *     wp_pool_options o = { .workers = 4 };     // four on every other rank
 *     if (rank == 0) {
 *         wp_pool *pool;
 *         if (wp_mpi_pool_create(&pool, MPI_COMM_WORLD, 0, &o) == 0) {
 *             ... wp_submit(pool, task, ...) ...
 *             wp_pool_destroy(pool);           // the other ranks' serve returns
 *         }
 *     } else {
 *         wp_mpi_serve(MPI_COMM_WORLD, 0, &o);
 *     }
 *     MPI_Finalize();
 *
 * What crosses MPI: each task's frame (its function, as a place in its
 * object, and its argument), each answer (result or failure), and control
 * messages (start a worker, kill it, it exited how).  The workers'
 * supervision is the pool's, with the same meaning as on one machine:
 * deadlines, cancel, retries, crash reports naming the signal, recycling
 * (max_tasks_per_worker, worker_rss_limit) and the stats.  The differences:
 *   - a task is started as it is sent to its worker's rank, so a worker
 *     holds one task at a time and a sent task cannot be taken back:
 *     cancelling it kills its worker (as cancelling a running task does);
 *     priorities order what waits on the root;
 *   - queue_timeout_ms counts until the task is sent;
 *   - task functions are found as under WP_START_EXEC: by their place in
 *     their object (the executable or a shared library), which must be the
 *     same file (same build ID) on every machine; worker_init and
 *     worker_init_ctx are each rank's own (wp_mpi_serve's opts);
 *   - a pid in a message is the worker's pid on its own machine.
 *
 * Threads: on the root one relay thread, started by wp_mpi_pool_create and
 * joined by wp_pool_destroy, makes every MPI call of the pool, so MPI must
 * be initialised with at least MPI_THREAD_SERIALIZED there, and the program
 * must not call MPI on the pool's communicator meanwhile (with
 * MPI_THREAD_SERIALIZED, not at all until wp_pool_destroy returns).  On a
 * serving rank wp_mpi_serve makes its calls on the calling thread: any
 * thread level will do.  MPI_THREAD_MULTIPLE is never needed.
 *
 * A whole rank that dies: Open MPI ends the job (mpirun reports which rank
 * and why, and kills the others; every fork server, seeing its owner go,
 * takes its workers down), so nothing hangs.  An MPI set up to let a job
 * outlive a lost rank is not supported: the root's relay would wait for
 * the dead rank's messages, and wp_pool_destroy with it.
 */
#ifndef WORKERPOOL_MPI_H
#define WORKERPOOL_MPI_H

#include <mpi.h>

#include "workerpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * On rank `root` of comm: create *out, a pool whose workers are
 * opts->workers on each other rank of comm (0 = the root machine's online
 * CPUs, for each).  Collective over comm: every other rank calls
 * wp_mpi_serve(comm, root, ...) at the same time.  opts as for
 * wp_pool_create, but start_method, worker_init and worker_init_ctx are
 * the serving ranks' business.  Returns 0, or:
 *   WP_EINVAL at once, starting nothing, when MPI is not initialised, comm
 *     is MPI_COMM_NULL or has one rank, or this is not rank root (the
 *     serving ranks then go on waiting: a program error);
 *   WP_EINVAL (out NULL, MPI below MPI_THREAD_SERIALIZED, bad opts, more
 *     than 1024 workers in all), WP_ENOMEM, WP_ESPAWN (the relay thread or
 *     its socket could not be made) after telling the serving ranks, whose
 *     wp_mpi_serve returns the same code.
 */
WP_EXTERN int wp_mpi_pool_create(wp_pool **out, MPI_Comm comm, int root, const wp_pool_options *opts);

/*
 * On every rank of comm but root: serve the root's pool — a fork server
 * and its workers here, each running worker_init(worker_init_ctx) of opts
 * (NULL = none; the other fields of opts are ignored: the root's apply).
 * Returns 0 once the root's pool has shut down (every worker here has been
 * killed and reaped); WP_EINVAL at once when MPI is not initialised, comm
 * is MPI_COMM_NULL or has one rank, or this is rank root; the code the
 * root's wp_mpi_pool_create returned when it failed after the collective
 * began (WP_EINVAL, WP_ENOMEM, WP_ESPAWN); WP_EPROTO when the root is not
 * this library's.  Out of memory here, where the root would wait forever,
 * it ends the job (MPI_Abort, saying why).  When the fork server cannot
 * start, no worker starts on this rank (the pool counts failed starts);
 * the root's tasks run on the other ranks, and fail WP_ESPAWN only when no
 * worker can start anywhere.  When it dies (a task can kill it), its
 * workers die with it and are reported so — their tasks fail WP_ECRASHED —
 * and no worker starts on this rank again while this pool lives.
 */
WP_EXTERN int wp_mpi_serve(MPI_Comm comm, int root, const wp_pool_options *opts);

#ifdef __cplusplus
}
#endif

#endif
