/* SPDX-License-Identifier: MIT */
/*
 * thumbs_mpi.c — the thumbnails demo's --mpi mode (thumbs_mpi.h): MPI's
 * start and end, rank 0's pool from wp_mpi_pool_create, and wp_mpi_serve
 * on every other rank.  Compiled in every build; the MPI part only where
 * configure found MPI (WP_HAVE_MPI), otherwise --mpi says it is missing.
 */
#include "thumbs_mpi.h"

#include <stdio.h>

#include "cli.h"

#ifdef WP_HAVE_MPI

#include "workerpool-mpi.h"

enum { ROOT_RANK = 0, MIN_RANKS = 2 /* the root and one serving rank */ };

const bool thumbs_mpi_built = true;

/* Every rank but the root: serve, then leave MPI. */
static int serve(int rank, const wp_pool_options *opts)
{
    int rc = wp_mpi_serve(MPI_COMM_WORLD, ROOT_RANK, opts);
    if (rc != 0)
        fprintf(stderr, "thumbnails: rank %d: cannot serve rank %d's pool: %s\n", rank,
                ROOT_RANK, wp_strerror(rc));
    MPI_Finalize();
    return rc == 0 ? 0 : CLI_EXIT_USAGE;
}

int thumbs_mpi_begin(int *argc, char ***argv, const wp_pool_options *opts, wp_pool **pool,
                     unsigned *total)
{
    int provided = MPI_THREAD_SINGLE, rank = 0, size = 0;
    /* SERIALIZED: the pool's relay thread makes MPI calls of its own. */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "thumbnails: --mpi: MPI_Init_thread failed\n");
        return CLI_EXIT_USAGE;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < MIN_RANKS) { /* nobody to serve, so nobody waits for us */
        fprintf(stderr, "thumbnails: --mpi needs ranks to put workers on: run it as "
                        "`mpirun -n 3 thumbnails --mpi ...` (rank 0 drives, the others work)\n");
        MPI_Finalize();
        return CLI_EXIT_USAGE;
    }
    if (rank != ROOT_RANK)
        return serve(rank, opts);
    int rc = wp_mpi_pool_create(pool, MPI_COMM_WORLD, ROOT_RANK, opts);
    if (rc != 0) { /* the serving ranks' wp_mpi_serve fails too: they leave */
        fprintf(stderr, "thumbnails: cannot start the workers on ranks 1-%d: %s%s\n", size - 1,
                wp_strerror(rc),
                provided < MPI_THREAD_SERIALIZED ? " (this MPI offers no MPI_THREAD_SERIALIZED)"
                                                 : "");
        MPI_Finalize();
        return CLI_EXIT_USAGE;
    }
    *total = opts->workers * (unsigned)(size - 1);
    return -1;
}

void thumbs_mpi_end(void)
{
    MPI_Finalize();
}

#else /* no MPI in this build */

const bool thumbs_mpi_built = false;

int thumbs_mpi_begin(int *argc, char ***argv, const wp_pool_options *opts, wp_pool **pool,
                     unsigned *total)
{
    (void)argc;
    (void)argv;
    (void)opts;
    (void)pool;
    (void)total;
    fprintf(stderr, "thumbnails: --mpi: this build has no MPI (configure found none; "
                    "Debian: apt-get install libopenmpi-dev openmpi-bin, then "
                    "./configure --with-mpi)\n");
    return CLI_EXIT_USAGE;
}

void thumbs_mpi_end(void)
{
}

#endif
