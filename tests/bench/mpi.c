/* SPDX-License-Identifier: MIT */
/*
 * mpi — what putting the workers on other MPI ranks costs: tiny-task
 * throughput and the round trip of one task at a time, on a local pool and
 * on a wp_mpi_pool_create pool with as many workers in all, side by side in
 * one run.  `mpirun -n 3 --oversubscribe tests/bench/mpi [-n N] [-s S]`.
 *
 * Rank 0 holds both pools at once: a local one of W x (ranks - 1) workers
 * (fork server) and an MPI one, W on each other rank (-w W, default 1, so 2
 * workers in all on 3 ranks, the worker count of the other benchmarks);
 * the other ranks only serve (wp_mpi_serve).  Every measurement runs in
 * ROUNDS alternating blocks, local then MPI, so that a change in the
 * machine's load touches both alike:
 *   submit   N empty tasks (the 8-byte task number as argument) from one
 *            thread with wp_submit, at most WINDOW outstanding, the oldest
 *            waited for and released first;
 *   many     the same N through wp_submit_many, BATCH items a call, at
 *            most two calls' worth outstanding;
 *   rtt      S samples of submit → settled of one empty task at a time.
 * tasks/s: all tasks of all blocks of a kind over the time they took.
 * Workers are up and warm before any clock starts.
 *
 * The local pool's fork server is forked after MPI_Init, as wp_mpi_serve
 * forks its own on the serving ranks.  Figures only; the program fails
 * (exit 1) only when a task had a wrong outcome.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "benchutil.h"
#include "workerpool-mpi.h"

#define ROOT            0
#define DEFAULT_TASKS   4000
#define DEFAULT_SAMPLES 1000
#define MAX_TASKS       100000000
#define MAX_PER_RANK    64
#define WINDOW          256
#define BATCH           1024
#define BATCHES_OUTSTANDING 2
#define ROUNDS          4

enum { LOCAL, REMOTE, KINDS };
static const char *const kind_name[KINDS] = { "local", "mpi" };

typedef struct config {
    size_t tasks, samples, per_rank;
} config;

/* The figures of one kind of pool. */
typedef struct figures {
    uint64_t submit_ns, many_ns; /* summed over the rounds */
    uint64_t *rtt_ns;
    size_t nrtt;
} figures;

/* wp_submit of task number i, or die. */
static wp_future *submit_one(wp_pool *pool, uint64_t i)
{
    wp_future *f;
    int rc = wp_submit(pool, bench_empty_task, &i, sizeof i, NULL, &f);
    if (rc != 0)
        bench_die("wp_submit", rc);
    return f;
}

/* Tasks [first, first + n) with wp_submit, a ring of WINDOW outstanding. */
static uint64_t run_submit(wp_pool *pool, uint64_t first, size_t n)
{
    wp_future *ring[WINDOW];
    size_t head = 0, out = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = first; i < first + n; i++) {
        if (out == WINDOW) { /* the oldest goes first */
            wp_future_wait(ring[head], -1);
            bench_expect_release(&ring[head], 1, 0);
            out--;
        }
        ring[head] = submit_one(pool, i);
        head = (head + 1) % WINDOW;
        out++;
    }
    for (head = (head + WINDOW - out) % WINDOW; out > 0; out--, head = (head + 1) % WINDOW) {
        wp_future_wait(ring[head], -1);
        bench_expect_release(&ring[head], 1, 0);
    }
    return bench_now_ns() - t0;
}

/* The same tasks through wp_submit_many, BATCH a call, the calls' futures
   in BATCHES_OUTSTANDING rows used in turn. */
static uint64_t run_many(wp_pool *pool, uint64_t first, size_t n)
{
    static uint64_t values[BATCHES_OUTSTANDING][BATCH];
    static wp_item items[BATCHES_OUTSTANDING][BATCH];
    static wp_future *fs[BATCHES_OUTSTANDING][BATCH];
    size_t count[BATCHES_OUTSTANDING] = { 0 };
    uint64_t t0 = bench_now_ns();
    for (size_t row = 0, done = 0; done < n; row = (row + 1) % BATCHES_OUTSTANDING) {
        if (count[row] > 0) { /* this row's last call */
            bench_wait_all(fs[row], count[row]);
            bench_expect_release(fs[row], count[row], 0);
        }
        size_t k = n - done < BATCH ? n - done : BATCH;
        for (size_t j = 0; j < k; j++) {
            values[row][j] = first + done + j;
            items[row][j] = (wp_item){ .data = &values[row][j], .len = sizeof values[row][j] };
        }
        int rc = wp_submit_many(pool, bench_empty_task, items[row], k, NULL, fs[row], NULL);
        if (rc != 0)
            bench_die("wp_submit_many", rc);
        count[row] = k;
        done += k;
    }
    for (size_t row = 0; row < BATCHES_OUTSTANDING; row++)
        if (count[row] > 0) {
            bench_wait_all(fs[row], count[row]);
            bench_expect_release(fs[row], count[row], 0);
        }
    return bench_now_ns() - t0;
}

/* n round trips of one task at a time, appended to fig's samples. */
static void run_rtt(wp_pool *pool, figures *fig, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        wp_future *f = submit_one(pool, i);
        wp_future_wait(f, -1);
        fig->rtt_ns[fig->nrtt++] = bench_now_ns() - t0;
        bench_expect_release(&f, 1, 0);
    }
}

static double rate(size_t tasks, uint64_t ns)
{
    return (double)tasks * ROUNDS / ((double)ns / 1e9);
}

