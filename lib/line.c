/* SPDX-License-Identifier: MIT */
/*
 * line.c — the line: every task that waits for a worker, out of the queue
 * and in no window, and the queue deadlines (docs/ARCHITECTURE.md,
 * "Priorities and queue deadlines").
 *
 * Why a line beside the queue: the queue is one lock-free ring in submit
 * order, so a task of high priority can sit behind thousands of low ones.
 * The dispatcher therefore takes everything out of the ring every turn
 * (wp__line_drain) into one list per priority level, giving each task its
 * place (seq) as it comes out; the tasks still count against the queue's
 * capacity until they start or settle, so back-pressure is unchanged.
 * Submitting stays lock-free; only the dispatcher touches the lists.
 *
 * Tasks that were on their way to a worker and came back (taken back from
 * a window, or waiting for a retry) are held, again one list per level,
 * kept in seq order: they are ahead of every task of their level that was
 * never sent, which came out of the queue after them.
 *
 * Queue deadlines: a task with one is also in a min-heap by its deadline
 * (holding a reference) until it settles, so the dispatcher can settle it
 * WP_EEXPIRED when the deadline comes, wherever it waits, without looking
 * at every task; a task that settles first leaves the heap at once.
 * Tasks met past their deadline on the way out of the line are settled
 * too, and the worker itself refuses a task it reaches too late (worker.c),
 * so a task never starts after its deadline, even by a little.
 *
 * Costs: a drain is O(1) per task, plus O(log n) for one with a queue
 * deadline (n: deadlines pending), and O(log n) again when it settles.  Taking the next task is O(LEVELS) plus
 * the held tasks passed over because their retry is not due yet (few: see
 * wp__held_push).  Holding a task is O(held tasks of its level ahead of
 * it): taken-back tasks go in newest first, each near the front.
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "pool_impl.h"

#define EXPIRING_FIRST_CAP 64 /* heap entries at first use; doubled when full */

void wp__line_init(wp_pool *p)
{
    for (unsigned l = 0; l < LEVELS; l++) {
        wp__list_init(&p->line[l]);
        wp__list_init(&p->held[l]);
    }
}

/* ------------------------------------------------------- the deadline heap */

static void heap_set(task **h, size_t i, task *t)
{
    h[i] = t;
    t->expiring_at = i;
}

static void heap_swap(task **h, size_t a, size_t b)
{
    task *x = h[a];
    heap_set(h, a, h[b]);
    heap_set(h, b, x);
}

static void sift_up(task **h, size_t i)
{
    while (i > 0 && h[(i - 1) / 2]->expire_us > h[i]->expire_us) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(task **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l]->expire_us < h[m]->expire_us)
            m = l;
        if (r < n && h[r]->expire_us < h[m]->expire_us)
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

/* O(log n).  Without memory for the heap the task still never starts past
   its deadline (the line and the worker check it), it is only settled
   later, when it reaches the front. */
static void heap_push(wp_pool *p, task *t)
{
    assert(t->expiring_at == NOT_EXPIRING);
    if (p->expiring_n == p->expiring_cap) {
        size_t cap = p->expiring_cap > 0 ? p->expiring_cap * 2 : EXPIRING_FIRST_CAP;
        task **h = realloc(p->expiring, cap * sizeof *h);
        if (h == NULL)
            return;
        p->expiring = h;
        p->expiring_cap = cap;
    }
    wp_future_retain(&t->future);
    size_t i = p->expiring_n++;
    heap_set(p->expiring, i, t);
    sift_up(p->expiring, i);
}

/* Task t out of the heap, wherever it is in it (its reference is the
   caller's now).  O(log n): the last entry takes its place and moves up or
   down from there. */
static task *heap_remove(wp_pool *p, task *t)
{
    size_t i = t->expiring_at;
    assert(i < p->expiring_n && p->expiring[i] == t);
    task **h = p->expiring;
    size_t last = --p->expiring_n;
    if (i != last) {
        task *moved = h[last];
        heap_set(h, i, moved);
        sift_up(h, i);
        sift_down(h, p->expiring_n, moved->expiring_at);
    }
    t->expiring_at = NOT_EXPIRING;
    return t;
}

/* A task that settles leaves the heap at once: the heap's reference would
   otherwise keep its record and result alive until its deadline, which
   may be hours away.  O(log n). */
void wp__expiring_forget(wp_pool *p, task *t)
{
    if (t->expiring_at != NOT_EXPIRING)
        wp_future_release(&heap_remove(p, t)->future);
}

void wp__line_fini(wp_pool *p)
{
    while (p->expiring_n > 0)
        wp_future_release(&heap_remove(p, p->expiring[0])->future);
    free(p->expiring);
    p->expiring = NULL;
    p->expiring_cap = 0;
}

int64_t wp__expire_next_us(const wp_pool *p)
{
    return p->expiring_n > 0 ? p->expiring[0]->expire_us : -1;
}

/* ---------------------------------------------------------------- the line */

