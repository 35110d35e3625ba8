/* SPDX-License-Identifier: MIT */
/*
 * check_chaos.c — adversarial tests: SIGKILL at every point of a worker's
 * life and of the fork server's (here), the same moments made
 * deterministic with SIGSTOP (chaos_stopped.c), storms of cancels and
 * shutdowns (chaos_storm.c), races of destroy, the batcher and
 * done-callbacks (chaos_race.c), and the line's priorities, queue
 * deadlines and retries under kills and resizes (chaos_priority.c).  The
 * bug class: a pool that loses, doubles or misreports a task when a
 * process dies at an awkward moment (pebble#163, CPython bpo-22393), or
 * hangs or touches freed memory when its own calls race.
 *
 * Every test runs under both start methods (WP_TEST_BOTH) and
 * asserts: every future settles exactly once (counted done-callbacks), with
 * an outcome its situation allows (a task killed while it runs fails
 * WP_ECRASHED by SIGKILL; one that had not started runs elsewhere and
 * succeeds, with the right bytes; none runs twice), the stats add up, and
 * afterwards no descriptor, process or (under ASan) memory is left.
 *
 * Randomised: each test prints its seed; WP_TEST_SEED=<seed> replays it
 * (as far as thread timing allows).  Sizes are for the plain build and are
 * divided by TU_ASAN_SLOWDOWN or TU_TSAN_SLOWDOWN under those sanitizers
 * (tu_scaled), so the suite stays within its share of CI time (about 15 s
 * per build on 2 cores); WP_TEST_SCALE=<percent> makes a longer soak.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chaos.h"

#define KILL_WORKERS    4          /* room for the killer to leave one alive */
#define KIB             ((uint64_t)1 << 10)
#define MIB             ((uint64_t)1 << 20)
#define PHASE_DEADLINE_MS 50000    /* under Check's 60 s: a lost future fails, not times out */
#define PATTERN_SEED    11u
#define KILLER_SALT     0x5bd1e995u

/* One way of killing: what the tasks look like, how the workers start and
   retire, and how often the killer strikes. */
typedef struct kill_phase {
    const char *name;
    unsigned tasks;                    /* plain build */
    uint64_t payload_min, payload_max; /* argument bytes */
    uint64_t result_min, result_max;   /* result bytes */
    uint32_t run_us_max;               /* time a task runs */
    unsigned init_us_max;              /* time worker_init takes */
    unsigned max_tasks_per_worker;
    unsigned gap_us;                   /* between kills, at most */
    int      mode;                     /* enum chaos_kill_mode */
} kill_phase;

static const kill_phase phases[] = {
    /* The pool's write of a 256 KiB - 4 MiB frame is in progress (pipes
       hold 1 MiB): the task has not started and must run elsewhere. */
    { "task_frame", 64, 256 * KIB, 4 * MIB, 8, 64, 0, 0, 0, 2000, CHAOS_KILL_ANY },
    /* The worker's write of a large result is in progress. */
    { "result_frame", 64, 8, 64, 256 * KIB, 4 * MIB, 0, 0, 0, 2000, CHAOS_KILL_ANY },
    /* Small tasks back to back, one pipelined behind each: kills land
       between claim and run, between result and next claim. */
    { "claim", 16000, 8, 256, 8, 256, 40, 0, 0, 100, CHAOS_KILL_ANY },
    /* Slow worker_init: kills land before READY. */
    { "ready", 5000, 8, 256, 8, 256, 20, 2000, 0, 200, CHAOS_KILL_INIT_FIRST },
    /* Workers retire every 3 tasks: kills land during recycling. */
    { "recycle", 5000, 8, 256, 8, 256, 20, 0, 3, 100, CHAOS_KILL_ANY },
};

static uint64_t rand_between(uint64_t *rng, uint64_t lo, uint64_t hi)
{
    return lo + tu_rand_below(rng, hi - lo + 1);
}

