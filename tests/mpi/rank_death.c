/* SPDX-License-Identifier: MIT */
/*
 * rank_death.c — what happens when a whole serving rank dies
 * (tests/mpi/rank_death.sh runs it under mpirun -n 3 and judges the end).
 * The root keeps tasks running on every serving rank; one task, on the
 * last rank, SIGKILLs that rank's process itself (its worker's
 * grandparent: worker -> fork server -> rank).  Open MPI must then end
 * the whole job with a message naming the rank — never hang — and the
 * dead rank's fork server and workers must go too (they watch their
 * owner).  If the job somehow survives, the root prints how the pool's
 * tasks ended and exits 0, which the script takes as a failure too:
 * "the job ends with a clear error" is the documented behaviour.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workerpool-mpi.h"

#define TASKS   200
#define NAP_MS  20

/* The parent of process pid, from /proc/pid/stat; 0 if unknown. */
static pid_t parent_of(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *close_paren = strrchr(line, ')'); /* the name may hold anything */
    int ppid = 0;
    if (close_paren == NULL || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

/* On the rank named by *arg, kill the rank; elsewhere nap and succeed. */
static int task(const void *arg, size_t len, wp_buf *out)
{
    int victim = 0;
    if (len == sizeof victim)
        memcpy(&victim, arg, sizeof victim);
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (r != NULL && atoi(r) == victim) {
        pid_t rank = parent_of(getppid());
        if (rank > 1)
            kill(rank, SIGKILL);
    }
    struct timespec t = { 0, NAP_MS * 1000000L };
    nanosleep(&t, NULL);
    return wp_buf_append(out, "k", 1);
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    wp_pool_options o = { .workers = 1 };
    if (rank != 0) {
        int rc = wp_mpi_serve(MPI_COMM_WORLD, 0, &o);
        MPI_Finalize();
        return rc != 0;
    }
    wp_pool *p;
    if (wp_mpi_pool_create(&p, MPI_COMM_WORLD, 0, &o) != 0)
        MPI_Abort(MPI_COMM_WORLD, 2);
    int victim = size - 1;
    wp_future *f[TASKS];
    for (int i = 0; i < TASKS; i++)
        if (wp_submit(p, task, &victim, sizeof victim, NULL, &f[i]) != 0)
            MPI_Abort(MPI_COMM_WORLD, 2);
    int ok = 0, failed = 0;
    for (int i = 0; i < TASKS; i++) {
        wp_future_wait(f[i], -1);
        if (wp_future_state(f[i]) == WP_SUCCEEDED)
            ok++;
        else
            failed++;
        wp_future_release(f[i]);
    }
    printf("rank_death: the job survived: %d tasks succeeded, %d failed\n", ok, failed);
    wp_pool_destroy(p);
    MPI_Finalize();
    return 0;
}
