/* SPDX-License-Identifier: MIT */
/*
 * batchsplit.c — poison-item isolation (wp_batcher_options.isolate in
 * include/workerpool.h; docs/ARCHITECTURE.md, "Poison-item isolation"): a
 * batch whose task crashed or timed out, after the retries its task
 * options allow, is split into two halves, and each half is sent again as
 * a batch of its own, down to single items, so that only the items that
 * crash or hang fail and every other item gets its result.
 *
 * The split is decided where the batch's task settles: in its
 * done-callback, on the pool's dispatcher thread, where a submit must never
 * block and a full queue answers WP_EAGAIN.  So the halves are only made
 * there, and handed to the batcher's own thread (b->halves), which sends
 * them as it sends any batch — blocking for room if it must, within
 * max_in_flight, and before any batch of pending items, which are younger
 * (batchthread.c).  While a half waits, its items are WP_PENDING again (as
 * a pool task between retries), and cancelling one takes it out of its
 * half at once (wp__half_drop); a half left empty is never sent.
 *
 * Halves are batches like any other: the batch's task options, counted in
 * the stats' batches and items_batched.  A batch of n items with one poison
 * item costs 2·log2(n) more batches; every split halves a batch, so a
 * batch of n becomes at most 2n - 1 batches in all and isolation ends.
 */
#include "config.h"

#include "batcher.h"
#include "batchwire.h"
#include "future.h"

/* Outcomes an item of the batch may have caused alone: its worker died,
   or it outlived its timeout.  Not the batch function's own failure
   (WP_ETASK: it spoke for the whole batch), a cancel, or the pool's or
   the library's outcomes (WP_EEXPIRED, WP_ESPAWN, WP_EPROTO, WP_ENOMEM),
   which no split would change. */
static bool isolating(int error)
{
    return error == WP_ECRASHED || error == WP_ETIMEDOUT;
}

/* A half holding bt's items [from, to), in order; NULL if out of memory.
   O(to - from). */
static batch *make_half(const batch *bt, size_t from, size_t to)
{
    assert(from < to && to <= bt->n);
    batch *h = wp__batch_new(bt->b, to - from);
    if (h == NULL)
        return NULL;
    h->from_split = true;
    h->bytes = BATCH_ARG_HEADER;
    for (size_t i = from; i < to; i++) {
        h->items[h->n++] = bt->items[i];
        h->bytes += BATCH_ITEM_OVERHEAD + bt->items[i]->len;
    }
    assert(h->bytes <= bt->bytes); /* a part of what was sent: it fits */
    return h;
}

/* Under b->mu: h waits in b->halves, and its items know where. */
static void queue_half(wp_batcher *b, batch *h)
{
    for (size_t i = 0; i < h->n; i++) {
        assert(h->items[i]->half == NULL && !h->items[i]->pending);
        h->items[i]->half = h;
        h->items[i]->slot = i;
    }
    b->half_items += h->n;
    wp__list_push_back(&b->halves, &h->node);
}

bool wp__batch_split(batch *bt, int error)
{
    wp_batcher *b = bt->b;
    if (b->opts.isolate == 0 || !isolating(error))
        return false;
    if (bt->n < 2) {
        /* Counted before the item settles, so a caller who sees it failed
           sees it counted (as the pool counts outcomes). */
        if (bt->from_split) {
            pthread_mutex_lock(&b->mu);
            b->st.isolated += bt->n;
            pthread_mutex_unlock(&b->mu);
        }
        return false;
    }
    size_t mid = bt->n / 2;
    batch *lo = make_half(bt, 0, mid), *hi = make_half(bt, mid, bt->n);
    if (lo == NULL || hi == NULL) { /* fails whole, as without isolate */
        free(lo);
        free(hi);
        return false;
    }
    /* Pending again before the batcher thread can see them: its send
       starts each (PENDING -> RUNNING), and a start that fails means
       cancelled.  Outside b->mu: the lock order is future, then batcher. */
    for (size_t i = 0; i < bt->n; i++) {
        bool requeued = wp__future_requeue(&bt->items[i]->future);
        assert(requeued); /* no cancel reaches an item of a sent batch (WP_EBUSY) */
        (void)requeued;
    }
    pthread_mutex_lock(&b->mu);
    /* Past the shutdown grace nothing new is sent: the batch fails whole. */
    bool split = !b->grace_spent;
    if (split) {
        queue_half(b, lo);
        queue_half(b, hi);
        pthread_cond_signal(&b->work_cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (!split) {
        free(lo);
        free(hi);
    }
    return split;
}

batch *wp__half_take(wp_batcher *b)
{
    wp_list *node = wp__list_first(&b->halves);
    if (node == NULL)
        return NULL;
    wp__list_remove(node);
    batch *h = WP_LIST_ENTRY(node, batch, node);
    for (size_t i = 0; i < h->n; i++)
        h->items[i]->half = NULL;
    assert(h->n > 0 && b->half_items >= h->n);
    b->half_items -= h->n;
    return h;
}

bool wp__half_drop(wp_batcher *b, item *it)
{
    batch *h = it->half;
    if (h == NULL)
        return false;
    assert(it->slot < h->n && h->items[it->slot] == it && b->half_items > 0);
    /* The last item takes its place: O(1), the order of a half is no
       part of the contract. */
    item *last = h->items[--h->n];
    h->items[it->slot] = last;
    last->slot = it->slot;
    h->bytes -= BATCH_ITEM_OVERHEAD + it->len;
    it->half = NULL;
    b->half_items--;
    if (h->n == 0) { /* nothing left to send */
        wp__list_remove(&h->node);
        free(h);
    }
    return true;
}

void wp__halves_drain(wp_batcher *b, wp_list *list)
{
    batch *h;
    while ((h = wp__half_take(b)) != NULL) {
        for (size_t i = 0; i < h->n; i++)
            wp__list_push_back(list, &h->items[i]->node);
        free(h);
    }
}