/*
 * Workers are held in worker_init until every task is queued, so nothing
 * the test does allocates while the pool forks (TU_ASAN); the killer and
 * the waits allocate nothing either.
 */
static void run_kill_phase(const kill_phase *ph)
{
    uint64_t seed = chaos_seed(ph->name), rng = seed;
    unsigned n = tu_scaled(ph->tasks);
    chaos_shared_open();
    atomic_store(&chaos_mem->init_us_max, ph->init_us_max);
    wp_pool_options o = chaos_pool_options(KILL_WORKERS, true);
    o.queue_capacity = n;
    o.max_tasks_per_worker = ph->max_tasks_per_worker;
    wp_pool *p = tu_pool_create(o);
    chaos_wait_forked(KILL_WORKERS);

    char *pattern = malloc(ph->payload_max);
    chaos_rec *recs = calloc(n, sizeof *recs);
    ck_assert_ptr_nonnull(pattern);
    ck_assert_ptr_nonnull(recs);
    tu_pattern(pattern, ph->payload_max, PATTERN_SEED);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(chaos_submit(p, &recs[i], i, pattern, PATTERN_SEED,
                                      rand_between(&rng, ph->payload_min, ph->payload_max),
                                      rand_between(&rng, ph->result_min, ph->result_max),
                                      (uint32_t)tu_rand_below(&rng, ph->run_us_max + 1), NULL),
                         0);
    chaos_killer k = { .pool = p, .mode = ph->mode, .parent = chaos_worker_parent(),
                       .workers = KILL_WORKERS, .gap_us = ph->gap_us * tu_slowdown(),
                       .rng = seed ^ KILLER_SALT };
    chaos_killer_start(&k);
    atomic_store(&chaos_mem->go, 1);
    bool all = chaos_wait_all(recs, n, tu_now_ms() + PHASE_DEADLINE_MS);
    unsigned kills = chaos_killer_stop(&k);
    ck_assert_msg(all, "%s (seed %llu): not every future settled", ph->name, (unsigned long long)seed);
    chaos_tally t = chaos_finish(p, recs, n, CHAOS_ALLOW(CHAOS_SUCCEEDED) | CHAOS_ALLOW(CHAOS_KILLED),
                                 0, seed, ph->name);
    free(recs);
    free(pattern);
    fprintf(stderr, "check_chaos: %s: %u tasks, %u kills, %u crashed (%u before the task started, "
            "%u of them a fresh worker's first)\n", ph->name, n, kills, t.n[CHAOS_KILLED],
            t.unentered_kills, t.unentered_cold);
    ck_assert_msg(t.n[CHAOS_KILLED] <= kills, "%s (seed %llu): %u crashed tasks from %u kills",
                  ph->name, (unsigned long long)seed, t.n[CHAOS_KILLED], kills);
    chaos_check_unentered(&t, seed, ph->name);
}

WP_TEST_BOTH(kill_task_frame) { run_kill_phase(&phases[0]); }
WP_TEST_BOTH(kill_result_frame) { run_kill_phase(&phases[1]); }
WP_TEST_BOTH(kill_claim) { run_kill_phase(&phases[2]); }
WP_TEST_BOTH(kill_ready) { run_kill_phase(&phases[3]); }
WP_TEST_BOTH(kill_recycle) { run_kill_phase(&phases[4]); }

/* ------------------------------------------------------ the fork server */

#define FS_ROUNDS       30
#define FS_WORKERS      2
#define FS_TASKS        24
#define FS_PROBES       3
#define FS_PAYLOAD_MAX  (64 * KIB)
#define FS_RUN_US_MAX   500
#define FS_KILL_US_MAX  4000       /* the kill comes 0..4 ms after the pool is made */
#define FS_SHUTDOWN_ONE_IN 4       /* rounds that shut down while the kill may land */

typedef struct fs_killer {
    int       fs;
    uint64_t  delay_us;
    bool      killed;
    pthread_t thread;
} fs_killer;

