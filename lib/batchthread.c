/* SPDX-License-Identifier: MIT */
/*
 * batchthread.c — the batcher's own thread (see batcher.h): it takes the
 * oldest pending items into a batch when one is due, packs the batch and
 * submits it as one pool task, and settles the item futures — from the
 * batch's result (a done-callback, on the pool's dispatcher thread), or as
 * cancelled (on this thread).
 *
 * A batch leaves when it is full, when its first item has waited
 * max_wait_ms (from that item's submit), or on flush/shutdown; never more
 * than max_in_flight at once.  The halves of a batch that crashed or timed
 * out (isolate, batchsplit.c) leave before any new batch: their items are
 * older.  The thread sleeps on a condition variable, timed only while
 * items wait, so an idle batcher costs nothing.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "batchwire.h"
#include "pool.h"
#include "worker.h"

static _Thread_local const wp_batcher *batching; /* set on the batcher thread */

const wp_batcher *wp__batcher_of_thread(void)
{
    return batching;
}

/* Settle an item for good and drop the batcher's reference. */
static void item_settle(item *it, int error, int code, const char *msg, void *result, size_t len)
{
    wp__future_settle(&it->future, error, code, msg, result, len);
    wp_future_release(&it->future); /* the batcher's reference */
}

/* ----------------------------------------------------------- batch results */

/* Settle every item of bt from its batch's result bytes.  O(items + bytes). */
static void settle_from_result(batch *bt, const char *p, size_t len)
{
    batch_result_reader r;
    wp__batch_result_begin(&r, p, len, bt->n);
    for (size_t i = 0; i < bt->n; i++) {
        item_result_header h;
        const char *bytes;
        if (!wp__batch_result_next(&r, &h, &bytes)) {
            item_settle(bt->items[i], WP_EPROTO, 0, "malformed batch result", NULL, 0);
        } else if (h.error == 0) {
            void *copy = h.len > 0 ? malloc((size_t)h.len) : NULL;
            if (h.len > 0 && copy == NULL)
                item_settle(bt->items[i], WP_ENOMEM, 0, "out of memory", NULL, 0);
            else {
                if (copy != NULL)
                    memcpy(copy, bytes, (size_t)h.len);
                item_settle(bt->items[i], 0, 0, NULL, copy, (size_t)h.len);
            }
        } else {
            char msg[WP_BUF_MESSAGE_MAX];
            size_t m = h.len < sizeof msg - 1 ? (size_t)h.len : sizeof msg - 1;
            memcpy(msg, bytes, m);
            msg[m] = '\0';
            item_settle(bt->items[i], h.error == WP_E2BIG ? WP_E2BIG : WP_ETASK, h.code, msg, NULL, 0);
        }
    }
}

static void batch_finished(wp_batcher *b, batch *bt)
{
    pthread_mutex_lock(&b->mu);
    if (wp__list_linked(&bt->node)) { /* it was submitted */
        wp__list_remove(&bt->node);
        wp_future_release(bt->future); /* frees at most the task: takes no lock */
        bt->future = NULL;
    }
    assert(b->in_flight > 0);
    b->in_flight--;
    b->st.in_flight = b->in_flight;
    pthread_cond_signal(&b->work_cv);
    pthread_mutex_unlock(&b->mu);
    free(bt);
}

/* The batch task settled (on the dispatcher thread): settle its items, or
   hand its halves to this thread to isolate what failed it. */
static void batch_done(wp_future *f, void *ctx)
{
    batch *bt = ctx;
    int error = wp_future_error(f);
    if (error == 0) {
        size_t len;
        const char *p = wp_future_result(f, &len);
        settle_from_result(bt, p, len);
    } else if (!wp__batch_split(bt, error)) {
        for (size_t i = 0; i < bt->n; i++)
            item_settle(bt->items[i], error, wp_future_code(f), wp_future_message(f), NULL, 0);
    }
    batch_finished(bt->b, bt);
}

/* ------------------------------------------------------ the batcher thread */

/* Under b->mu: should the oldest pending items leave now? */
static bool batch_due(const wp_batcher *b, int64_t now_us)
{
    if (b->pending == 0 || b->in_flight >= b->opts.max_in_flight)
        return false;
    return b->pending >= b->opts.max_batch_size || b->pending >= b->opts.max_pending || b->closing ||
           wp__oldest_pending(b)->seq <= b->flush_upto ||
           now_us >= wp__sat_add(wp__oldest_pending(b)->submitted_us, wp__ms_to_us(b->opts.max_wait_ms));
}

