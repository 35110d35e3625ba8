/* SPDX-License-Identifier: MIT */
/*
 * consumer_mpi.c — the smallest program of libworkerpool-mpi, built
 * against an installed tree (check-installed.sh) and run under
 * mpirun -n 2: rank 0's pool runs one task on rank 1.
 */
#include <stdio.h>
#include <string.h>

#include <workerpool-mpi.h>

static int answer(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    int v = 42;
    return wp_buf_append(out, &v, sizeof v);
}

int main(int argc, char **argv)
{
    int provided, rank, bad = 1;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    wp_pool_options o = { .workers = 1 };
    if (rank != 0) {
        bad = wp_mpi_serve(MPI_COMM_WORLD, 0, &o) != 0;
    } else {
        wp_pool *p;
        wp_future *f;
        if (wp_mpi_pool_create(&p, MPI_COMM_WORLD, 0, &o) == 0) {
            if (wp_submit(p, answer, NULL, 0, NULL, &f) == 0) {
                wp_future_wait(f, -1);
                const int *r = wp_future_result(f, NULL);
                bad = wp_future_state(f) != WP_SUCCEEDED || r == NULL || *r != 42;
                wp_future_release(f);
            }
            wp_pool_destroy(p);
        }
        printf("consumer_mpi: %s\n", bad ? "FAILED" : "ok");
    }
    MPI_Finalize();
    return bad;
}
