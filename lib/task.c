/* SPDX-License-Identifier: MIT */
/*
 * task.c — a task's life outside the worker: its record and future,
 * settling and retries, the cancel stack, and the outcome counters behind
 * wp_pool_get_stats (which is here too).  Where a task waits between
 * attempts is the line's (line.c).
 *
 * All of it runs on the dispatcher thread, except task_cancel (any thread:
 * it only pushes onto the lock-free cancel stack), wp_pool_get_stats and
 * the counters (atomics).
 */
#include "config.h"

#include <assert.h>
#include <stdlib.h>

#include "pool_impl.h"

static int task_cancel(wp_future *f);

static void task_free(wp_future *f)
{
    task *t = (task *)f;
    assert(t->wires == 0);
    if (!t->arg_inline)
        free(t->arg);
    free(t);
}

static void count_settled(wp_pool *p, int state, int error)
{
    if (state == WP_SUCCEEDED)
        atomic_fetch_add(&p->n.succeeded, 1);
    else if (state == WP_CANCELLED)
        atomic_fetch_add(&p->n.cancelled, 1);
    else if (state == WP_FAILED) {
        atomic_fetch_add(&p->n.failed, 1);
        if (error == WP_ETIMEDOUT)
            atomic_fetch_add(&p->n.timed_out, 1);
        else if (error == WP_ECRASHED)
            atomic_fetch_add(&p->n.crashed, 1);
        else if (error == WP_EEXPIRED)
            atomic_fetch_add(&p->n.expired, 1);
    }
}

static void task_settling(wp_future *f, int state, int error)
{
    count_settled(((task *)f)->pool, state, error);
}

const future_ops wp__task_ops = {
    .cancel = task_cancel, .free = task_free, .settling = task_settling,
};

/* Any thread: a snapshot of the counters (pool_impl.h says what it
   promises).  O(1), no lock. */
int wp_pool_get_stats(wp_pool *pool, wp_pool_stats *out)
{
    if (pool == NULL || out == NULL)
        return WP_EINVAL;
    const pool_counters *n = &pool->n;
    *out = (wp_pool_stats){
        .submitted = atomic_load(&n->submitted),
        .succeeded = atomic_load(&n->succeeded),
        .failed = atomic_load(&n->failed),
        .cancelled = atomic_load(&n->cancelled),
        .timed_out = atomic_load(&n->timed_out),
        .crashed = atomic_load(&n->crashed),
        .retried = atomic_load(&n->retried),
        .workers_started = atomic_load(&n->workers_started),
        .workers_recycled = atomic_load(&n->workers_recycled),
        .queued = wp__queue_count(&pool->queue) + atomic_load(&n->held),
        .running = atomic_load(&n->running),
        .workers_alive = atomic_load(&n->alive),
        .expired = atomic_load(&n->expired),
    };
    return 0;
}

void wp__task_drop_arg(task *t)
{
    if (t->wires == 0 && !t->arg_inline) {
        free(t->arg);
        t->arg = NULL;
    }
}

void wp__task_settle(task *t, int error, int code, const char *msg, void *result, size_t len)
{
    assert(t->slot < 0 && !wp__list_linked(&t->held_node) && !t->queued); /* out of every place */
    wp__task_drop_arg(t); /* unless the rest of a frame of it is still being written */
    wp__expiring_forget(t->pool, t);
    wp__future_settle(&t->future, error, code, msg, result, len);
    wp_future_release(&t->future);
}

static bool retryable(int error)
{
    return error == WP_ECRASHED || error == WP_ETIMEDOUT || error == WP_ETASK;
}

/* closing and grace_deadline are read without stop_mu, so a reading
   between a shutdown's two stores may see the new closing with the old
   grace: then it says "not yet", and the kick that follows every
   shutdown brings the dispatcher back to read both again. */
bool wp__grace_over(wp_pool *p, int64_t now_ms)
{
    int64_t grace = atomic_load(&p->grace_deadline);
    return atomic_load(&p->closing) && grace >= 0 && now_ms >= grace;
}

/* Doublings of the retry delay: at most 2^20 (the header says so). */
#define RETRY_DOUBLINGS_MAX 20

void wp__task_finish(wp_pool *p, task *t, int error, int code, const char *msg, void *result,
                     size_t len)
{
    assert(error <= 0 && !wp__list_linked(&t->held_node));
    t->slot = -1;
    if (retryable(error) && t->attempts <= t->opts.retries && !wp__grace_over(p, wp__now_ms()) &&
        wp__future_requeue(&t->future)) {
        free(result);
        atomic_fetch_add(&p->n.retried, 1);
        int64_t delay = wp__backoff(t->opts.retry_delay_ms, t->attempts - 1, RETRY_DOUBLINGS_MAX,
                                    INT64_MAX);
        wp__held_push(p, t, wp__now_ms() + delay);
        return;
    }
    wp__task_settle(t, error, code, msg, result, len);
}

/*
 * Any thread, under f->mu: push a cancel request for the dispatcher.
 *
 * The cancel stack is not a wp_list: it is pushed from any thread with no
 * lock (a done-callback on the dispatcher may cancel, and the dispatcher
 * must never wait for a program thread), and the dispatcher takes it whole
 * with one exchange (wp__handle_cancels).  A singly linked stack is the one
 * list that can be pushed with a compare-and-swap; since nothing ever pops
 * a single entry, a node is never taken out and pushed again while a push
 * is in flight, so there is no ABA problem.  Each task is pushed at most
 * once (cancel_requested, under f->mu) and holds a reference until handled.
 * Ordering: the successful CAS is a release (seq_cst here), so t->cancel_next
 * and the reference are visible to the dispatcher's acquiring exchange.
 */
static int task_cancel(wp_future *f)
{
    task *t = (task *)f;
    if (atomic_load(&f->state) == WP_RUNNING && (t->opts.flags & WP_TASK_SHIELD))
        return WP_EBUSY;
    wp_future_retain(f);
    task *head = atomic_load(&t->pool->cancels);
    do
        t->cancel_next = head; /* a failed CAS reloads head: link again */
    while (!atomic_compare_exchange_weak(&t->pool->cancels, &head, t));
    wp__queue_kick(&t->pool->queue);
    return 0;
}

/* O(1) per request: a task still in the queue is settled now and dropped
   when it comes out (wp__line_drain); one in the line leaves it; one in a window
   is taken back or its worker stopped. */
void wp__handle_cancels(wp_pool *p)
{
    task *t = atomic_exchange(&p->cancels, NULL);
    while (t != NULL) {
        task *next = t->cancel_next;
        if (t->slot >= 0) {
            assert((unsigned)t->slot < p->nslots && !wp__list_linked(&t->held_node));
            wp__stop_task(p, &p->slots[t->slot], t, WP_ECANCELED, "cancelled");
        } else if (wp__list_linked(&t->held_node)) { /* in the line */
            wp__line_remove(p, t);
            wp__task_settle(t, WP_ECANCELED, 0, "cancelled", NULL, 0);
        } else { /* still in the queue: settle now, drop when it comes out */
            wp__future_settle(&t->future, WP_ECANCELED, 0, "cancelled", NULL, 0);
        }
        wp_future_release(&t->future);
        t = next;
    }
}