static void *fs_killer_main(void *arg)
{
    fs_killer *k = arg;
    tu_sleep_us(k->delay_us);
    char state;
    int ppid;
    /* Only while it is still our unreaped child: its pid cannot be reused. */
    if (tu_proc_stat(k->fs, &state, &ppid) == 0 && ppid == (int)getpid() && state != 'Z')
        k->killed = kill(k->fs, SIGKILL) == 0;
    return NULL;
}

/* After the fork server died: tasks can no longer succeed, and once the
   pool has given up starting workers they fail WP_ESPAWN. */
static void probe_dead_pool(wp_pool *p, int fs, uint64_t seed)
{
    ck_assert_msg(tu_wait_exited(fs, CHAOS_GONE_MS),
                  "seed %llu: the killed fork server is still there", (unsigned long long)seed);
    int last = 0;
    for (int i = 0; i < FS_PROBES; i++) {
        wp_future *f = NULL;
        ck_assert_int_eq(wp_submit(p, tu_echo, "x", 1, NULL, &f), 0);
        ck_assert_msg(wp_future_wait(f, TU_DEADLINE_MS) == 0, "seed %llu: a task after the fork "
                      "server died never settled", (unsigned long long)seed);
        last = wp_future_error(f);
        ck_assert_msg(last == WP_ESPAWN || last == WP_ECRASHED, "seed %llu: a task after the fork "
                      "server died: %s", (unsigned long long)seed, wp_strerror(last));
        wp_future_release(f);
    }
    ck_assert_msg(last == WP_ESPAWN, "seed %llu: the pool never gave up starting workers: %s",
                  (unsigned long long)seed, wp_strerror(last));
}

static void kill_forkserver_round(uint64_t seed, uint64_t *rng, const char *pattern)
{
    chaos_shared_open();
    wp_pool *p = tu_pool_create(chaos_pool_options(FS_WORKERS, false));
    fs_killer k = { .delay_us = tu_rand_below(rng, FS_KILL_US_MAX + 1) };
    ck_assert_uint_eq(tu_children((int)getpid(), &k.fs, 1), 1); /* the fork server alone */
    ck_assert_int_eq(pthread_create(&k.thread, NULL, fs_killer_main, &k), 0);

    chaos_rec recs[FS_TASKS];
    memset(recs, 0, sizeof recs);
    unsigned n = FS_TASKS;
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(chaos_submit(p, &recs[i], i, pattern, PATTERN_SEED,
                                      rand_between(rng, 8, FS_PAYLOAD_MAX),
                                      rand_between(rng, 8, FS_PAYLOAD_MAX),
                                      (uint32_t)tu_rand_below(rng, FS_RUN_US_MAX + 1), NULL),
                         0);
    unsigned allowed = CHAOS_ALLOW(CHAOS_SUCCEEDED) | CHAOS_ALLOW(CHAOS_KILLED) |
                       CHAOS_ALLOW(CHAOS_NOSPAWN);
    bool racing_shutdown = tu_rand_below(rng, FS_SHUTDOWN_ONE_IN) == 0;
    if (racing_shutdown) {
        static const int64_t graces[] = { -1, 0, 2 };
        ck_assert_int_eq(wp_pool_shutdown(p, graces[tu_rand_below(rng, sizeof graces / sizeof graces[0])]),
                         0);
        allowed |= CHAOS_ALLOW(CHAOS_CANCELLED);
    }
    ck_assert_msg(chaos_wait_all(recs, n, tu_now_ms() + PHASE_DEADLINE_MS),
                  "seed %llu: not every future settled", (unsigned long long)seed);
    pthread_join(k.thread, NULL);
    if (k.killed && !racing_shutdown)
        probe_dead_pool(p, k.fs, seed);
    chaos_shutter sh = { .pool = p, .grace = -1 };
    chaos_shutdown_start(&sh);
    chaos_shutdown_join(&sh, seed, "kill_forkserver");
    chaos_tally t = chaos_settle_check(recs, n, allowed, seed, "kill_forkserver");
    chaos_check_unentered(&t, seed, "kill_forkserver");
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, s.succeeded + s.failed + s.cancelled);
    ck_assert_uint_eq(s.succeeded, t.n[CHAOS_SUCCEEDED]);
    wp_pool_destroy(p);
    ck_assert_msg(!tu_pid_alive(k.fs), "seed %llu: the fork server %d was not reaped",
                  (unsigned long long)seed, k.fs);
    chaos_check_nothing_left(seed, "kill_forkserver");
    chaos_shared_close();
}

