/* SPDX-License-Identifier: MIT */
/*
 * batcher.c — micro-batching on top of the pool (the batcher section of
 * include/workerpool.h): the API and the item futures; the batcher's
 * thread is batchthread.c, a batch's bytes batchwire.c.
 *
 * Callers submit single items and get one future each.  A batcher thread
 * groups pending items into batches and submits each batch as one ordinary
 * pool task: the argument packs the items, a trampoline in the worker calls
 * the batch function with one result buffer per item, and packs the results
 * back (the bytes: batchwire.c).  The batch future's done-callback (on the
 * pool's dispatcher thread) unpacks them into the item futures.
 *
 * A cancelled item leaves the pending list at once and never reaches a
 * batch; an item already in a batch cannot be cancelled alone (WP_EBUSY).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "batchwire.h"
#include "pool.h"

#define DEFAULT_BATCH_SIZE   64
#define DEFAULT_WAIT_MS      10
#define DEFAULT_MAX_PENDING  65536
#define BATCH_SIZE_LIMIT     (1u << 24) /* largest max_batch_size accepted */
#define IN_FLIGHT_LIMIT      (1u << 16) /* largest max_in_flight accepted */

/* ------------------------------------------------------------ item futures */

/* Under the item's mutex (then b->mu: the lock order).  Pending, or
   waiting in a half of a split batch to be sent again (isolate): leave
   the list or the half now, settle on the batcher thread.  In a sent
   batch: it cannot be cancelled alone. */
