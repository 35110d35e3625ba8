/* SPDX-License-Identifier: MIT */
/*
 * resize.c — wp_pool_resize: changing the number of workers of a running
 * pool (docs/ARCHITECTURE.md, "Resizing"; include/workerpool.h says what
 * it promises).
 *
 * Any thread asks: wp_pool_resize stores the size in target and kicks the
 * dispatcher, never waiting for it.  The dispatcher applies the size once
 * per turn, first thing in wp__handle_timers (wp__resize_apply):
 *
 * - growing: the new slots come into use EMPTY, and handle_timers starts
 *   their workers in that same turn;
 * - shrinking: the slots at or past the size retire.  A retiring slot gets
 *   no task (wp__slot_room), is never started again, and its tasks not
 *   started go back to the front of the line, in their order; the head of
 *   its window, running or next, finishes there, with its deadline,
 *   cancel, retries and max_tasks_per_worker as anywhere.  Once its window
 *   is empty its worker is stopped (at its last answer, wp__slot_idle, or
 *   here); a starting worker is first let become ready, so that a shrink
 *   never counts as a failed start.  Once the last slots are EMPTY, nslots
 *   shrinks and the loops over slots with it;
 * - growing again before a retiring worker stopped keeps it: its slot is
 *   wanted again and takes tasks.
 *
 * Slots never move: a slot's index names its claim words in the memory
 * every worker shares, and a task in a window names its slot by index.
 */
#include "config.h"

#include <unistd.h>

#include "pool_impl.h"

/* Why a retired worker went (a slot's kill_how). */
static const char retired_how[] = "was retired by wp_pool_resize";

unsigned wp__online_cpus(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

int wp_pool_resize(wp_pool *pool, unsigned workers)
{
    if (workers == 0)
        workers = wp__online_cpus();
    if (pool == NULL || workers > MAX_WORKERS)
        return WP_EINVAL;
    if (wp__getpid() != pool->owner || atomic_load(&pool->closing))
        return WP_ESHUTDOWN; /* a worker's copy of the pool has no workers */
    /* Room for the descriptors of the workers to come, as wp_pool_create
       makes, when the pool grows past the size asked last: a shrink starts
       no worker that was not asked for already, so it needs none, even
       while workers are still starting.  Those alive hold theirs already,
       and one still starting is counted as needing its own again, so the
       estimate errs on the side of asking for more.  (A resize racing
       this one may change target meanwhile: the last one wins, and the
       budget is an estimate either way.) */
    unsigned alive = atomic_load(&pool->n.alive);
    if (workers > atomic_load(&pool->target) && workers > alive &&
        wp__fd_budget(FDS_PER_WORKER * (workers - alive)) < 0)
        return WP_EINVAL;
    /* Under stop_mu, where wp_pool_shutdown sets closing: a resize that
       returns 0 came before the shutdown began (it is applied, maybe while
       the pool drains); a later one says WP_ESHUTDOWN.  Nothing is taken
       inside stop_mu here, and no holder of it waits for the dispatcher,
       so a done-callback may call this. */
    pthread_mutex_lock(&pool->stop_mu);
    bool closing = atomic_load(&pool->closing);
    if (!closing)
        atomic_store(&pool->target, workers);
    pthread_mutex_unlock(&pool->stop_mu);
    if (closing)
        return WP_ESHUTDOWN;
    wp__queue_kick(&pool->queue);
    return 0;
}

/* Slots [nslots, to) come into use, EMPTY.  The first time a slot does, it
   gets its claim words and an empty frame reader; the rest of a mapped
   slot is zeros (EMPTY, spawn_at 0: handle_timers starts it at once).
   O(slots added). */
static void grow(wp_pool *p, unsigned to)
{
    assert(to <= MAX_WORKERS && p->nslots <= p->slots_made);
    for (unsigned i = p->nslots; i < to; i++) {
        slot *s = &p->slots[i];
        assert(s->state == SLOT_EMPTY && s->count == 0 && s->h.pid == 0);
        if (i >= p->slots_made) {
            s->h = (worker_handle){ .pid = 0, .task_fd = -1, .result_fd = -1, .pidfd = -1 };
            s->shared = &p->shared[i];
            wp__frame_reader_init(&s->in);
        }
        s->pi_read = s->pi_write = s->pi_pid = -1; /* in no poll set yet */
    }
    if (to > p->slots_made)
        p->slots_made = to;
    p->nslots = to;
}

/* The tasks of a retiring slot that have not started go back to the
   front of the line, in their order (as wp__slot_unblock does); the head
   stays.  O(window²) the first time (a steal is O(window)), O(window)
   after: a retiring slot gets no new task. */
static void take_back_waiting(wp_pool *p, slot *s)
{
    task *back[WINDOW_MAX];
    unsigned n = 0;
    task *t;
    while (n < WINDOW_MAX && (t = wp__slot_steal(s)) != NULL)
        back[n++] = t; /* oldest first */
    while (n > 0)
        wp__held_push(p, back[--n], 0);
}

/* A retiring slot, every turn until it is EMPTY. */
static void retire(wp_pool *p, slot *s)
{
    if (s->state != SLOT_IDLE && s->state != SLOT_BUSY)
        return; /* STARTING: stopped once ready (wp__slot_idle); STOPPING, EMPTY: going, gone */
    take_back_waiting(p, s);
    if (s->count == 0) /* idle, or busy with a window that take-backs emptied */
        wp__slot_stop(p, s, true, 0, NULL, retired_how);
}

/* O(slots in use): the retiring ones are scanned every turn until they
   are EMPTY, a few loads each once their windows are taken back.  From
   the last slot down, each putting its tasks in front: the lowest slot's
   end up first, as a round of dispatch deals tasks from slot 0 up (the
   line keeps its order across slots as far as the windows show it,
   exactly so when each holds one task behind its head, as behind a long
   one). */
void wp__resize_apply(wp_pool *p)
{
    unsigned target = atomic_load(&p->target);
    assert(target >= 1 && target <= MAX_WORKERS);
    if (target > p->nslots)
        grow(p, target);
    p->want = target;
    for (unsigned i = p->nslots; i-- > target;)
        retire(p, &p->slots[i]);
    while (p->nslots > target && p->slots[p->nslots - 1].state == SLOT_EMPTY)
        p->nslots--;
}

void wp__slot_idle(wp_pool *p, slot *s)
{
    assert(s->count == 0);
    if (wp__slot_retiring(p, s))
        wp__slot_stop(p, s, true, 0, NULL, retired_how);
    else
        wp__slot_set_state(p, s, SLOT_IDLE);
}
