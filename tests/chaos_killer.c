/* SPDX-License-Identifier: MIT */
/*
 * chaos_killer.c — the killer thread of the chaos suite: SIGKILLs this
 * pool's workers (as recorded in the shared page) at random moments, using
 * nothing but system calls, so it never allocates while the pool forks.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdbool.h>

#include "chaos.h"

#define REAP_WAIT_MS     200   /* the killer waits this long at most for a victim to go */
#define RECENT_PER_SLOT  2     /* it picks among the last 2 * workers + 1 records */

/* A live, unreaped worker of this pool (its parent is the one expected). */
static bool is_worker(int pid, int parent)
{
    char state;
    int ppid;
    return pid > 0 && tu_proc_stat(pid, &state, &ppid) == 0 && ppid == parent && state != 'Z' &&
           state != 'X';
}

/* A victim among the most recent records: in worker_init first if the mode
   says so, else any.  0 if none. */
static int pick_victim(chaos_killer *k, int *stage)
{
    unsigned n = atomic_load(&chaos_mem->nworkers);
    unsigned recent = RECENT_PER_SLOT * k->workers + 1;
    if (n == 0)
        return 0;
    if (recent > n)
        recent = n;
    if (k->mode == CHAOS_KILL_INIT_FIRST)
        for (unsigned j = 0; j < recent; j++) {
            chaos_worker *w = &chaos_mem->w[(n - 1 - j) % CHAOS_RING];
            int pid = atomic_load(&w->pid);
            if (atomic_load(&w->stage) == CHAOS_INIT && is_worker(pid, k->parent)) {
                *stage = CHAOS_INIT;
                return pid;
            }
        }
    chaos_worker *w = &chaos_mem->w[(n - 1 - tu_rand_below(&k->rng, recent)) % CHAOS_RING];
    int pid = atomic_load(&w->pid);
    *stage = atomic_load(&w->stage);
    return is_worker(pid, k->parent) ? pid : 0;
}

/* Gone from /proc: reaped by whoever reaps it (the pool or the fork server). */
static void wait_reaped(int pid)
{
    char state;
    int ppid;
    int64_t deadline = tu_now_ms() + REAP_WAIT_MS;
    while (tu_proc_stat(pid, &state, &ppid) == 0 && tu_now_ms() < deadline)
        tu_poll_pause();
}

/*
 * Kill a recorded worker at random moments.  Never the last one alive in
 * the pool's view: three start failures in a row with no worker alive is
 * the pool's crash-loop guard, which fails every waiting task with
 * WP_ESPAWN by design, and a killer that takes every fresh worker would be
 * just that.  (A worker still in worker_init is not counted alive; a ready
 * one is.)  After each kill it waits for the victim to be reaped, so the
 * pool's count is fresh for the next decision.
 */
static void *killer_main(void *arg)
{
    chaos_killer *k = arg;
    unsigned kills = 0;
    while (!atomic_load(&k->stop)) {
        tu_sleep_us(tu_rand_below(&k->rng, (uint64_t)k->gap_us + 1));
        int stage = CHAOS_UNUSED;
        int pid = pick_victim(k, &stage);
        wp_pool_stats s;
        if (pid == 0 || wp_pool_get_stats(k->pool, &s) != 0)
            continue;
        if (s.workers_alive < (stage == CHAOS_INIT ? 1u : 2u))
            continue;
        if (kill(pid, SIGKILL) == 0)
            atomic_store(&k->kills, ++kills);
        wait_reaped(pid);
    }
    return NULL;
}

void chaos_killer_start(chaos_killer *k)
{
    atomic_init(&k->stop, false);
    atomic_init(&k->kills, 0);
    ck_assert_int_eq(pthread_create(&k->thread, NULL, killer_main, k), 0);
}

unsigned chaos_killer_stop(chaos_killer *k)
{
    atomic_store(&k->stop, true);
    pthread_join(k->thread, NULL);
    return atomic_load(&k->kills);
}