static void report(const config *cfg, figures fig[KINDS], int ranks)
{
    double submit[KINDS], many[KINDS];
    bench_latency rtt[KINDS];
    for (int k = 0; k < KINDS; k++) {
        char label[64], key[64];
        submit[k] = rate(cfg->tasks, fig[k].submit_ns);
        many[k] = rate(cfg->tasks, fig[k].many_ns);
        printf("%-6s submit tasks/s=%-9.0f many tasks/s=%.0f\n", kind_name[k], submit[k], many[k]);
        bench_resultf(submit[k], "1/s", "mpi_%s_submit_tasks_per_s", kind_name[k]);
        bench_resultf(many[k], "1/s", "mpi_%s_many_tasks_per_s", kind_name[k]);
        snprintf(label, sizeof label, "%s round trip", kind_name[k]);
        snprintf(key, sizeof key, "mpi_%s_rtt", kind_name[k]);
        rtt[k] = bench_report_latency(label, key, fig[k].rtt_ns, fig[k].nrtt);
    }
    char remote[32];
    snprintf(remote, sizeof remote, "MPI pool, ranks 1-%d", ranks - 1);
    printf("\n| %-30s | %10s | %19s | %9s |\n", "", "local pool", remote, "mpi/local");
    const struct { const char *what; double local, mpi; } row[] = {
        { "tasks/s, wp_submit (1 thread)", submit[LOCAL], submit[REMOTE] },
        { "tasks/s, wp_submit_many", many[LOCAL], many[REMOTE] },
        { "round trip p50, us", rtt[LOCAL].p50_us, rtt[REMOTE].p50_us },
        { "round trip p99, us", rtt[LOCAL].p99_us, rtt[REMOTE].p99_us },
    };
    for (size_t i = 0; i < sizeof row / sizeof row[0]; i++)
        printf("| %-30s | %10.1f | %19.1f | %9.3g |\n", row[i].what, row[i].local, row[i].mpi,
               row[i].mpi / row[i].local);
}

/* Rank 0: both pools, the rounds, the table. */
static void measure(const config *cfg, int ranks)
{
    unsigned total = (unsigned)cfg->per_rank * (unsigned)(ranks - 1);
    wp_pool *pool[KINDS];
    pool[LOCAL] = bench_ready_pool(&(wp_pool_options){ .workers = total });
    int rc = wp_mpi_pool_create(&pool[REMOTE], MPI_COMM_WORLD, ROOT,
                                &(wp_pool_options){ .workers = (unsigned)cfg->per_rank });
    if (rc != 0)
        bench_die("wp_mpi_pool_create", rc);
    bench_warm_pool(pool[REMOTE], total);
    figures fig[KINDS] = { { 0 } };
    for (int k = 0; k < KINDS; k++)
        if ((fig[k].rtt_ns = malloc(cfg->samples * sizeof *fig[k].rtt_ns)) == NULL)
            bench_die("malloc", WP_ENOMEM);
    for (size_t r = 0; r < ROUNDS; r++)
        for (int k = 0; k < KINDS; k++) {
            fig[k].submit_ns += run_submit(pool[k], 0, cfg->tasks);
            fig[k].many_ns += run_many(pool[k], 0, cfg->tasks);
            run_rtt(pool[k], &fig[k], cfg->samples * (r + 1) / ROUNDS - cfg->samples * r / ROUNDS);
        }
    wp_pool_destroy(pool[REMOTE]); /* the serving ranks' wp_mpi_serve returns */
    wp_pool_destroy(pool[LOCAL]);
    report(cfg, fig, ranks);
    for (int k = 0; k < KINDS; k++)
        free(fig[k].rtt_ns);
}

static const char usage_text[] =
    "usage: mpirun -n RANKS [--oversubscribe] mpi [-n TASKS] [-s SAMPLES] [-w WORKERS]\n"
    "  -n N   empty tasks per block and kind (default " BENCH_STR(DEFAULT_TASKS) ")\n"
    "  -s N   round-trip samples per kind (default " BENCH_STR(DEFAULT_SAMPLES) ")\n"
    "  -w N   workers on each rank but rank 0 (default 1); the local pool has\n"
    "         as many in all\n";

int main(int argc, char **argv)
{
    config cfg = { .tasks = DEFAULT_TASKS, .samples = DEFAULT_SAMPLES, .per_rank = 1 };
    int provided, rank, ranks;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        bench_die("MPI_Init_thread", WP_EINVAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    bench_name = "mpi";
    const bench_option opts[] = {
        { .letter = 'n', .count = &cfg.tasks, .limit = MAX_TASKS },
        { .letter = 's', .count = &cfg.samples, .limit = MAX_TASKS },
        { .letter = 'w', .count = &cfg.per_rank, .limit = MAX_PER_RANK },
        { 0 },
    };
    bench_parse_args(argc, argv, opts, usage_text); /* every rank alike */
    if (ranks < 2) {
        fprintf(stderr, "mpi: run it under mpirun with 2 ranks or more\n%s", usage_text);
        MPI_Finalize();
        return 2;
    }
    if (cfg.samples < ROUNDS)
        cfg.samples = ROUNDS;
    if (rank == ROOT) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("# mpi: workerpool %s  ranks=%d  workers=%zu per serving rank, %zu in all  "
               "cpus=%ld\n  tasks=%zu per block  window=%d  batch=%d  samples=%zu  rounds=%d\n",
               wp_version_string(), ranks, cfg.per_rank, cfg.per_rank * (size_t)(ranks - 1),
               sysconf(_SC_NPROCESSORS_ONLN), cfg.tasks, WINDOW, BATCH, cfg.samples, ROUNDS);
        measure(&cfg, ranks);
    } else {
        int rc = wp_mpi_serve(MPI_COMM_WORLD, ROOT, &(wp_pool_options){ 0 });
        if (rc != 0)
            bench_die("wp_mpi_serve", rc);
    }
    MPI_Finalize();
    return 0;
}