/* Under b->mu: bt is on its way, one more in flight; count it, its items
   and how long they waited since their submit (for the items of a half:
   since their first submit, so isolation shows in the wait).  O(items). */
static void count_sent(wp_batcher *b, const batch *bt, int64_t now_us)
{
    for (size_t i = 0; i < bt->n; i++) {
        uint64_t waited = (uint64_t)(now_us - bt->items[i]->submitted_us);
        b->st.wait_us_total += waited;
        if (waited > b->st.wait_us_max)
            b->st.wait_us_max = waited;
    }
    b->in_flight++;
    b->st.batches++;
    b->st.items_batched += bt->n;
    b->st.in_flight = b->in_flight;
}

/* Under b->mu: take up to max_batch_size items that fit in one message. */
static batch *take_batch(wp_batcher *b, int64_t now_us)
{
    size_t n = b->pending < b->opts.max_batch_size ? b->pending : b->opts.max_batch_size;
    batch *bt = wp__batch_new(b, n);
    if (bt == NULL)
        return NULL;
    bt->bytes = BATCH_ARG_HEADER;
    size_t limit = wp__pool_max_message(b->pool);
    while (bt->n < n && bt->bytes + BATCH_ITEM_OVERHEAD + wp__oldest_pending(b)->len <= limit) {
        item *it = wp__oldest_pending(b);
        bt->bytes += BATCH_ITEM_OVERHEAD + it->len;
        wp__pending_remove(b, it);
        bt->items[bt->n++] = it;
    }
    count_sent(b, bt, now_us);
    /* Blocked submitters wake when half the room is free, all at once,
       rather than a few at every batch. */
    if (b->room_waiters > 0 && b->pending <= b->opts.max_pending / 2)
        pthread_cond_broadcast(&b->room_cv);
    return bt;
}

/* Under b->mu: the oldest waiting half of a split batch (there is one),
   counted as sent. */
static batch *take_half(wp_batcher *b, int64_t now_us)
{
    batch *bt = wp__half_take(b);
    assert(bt != NULL);
    count_sent(b, bt, now_us);
    return bt;
}

static void fail_batch(batch *bt, int error, const char *msg)
{
    for (size_t i = 0; i < bt->n; i++)
        item_settle(bt->items[i], error, 0, msg, NULL, 0);
    batch_finished(bt->b, bt);
}

/* Outside b->mu: pack the batch and submit it as one pool task. */
static void send_batch(wp_batcher *b, batch *bt)
{
    size_t kept = 0;
    for (size_t i = 0; i < bt->n; i++) /* a racing cancel got there first? */
        if (wp__future_start(&bt->items[i]->future))
            bt->items[kept++] = bt->items[i];
        else
            item_settle(bt->items[i], WP_ECANCELED, 0, "cancelled", NULL, 0);
    bt->n = kept;
    if (kept == 0) {
        batch_finished(b, bt);
        return;
    }
    char *arg = malloc(bt->bytes);
    if (arg == NULL) {
        fail_batch(bt, WP_ENOMEM, "out of memory packing a batch");
        return;
    }
    size_t off = wp__batch_pack_header(arg, b->fn, bt->n);
    for (size_t i = 0; i < bt->n; i++)
        off = wp__batch_pack_item(arg, off, bt->items[i]->data, bt->items[i]->len);
    assert(off <= bt->bytes);
    wp_task_options topts = b->opts.task;
    topts.flags &= ~(unsigned)WP_TASK_NOWAIT; /* this thread may wait for room */
    wp_future *f = NULL;
    int rc = wp_submit(b->pool, wp__batch_trampoline, arg, off, &topts, &f);
    free(arg);
    if (rc == WP_ESHUTDOWN) { /* as the pool's own queued tasks at shutdown */
        fail_batch(bt, WP_ECANCELED, "the pool shut down before the batch was sent");
        return;
    }
    if (rc < 0) {
        fail_batch(bt, rc, wp_strerror(rc));
        return;
    }
    pthread_mutex_lock(&b->mu);
    wp_future_retain(f);
    bt->future = f;
    wp__list_push_back(&b->flying, &bt->node);
    pthread_mutex_unlock(&b->mu);
    if (wp_future_on_done(f, batch_done, bt) < 0)
        batch_done(f, bt); /* cannot register: settle now from here (f is settled or not) */
    wp_future_release(f);
}

