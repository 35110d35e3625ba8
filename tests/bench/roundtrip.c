/* SPDX-License-Identifier: MIT */
/*
 * roundtrip — one task at a time: how long submit → settled takes for an
 * empty task, next to what the hardware allows, a raw round trip between
 * two processes over a pair of pipes, measured in the same run.
 *
 *   pool   a pool of 2 workers (fork server start unless --fork), warm:
 *          submit one empty task, wait for it, release it, repeat.
 *   pipe   this program forks a child before the pool exists; the parent
 *          writes one 48-byte frame (as big as the pool's frame for a task
 *          with an 8-byte argument: a 40-byte header and the argument) to
 *          the child over one pipe, the child reads it and writes 48 bytes
 *          back over another, the parent reads them: one sample.  Blocking
 *          reads and writes, nothing else.
 * The samples are taken in ROUNDS alternating blocks (pipe, pool, pipe,
 * pool, ...) so that a change in the machine's load touches both sides
 * alike; then p50 / p99 / max of each and the ratios pool ÷ pipe.
 *
 * Usage: roundtrip [--fork] [--quick] [-n SAMPLES]
 * tests/bench/run-peers.sh runs it beside the reference pipe_rtt and
 * Python's ProcessPoolExecutor doing the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

#define DEFAULT_SAMPLES 20000
#define QUICK_SAMPLES   2000
#define MAX_SAMPLES     10000000
#define ROUNDS          4
#define WARMUP_DIVISOR  20 /* a twentieth as many warm-up rounds as samples */
#define FRAME_BYTES     48

/* The raw ping-pong partner: a child process and the pipe ends to it. */
typedef struct partner {
    pid_t pid;
    int to_child, from_child;
} partner;

/* Moves exactly len bytes; dies on an error or an early end. */
static void write_all(int fd, const unsigned char *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno != EINTR)
            bench_die("write", errno);
        done += n > 0 ? (size_t)n : 0;
    }
}

static int read_all(int fd, unsigned char *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = read(fd, buf + done, len - done);
        if (n == 0 || (n < 0 && errno != EINTR))
            return -1;
        done += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

static _Noreturn void partner_main(int in, int out)
{
    unsigned char frame[FRAME_BYTES];
    while (read_all(in, frame, sizeof frame) == 0) {
        frame[0] ^= 1; /* an answer, not an echo of the same bytes */
        write_all(out, frame, sizeof frame);
    }
    _exit(0);
}

static partner partner_start(void)
{
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        bench_die("pipe", errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", errno);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        partner_main(down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    return (partner){ .pid = pid, .to_child = down[1], .from_child = up[0] };
}

/* The pool's processes may hold copies of the pipe ends (the fork server
   was forked after them), so the child is stopped by a signal, not EOF. */
static void partner_stop(partner *p)
{
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(p->to_child);
    close(p->from_child);
}

static uint64_t sample_pipe(void *ctx)
{
    partner *p = ctx;
    unsigned char frame[FRAME_BYTES] = { 0 };
    uint64_t t0 = bench_now_ns();
    write_all(p->to_child, frame, sizeof frame);
    if (read_all(p->from_child, frame, sizeof frame) != 0)
        bench_die("read from the ping-pong child", EPIPE);
    return bench_now_ns() - t0;
}

static uint64_t sample_pool(void *ctx)
{
    wp_pool *pool = ctx;
    wp_future *f;
    uint64_t t0 = bench_now_ns();
    int rc = wp_submit(pool, bench_empty_task, NULL, 0, NULL, &f);
    if (rc != 0)
        bench_die("wp_submit", rc);
    wp_future_wait(f, -1);
    uint64_t ns = bench_now_ns() - t0;
    bench_expect(f, 0);
    wp_future_release(f);
    return ns;
}

/* Appends n samples to ns[*have ...). */
static void take(uint64_t (*sample)(void *), void *ctx, uint64_t *ns, size_t *have, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ns[(*have)++] = sample(ctx);
}

static const char usage_text[] =
    "usage: roundtrip [--fork] [--quick] [-n SAMPLES]\n"
    "  --fork    WP_START_FORK (default: the fork server)\n"
    "  -n N      samples of each kind (default " BENCH_STR(DEFAULT_SAMPLES)
    "; --quick " BENCH_STR(QUICK_SAMPLES) ")\n";

int main(int argc, char **argv)
{
    int quick = 0;
    size_t samples = 0;
    const bench_option opts[] = {
        { .name = "quick", .flag = &quick },
        { .letter = 'n', .count = &samples, .limit = MAX_SAMPLES },
        { 0 },
    };
    int start_method = bench_begin("roundtrip", argc, argv, opts, usage_text);
    if (samples == 0)
        samples = quick ? QUICK_SAMPLES : DEFAULT_SAMPLES;
    if (samples < ROUNDS)
        samples = ROUNDS;
    printf("  samples=%zu  frame=%d bytes  rounds=%d\n", samples, FRAME_BYTES, ROUNDS);

    partner child = partner_start(); /* before any thread exists */
    wp_pool_options o = { .workers = BENCH_WORKERS, .start_method = start_method };
    wp_pool *pool = bench_ready_pool(&o);
    uint64_t *pipe_ns = malloc(samples * sizeof *pipe_ns);
    uint64_t *pool_ns = malloc(samples * sizeof *pool_ns);
    uint64_t *discard = malloc((samples / WARMUP_DIVISOR + 1) * sizeof *discard);
    if (pipe_ns == NULL || pool_ns == NULL || discard == NULL)
        bench_die("malloc", WP_ENOMEM);
    size_t warm = 0, npipe = 0, npool = 0;
    take(sample_pipe, &child, discard, &warm, samples / WARMUP_DIVISOR);
    warm = 0;
    take(sample_pool, pool, discard, &warm, samples / WARMUP_DIVISOR);
    for (size_t r = 0; r < ROUNDS; r++) {
        size_t n = samples * (r + 1) / ROUNDS - samples * r / ROUNDS;
        take(sample_pipe, &child, pipe_ns, &npipe, n);
        take(sample_pool, pool, pool_ns, &npool, n);
    }
    wp_pool_destroy(pool);
    partner_stop(&child);

    bench_latency raw = bench_report_latency("pipe 48-byte frames", "roundtrip_rawpipe",
                                             pipe_ns, npipe);
    bench_latency wp = bench_report_latency("pool empty task", "roundtrip_pool", pool_ns, npool);
    printf("ratio pool/pipe        p50=%.2f  p99=%.2f\n", wp.p50_us / raw.p50_us,
           wp.p99_us / raw.p99_us);
    bench_result("roundtrip_ratio_p50_pool_over_rawpipe", wp.p50_us / raw.p50_us, "x");
    bench_result("roundtrip_ratio_p99_pool_over_rawpipe", wp.p99_us / raw.p99_us, "x");
    free(pipe_ns);
    free(pool_ns);
    free(discard);
    return 0;
}
