/* SPDX-License-Identifier: MIT */
/*
 * thumbs_mpi.h — the thumbnails demo's --mpi mode: the same run with its
 * workers on the other ranks of an MPI job (libworkerpool-mpi), kept out
 * of thumbnails.c so that the driver reads the same with or without MPI.
 *
 * Under `mpirun -n N thumbnails --mpi ...` rank 0 is the driver: it walks
 * the tree, submits and reports exactly as a local run does, through a
 * pool whose workers live on ranks 1 .. N-1.  Every other rank only serves
 * that pool and exits.  Built without MPI, --mpi fails with a message.
 */
#ifndef THUMBS_MPI_H
#define THUMBS_MPI_H

#include <stdbool.h>

#include "workerpool.h"

/* Whether this build has MPI (configure found it). */
extern const bool thumbs_mpi_built;

/* Initialises MPI (MPI_THREAD_SERIALIZED).  On rank 0: creates *pool, its
   workers opts->workers (> 0) on each other rank, sets *total to their number
   and returns -1 (go on; call thumbs_mpi_end after wp_pool_destroy).  On
   any other rank: serves rank 0's pool until it is destroyed, finalises
   MPI and returns the exit status, 0 when all went well.  On a failure
   (no MPI in this build, one rank alone, a refused pool) it says why on
   stderr and returns CLI_EXIT_USAGE. */
int thumbs_mpi_begin(int *argc, char ***argv, const wp_pool_options *opts, wp_pool **pool,
                     unsigned *total);

/* On rank 0, once the pool is destroyed: finalises MPI. */
void thumbs_mpi_end(void);

#endif
