/* SPDX-License-Identifier: MIT */
/*
 * worker_init — per-worker state, set up once in each worker process and
 * used by every task that worker runs: worker_init builds a sieve of
 * Eratosthenes, tasks count primes in ranges with it and say how many
 * tasks their worker has run so far.
 *
 * worker_init runs in the worker before its first task, with
 * worker_init_ctx, which must point to memory present in the worker's image
 * (a static, or anything set up before the pool was created).  Non-zero
 * means the worker failed to start (retried with backoff; tasks fail with
 * WP_ESPAWN if none can start).  Workers inherit no descriptors: files and
 * connections that tasks need are opened here too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <workerpool.h>

#define LIMIT     1000000   /* primes below this ... */
#define PRIMES    78498     /* ... are this many */
#define TASKS     100       /* ranges of LIMIT / TASKS numbers each */

struct config {
    uint32_t limit;
};

struct answer {
    uint32_t served;    /* tasks this worker has run, this one included */
    uint32_t primes;    /* primes in the range */
};

/* Per-worker state: every worker process has its own copy, gone when the
   worker exits. */
static unsigned char *composite;   /* composite[i] != 0: i is not prime */
static uint32_t sieve_limit, served;

/* Runs once in each new worker. */
static int build_sieve(void *ctx)
{
    const struct config *cfg = ctx;
    composite = calloc(cfg->limit, 1);
    if (composite == NULL)
        return 1;                   /* this worker failed to start */
    composite[0] = composite[1] = 1;
    for (uint32_t i = 2; (uint64_t)i * i < cfg->limit; i++)
        if (!composite[i])
            for (uint32_t k = i * i; k < cfg->limit; k += i)
                composite[k] = 1;
    sieve_limit = cfg->limit;
    return 0;
}

/* Runs in a worker: count the primes in [lo, hi) with the worker's sieve. */
static int count_primes(const void *arg, size_t len, wp_buf *result)
{
    uint32_t range[2];
    if (len != sizeof range)
        return wp_buf_fail(result, 1, "bad range");
    memcpy(range, arg, sizeof range);
    if (composite == NULL || range[1] > sieve_limit || range[0] > range[1])
        return wp_buf_fail(result, 2, "range outside the sieve");
    struct answer a = { .served = ++served, .primes = 0 };
    for (uint32_t i = range[0]; i < range[1]; i++)
        a.primes += !composite[i];
    return wp_buf_append(result, &a, sizeof a);
}

int main(void)
{
    static const struct config cfg = { LIMIT };
    wp_pool_options opts = {
        .workers = 2,
        .worker_init = build_sieve,
        .worker_init_ctx = (void *)&cfg,    /* static: present in every worker */
    };
    wp_pool *pool;
    int rc = wp_pool_create(&pool, &opts);
    if (rc != 0) {
        fprintf(stderr, "wp_pool_create: %s\n", wp_strerror(rc));
        return EXIT_FAILURE;
    }

    wp_future *fs[TASKS] = { NULL };
    int ok = 1;
    for (uint32_t t = 0; t < TASKS; t++) {
        uint32_t range[2] = { t * (LIMIT / TASKS), (t + 1) * (LIMIT / TASKS) };
        rc = wp_submit(pool, count_primes, range, sizeof range, NULL, &fs[t]);
        if (rc != 0) {
            fprintf(stderr, "wp_submit: %s\n", wp_strerror(rc));
            ok = 0;
        }
    }

    uint32_t primes = 0, most_served = 0;
    for (size_t t = 0; t < TASKS; t++) {
        if (fs[t] == NULL)
            continue;
        wp_future_wait(fs[t], -1);
        size_t len;
        const struct answer *a = wp_future_result(fs[t], &len);
        if (a != NULL && len == sizeof *a) {
            primes += a->primes;
            most_served = a->served > most_served ? a->served : most_served;
        } else {
            fprintf(stderr, "task %zu: %s: %s\n", t, wp_strerror(wp_future_error(fs[t])),
                    wp_future_message(fs[t]));
            ok = 0;
        }
        wp_future_release(fs[t]);
    }
    wp_pool_destroy(pool);

    printf("%u primes below %d; the busiest worker ran %u of the %d tasks on one sieve\n",
           (unsigned)primes, LIMIT, (unsigned)most_served, TASKS);
    return ok && primes == PRIMES ? EXIT_SUCCESS : EXIT_FAILURE;
}