static int item_cancel(wp_future *f)
{
    item *it = (item *)f;
    wp_batcher *b = it->b;
    pthread_mutex_lock(&b->mu);
    int rc = WP_EBUSY;
    bool was_pending = it->pending;
    if (was_pending)
        wp__pending_remove(b, it);
    if (was_pending || wp__half_drop(b, it)) {
        wp__list_push_back(&b->cancelled, &it->node);
        pthread_cond_signal(&b->work_cv);
        if (was_pending)
            pthread_cond_signal(&b->room_cv);
        rc = 0;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static void item_free(wp_future *f)
{
    free(f);
}

const future_ops wp__item_ops = { .cancel = item_cancel, .free = item_free };

/* ------------------------------------------------------------- public API */

static void batcher_free(wp_batcher *b)
{
    wp__lock_destroy(&b->mu, &b->work_cv);
    pthread_cond_destroy(&b->room_cv);
    free(b->to_cancel);
    free(b);
}

int wp_batcher_create(wp_batcher **out, wp_pool *pool, wp_batch_fn fn,
                      const wp_batcher_options *opts)
{
    if (out == NULL)
        return WP_EINVAL;
    *out = NULL;
    wp_batcher_options o = opts != NULL ? *opts : (wp_batcher_options){ 0 };
    if (pool == NULL || fn == NULL || o.max_wait_ms < 0 || o.reserved_pad != 0 ||
        !WP_RESERVED_ZERO(&o) || wp__task_options_check(&o.task) < 0)
        return WP_EINVAL;
    if (wp__pool_must_not_wait(pool))
        return WP_EBUSY;
    if (wp__pool_closing(pool))
        return WP_ESHUTDOWN;
    if (o.max_batch_size == 0)
        o.max_batch_size = DEFAULT_BATCH_SIZE;
    if (o.max_wait_ms == 0)
        o.max_wait_ms = DEFAULT_WAIT_MS;
    if (o.max_in_flight == 0)
        o.max_in_flight = wp__pool_workers(pool);
    if (o.max_pending == 0)
        o.max_pending = DEFAULT_MAX_PENDING;
    if (o.max_batch_size > BATCH_SIZE_LIMIT || o.max_in_flight > IN_FLIGHT_LIMIT)
        return WP_EINVAL;
    size_t overhead = BATCH_ARG_HEADER + BATCH_ITEM_OVERHEAD; /* one item alone */
    if (wp__pool_max_message(pool) <= overhead)
        return WP_EINVAL;

    wp_batcher *b = calloc(1, sizeof *b);
    if (b == NULL)
        return WP_ENOMEM;
    b->to_cancel = calloc(o.max_in_flight, sizeof *b->to_cancel);
    int rc = b->to_cancel != NULL ? wp__lock_init(&b->mu, &b->work_cv) : WP_ENOMEM;
    if (rc == 0 && (rc = wp__cond_init_monotonic(&b->room_cv)) < 0)
        wp__lock_destroy(&b->mu, &b->work_cv);
    if (rc < 0) {
        free(b->to_cancel);
        free(b);
        return rc;
    }
    wp__list_init(&b->pending_items);
    wp__list_init(&b->cancelled);
    wp__list_init(&b->flying);
    wp__list_init(&b->halves);
    b->pool = pool;
    b->fn = fn;
    b->opts = o;
    b->max_item = wp__pool_max_message(pool) - overhead;
    b->grace_deadline = -1;
    atomic_init(&b->stop.callers, 0);
    if (pthread_create(&b->thread, NULL, wp__batcher_main, b) != 0) {
        batcher_free(b);
        return WP_ESPAWN; /* as wp_pool_create's dispatcher thread */
    }
    *out = b;
    return 0;
}

int wp_batcher_submit_opts(wp_batcher *b, const void *data, size_t len, unsigned flags,
                           wp_future **out)
{
    if (out != NULL)
        *out = NULL;
    if (b == NULL || (data == NULL && len > 0) || (flags & ~(unsigned)WP_TASK_NOWAIT) != 0)
        return WP_EINVAL;
    if (len > b->max_item)
        return WP_E2BIG;
    item *it = malloc(sizeof *it + len);
    if (it == NULL || wp__future_init(&it->future, &wp__item_ops) < 0) {
        free(it);
        return WP_ENOMEM;
    }
    wp__list_init(&it->node);
    it->pending = false;
    it->half = NULL;
    it->slot = 0;
    it->b = b;
    it->len = len;
    if (len > 0)
        memcpy(it->data, data, len);

    /* On a dispatcher or batcher thread (an item's done-callback) the room
       may only come from this very thread: WP_EAGAIN rather than wait. */
    if (wp__on_dispatcher() || wp__batcher_of_thread() != NULL)
        flags |= WP_TASK_NOWAIT;
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    while (!b->closing && b->pending >= b->opts.max_pending && !(flags & WP_TASK_NOWAIT)) {
        b->room_waiters++;
        pthread_cond_wait(&b->room_cv, &b->mu);
        b->room_waiters--;
    }
    if (b->closing || wp__pool_closing(b->pool))
        rc = WP_ESHUTDOWN;
    else if (b->pending >= b->opts.max_pending)
        rc = WP_EAGAIN;
    if (rc < 0) {
        pthread_mutex_unlock(&b->mu);
        wp_future_release(&it->future);
        return rc;
    }
    it->seq = ++b->next_seq;
    it->submitted_us = wp__now_us();
    it->pending = true;
    wp__list_push_back(&b->pending_items, &it->node);
    b->pending++;
    b->st.items++;
    /* The batcher thread needs to hear of a first item (to time it) and of
       a full batch; not of every item. */
    if (b->pending == 1 || b->pending == b->opts.max_batch_size)
        pthread_cond_signal(&b->work_cv);
    if (out != NULL) {
        wp_future_retain(&it->future);
        *out = &it->future;
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int wp_batcher_submit(wp_batcher *b, const void *data, size_t len, wp_future **out)
{
    return wp_batcher_submit_opts(b, data, len, 0, out);
}

int wp_batcher_flush(wp_batcher *b)
{
    if (b == NULL)
        return WP_EINVAL;
    pthread_mutex_lock(&b->mu);
    int rc = b->closing ? WP_ESHUTDOWN : 0;
    if (rc == 0) {
        b->flush_upto = b->next_seq;
        pthread_cond_signal(&b->work_cv);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int wp_batcher_shutdown(wp_batcher *b, int64_t grace_ms)
{
    if (b == NULL)
        return WP_EINVAL;
    wp__stop_enter(&b->stop); /* first: destroy waits for it before it frees */
    int64_t deadline;
    bool on_own_thread = wp__batcher_of_thread() == b;
    int rc = wp__stop_begin(&b->mu, &b->room_cv, &b->stop,
                            on_own_thread || wp__pool_must_not_wait(b->pool), grace_ms, &deadline);
    if (rc < 0)
        return rc;
    b->grace_deadline = wp__grace_deadline(!b->closing, b->grace_deadline, deadline);
    b->closing = true;
    pthread_cond_signal(&b->work_cv);
    pthread_cond_broadcast(&b->room_cv);
    wp__await_stop(&b->mu, &b->room_cv, &b->stop, b->thread);
    return 0;
}

void wp_batcher_destroy(wp_batcher *b)
{
    if (b != NULL && wp__stop_may_free(wp_batcher_shutdown(b, -1), &b->mu, &b->room_cv, &b->stop))
        batcher_free(b);
}

int wp_batcher_get_stats(wp_batcher *b, wp_batcher_stats *out)
{
    if (b == NULL || out == NULL)
        return WP_EINVAL;
    pthread_mutex_lock(&b->mu);
    *out = b->st; /* b->st's reserved words are never written: zeros */
    out->pending = (unsigned)(b->pending + b->half_items); /* halves' items wait for a batch too */
    out->in_flight = b->in_flight;
    pthread_mutex_unlock(&b->mu);
    out->mean_batch_size = out->batches ? (double)out->items_batched / (double)out->batches : 0.0;
    out->mean_wait_us = out->items_batched ? (double)out->wait_us_total / (double)out->items_batched : 0.0;
    return 0;
}