void wp__line_drain(wp_pool *p)
{
    /* First the ranks, then the items: queue.h says why. */
    (void)wp__queue_take_ranks(&p->queue);
    task *t;
    while ((t = wp__queue_take(&p->queue)) != NULL) {
        assert(t->queued && t->slot < 0 && !wp__list_linked(&t->held_node));
        if (wp_future_state(&t->future) != WP_PENDING) { /* cancelled in the queue */
            t->queued = false;
            wp__queue_release(&p->queue);
            wp__task_settle(t, WP_ECANCELED, 0, "cancelled", NULL, 0);
            continue;
        }
        t->seq = ++p->seq;
        wp__list_push_back(&p->line[t->level], &t->held_node);
        if (t->expire_us > 0)
            heap_push(p, t);
    }
}

void wp__held_push(wp_pool *p, task *t, int64_t due_ms)
{
    assert(!wp__list_linked(&t->held_node) && !t->queued); /* in one place at a time */
    t->due_ms = due_ms;
    t->slot = -1;
    wp_list *head = &p->held[t->level], *at = head;
    WP_LIST_FOREACH(node, head) {
        if (wp__task_before(t, WP_LIST_ENTRY(node, task, held_node))) {
            at = node;
            break;
        }
    }
    wp__list_link_between(&t->held_node, at->prev, at); /* before `at`, or last */
    atomic_fetch_add(&p->n.held, 1);
}

void wp__line_remove(wp_pool *p, task *t)
{
    assert(wp__list_linked(&t->held_node) && t->slot < 0);
    wp__list_remove(&t->held_node);
    if (t->queued) {
        t->queued = false;
        wp__queue_release(&p->queue);
    } else {
        atomic_fetch_sub(&p->n.held, 1);
    }
}

/* The first held task of level l due by now_ms, or NULL.  O(held tasks of
   the level passed over, whose retry is not due). */
static task *first_due(wp_pool *p, unsigned l, int64_t now_ms)
{
    WP_LIST_FOREACH(node, &p->held[l]) {
        task *t = WP_LIST_ENTRY(node, task, held_node);
        if (t->due_ms <= now_ms)
            return t;
    }
    return NULL;
}

/* Never started, and its queue deadline has passed.  A task whose attempt
   started once (a retry) has started: its deadline no longer applies. */
static bool expired(const task *t, int64_t now_us)
{
    return t->expire_us > 0 && t->attempts == 0 && now_us >= t->expire_us;
}

/* Highest level first; in a level, held tasks (they came out of the queue
   earlier) before those never sent. */
static task *front(wp_pool *p, int64_t now_ms)
{
    for (unsigned l = LEVELS; l-- > 0;) {
        task *t = first_due(p, l, now_ms);
        if (t == NULL && !wp__list_empty(&p->line[l]))
            t = WP_LIST_ENTRY(wp__list_first(&p->line[l]), task, held_node);
        if (t != NULL)
            return t;
    }
    return NULL;
}

static void expired_message(const task *t, char *msg, size_t size)
{
    snprintf(msg, size, "expired before it started: not started within %lld ms of its submit",
             (long long)t->opts.queue_timeout_ms);
}

void wp__task_expire(task *t)
{
    char msg[WP_MSG_MAX];
    expired_message(t, msg, sizeof msg);
    wp__task_settle(t, WP_EEXPIRED, 0, msg, NULL, 0);
}

task *wp__line_peek(wp_pool *p, int64_t now_ms)
{
    int64_t now_us = wp__now_us();
    task *t;
    while ((t = front(p, now_ms)) != NULL && expired(t, now_us)) {
        wp__line_remove(p, t);
        wp__task_expire(t);
    }
    return t;
}

task *wp__next_task(wp_pool *p, int64_t now_ms)
{
    task *t = wp__line_peek(p, now_ms);
    if (t != NULL)
        wp__line_remove(p, t);
    return t;
}

int64_t wp__held_next_due_ms(wp_pool *p, int64_t after_ms)
{
    int64_t next = -1;
    for (unsigned l = 0; l < LEVELS; l++)
        WP_LIST_FOREACH(node, &p->held[l]) {
            int64_t due = WP_LIST_ENTRY(node, task, held_node)->due_ms;
            if (due > after_ms && (next < 0 || due < next))
                next = due;
        }
    return next;
}

/* O(log n) per deadline that has come, plus what ending its task costs. */
void wp__expire_due(wp_pool *p, int64_t now_us)
{
    while (p->expiring_n > 0 && p->expiring[0]->expire_us <= now_us) {
        task *t = heap_remove(p, p->expiring[0]);
        if (wp__future_is_settled(atomic_load(&t->future.state))) {
            /* started and done, or cancelled: nothing to do */
        } else if (t->slot >= 0 && t->attempts == 1) { /* sent: take it back unless it started */
            char msg[WP_MSG_MAX];
            expired_message(t, msg, sizeof msg);
            (void)wp__slot_take_back_task(p, &p->slots[t->slot], t, WP_EEXPIRED, msg);
        } else if (wp__list_linked(&t->held_node) && expired(t, now_us)) {
            wp__line_remove(p, t);
            wp__task_expire(t);
        }
        wp_future_release(&t->future);
    }
}