/* Under b->mu: shutting down, and the grace it allowed has run out (not
   yet acted on). */
static bool grace_over(const wp_batcher *b)
{
    return b->closing && !b->grace_spent && b->grace_deadline >= 0 &&
           wp__now_ms() >= b->grace_deadline;
}

/* Under b->mu, unlocking around the settles: cancelled items, and past the
   shutdown grace, everything pending, waiting in halves and in flight.
   O(pending) then. */
static void settle_cancelled(wp_batcher *b)
{
    bool cancel_all = grace_over(b);
    b->grace_spent |= cancel_all;
    wp_list list; /* settled below, outside b->mu */
    wp__list_init(&list);
    wp__list_move_all(&b->cancelled, &list);
    if (cancel_all)
        wp__halves_drain(b, &list);
    while (cancel_all && b->pending > 0) {
        item *it = wp__oldest_pending(b);
        wp__pending_remove(b, it);
        wp__list_push_back(&list, &it->node);
    }
    unsigned nflying = 0;
    if (cancel_all)
        WP_LIST_FOREACH(node, &b->flying) {
            assert(nflying < b->opts.max_in_flight);
            b->to_cancel[nflying] = WP_LIST_ENTRY(node, batch, node)->future;
            wp_future_retain(b->to_cancel[nflying++]);
        }
    pthread_cond_broadcast(&b->room_cv);
    pthread_mutex_unlock(&b->mu);
    wp_list *node;
    while ((node = wp__list_first(&list)) != NULL) {
        wp__list_remove(node);
        item_settle(WP_LIST_ENTRY(node, item, node), WP_ECANCELED, 0,
                    cancel_all ? "the batcher shut down" : "cancelled", NULL, 0);
    }
    for (unsigned i = 0; i < nflying; i++) {
        wp_future_cancel(b->to_cancel[i]); /* WP_EBUSY if shielded: it runs to the end */
        wp_future_release(b->to_cancel[i]);
    }
    pthread_mutex_lock(&b->mu);
}

static int64_t next_wake_ms(const wp_batcher *b)
{
    int64_t at = -1;
    if (b->pending > 0 && b->in_flight < b->opts.max_in_flight)
        at = wp__sat_add(wp__oldest_pending(b)->submitted_us, wp__ms_to_us(b->opts.max_wait_ms)) / 1000 + 1;
    if (b->closing && !b->grace_spent && b->grace_deadline >= 0 && (at < 0 || b->grace_deadline < at))
        at = b->grace_deadline;
    return at;
}

void *wp__batcher_main(void *arg)
{
    wp_batcher *b = arg;
    batching = b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (!wp__list_empty(&b->cancelled) || grace_over(b)) {
            /* It unlocks b->mu: a cancel may have come meanwhile, and its
               signal found no one waiting.  Look at everything again. */
            settle_cancelled(b);
            continue;
        }
        int64_t now_us = wp__now_us();
        /* Halves first: older than anything pending, and due at once. */
        bool half_due = b->in_flight < b->opts.max_in_flight && !wp__list_empty(&b->halves);
        if (half_due || batch_due(b, now_us)) {
            batch *bt = half_due ? take_half(b, now_us) : take_batch(b, now_us);
            pthread_mutex_unlock(&b->mu);
            if (bt != NULL)
                send_batch(b, bt);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        if (b->closing && b->pending == 0 && b->in_flight == 0 && wp__list_empty(&b->cancelled) &&
            wp__list_empty(&b->halves))
            break;
        int64_t at = next_wake_ms(b);
        if (at < 0) {
            pthread_cond_wait(&b->work_cv, &b->mu);
        } else {
            struct timespec ts;
            wp__timespec_at_ms(&ts, at);
            pthread_cond_timedwait(&b->work_cv, &b->mu, &ts);
        }
    }
    b->stop.stopped = true;
    pthread_cond_broadcast(&b->room_cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}