WP_TEST_BOTH(kill_forkserver)
{
    /* Under WP_START_FORK there is no fork server to kill. */
    if (tu_method != WP_START_FORKSERVER)
        return;
    uint64_t seed = chaos_seed("kill_forkserver"), rng = seed;
    char *pattern = malloc(FS_PAYLOAD_MAX);
    ck_assert_ptr_nonnull(pattern);
    tu_pattern(pattern, FS_PAYLOAD_MAX, PATTERN_SEED);
    unsigned rounds = tu_scaled(FS_ROUNDS);
    for (unsigned r = 0; r < rounds; r++)
        kill_forkserver_round(seed, &rng, pattern);
    free(pattern);
}

/*
 * The fork server killed while the pool's requests to start workers are
 * still unread: the pool's next read of the socket fails (ECONNRESET, not
 * end-of-file), and must only tell the pool that the server is gone —
 * not close descriptors the pool or the program own, nor crash.
 */
#define PENDING_ROUNDS   20
#define PENDING_WORKERS  256 /* requests the server cannot have read when it dies */

WP_TEST_BOTH(kill_forkserver_pending)
{
    if (tu_method != WP_START_FORKSERVER)
        return;
    static tu_fds before; /* large: not on the stack */
    tu_fds_snapshot(&before);
    unsigned rounds = tu_scaled(PENDING_ROUNDS);
    for (unsigned r = 0; r < rounds; r++) {
        wp_pool *p = tu_pool_create((wp_pool_options){ .workers = PENDING_WORKERS });
        tu_wait_workers(p, 1, 1);
        int fs;
        ck_assert_uint_eq(tu_children((int)getpid(), &fs, 1), 1);
        ck_assert_int_eq(kill(fs, SIGKILL), 0);
        wp_future *f = NULL;
        ck_assert_int_eq(wp_submit(p, tu_echo, "x", 1, NULL, &f), 0);
        ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
        wp_future_release(f);
        wp_pool_destroy(p);
        int fd = -1, gone = tu_fds_gone(&before, &fd);
        ck_assert_msg(gone == 0, "round %u: %d of the test's descriptors were closed under it "
                      "(the first: %d)", r, gone, fd);
        char what[TU_FD_TARGET] = "";
        ck_assert_msg(tu_fds_new(&before, &fd, what, sizeof what) == 0, "round %u: descriptor %d "
                      "(%s) left open", r, fd, what);
    }
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "chaos", .timeout_s = CHAOS_TIMEOUT_S, .fork_only = true };
    const tu_test tests[] = {
        TU_TEST(kill_task_frame),
        TU_TEST(kill_result_frame),
        TU_TEST(kill_claim),
        TU_TEST(kill_ready),
        TU_TEST(kill_recycle),
        TU_TEST(kill_forkserver),
        TU_TEST(kill_forkserver_pending),
    };
    Suite *s = suite_create(suite.name);
    tu_add_tests(s, &suite, tests, TU_COUNT(tests));
    chaos_add_stopped_tests(s, &suite);
    chaos_add_storm_tests(s, &suite);
    chaos_add_race_tests(s, &suite);
    chaos_add_priority_tests(s, &suite);
    return tu_run_suite(s, suite.fork);
}
