/* SPDX-License-Identifier: MIT */
/*
 * batcher.c — micro-batching on top of the pool (the batcher section of
 * include/workerpool.h).
 *
 * Callers submit single items and get one future each.  A batcher thread
 * groups pending items into batches and submits each batch as one ordinary
 * pool task: the argument packs the items, a trampoline in the worker calls
 * the batch function with one result buffer per item, and packs the results
 * back.  The batch future's done-callback (on the pool's dispatcher thread)
 * unpacks them into the item futures.
 *
 * A batch leaves when it is full, when its first item has waited
 * max_wait_ms (from that item's submit), or on flush/shutdown; never more
 * than max_in_flight at once.  The batcher thread sleeps on a condition
 * variable, timed only while items wait, so an idle batcher costs nothing.
 * A cancelled item leaves the pending list at once and never reaches a
 * batch; an item already in a batch cannot be cancelled alone (WP_EBUSY).
 *
 * Wire layout (both ends are the same binary, host byte order):
 *   argument: batch_header, then per item { uint64 len; bytes }
 *   result:   uint64 n, then per item { int32 error; int32 code; uint64 len; bytes }
 *             (bytes are the result, or the failure message)
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"
#include "list.h"
#include "pool.h"
#include "worker.h"

#define DEFAULT_BATCH_SIZE   64
#define DEFAULT_WAIT_MS      10
#define DEFAULT_MAX_PENDING  65536

typedef struct batch_header {
    uint64_t fn;   /* the wp_batch_fn */
    uint64_t n;
} batch_header;

typedef struct item_result_header {
    int32_t  error;  /* 0, WP_ETASK or WP_E2BIG */
    int32_t  code;
    uint64_t len;
} item_result_header;

typedef struct item {
    wp_future    future;   /* first: an item is its future */
    wp_batcher  *b;
    wp_list      node;     /* in b->pending or b->cancelled (under b->mu), or on none */
    bool         pending;  /* in b->pending */
    uint64_t     seq;      /* submit order, for flush */
    int64_t      submitted_us;
    size_t       len;
    char         data[];
} item;

typedef struct batch {
    wp_batcher *b;
    wp_list     node;     /* in b->flying once submitted (under b->mu), or on none */
    wp_future  *future;   /* while in b->flying: its task's future (a reference) */
    size_t      n;
    item       *items[];
} batch;

struct wp_batcher {
    wp_pool           *pool;
    wp_batch_fn        fn;
    wp_batcher_options opts;
    size_t             max_item;     /* largest item that fits a batch alone */

    pthread_mutex_t    mu;
    pthread_cond_t     work_cv;      /* the batcher thread waits here */
    pthread_cond_t     room_cv;      /* submitters wait for max_pending */
    wp_list            pending_items; /* items waiting for a batch, oldest first */
    wp_list            cancelled;    /* taken out of it by a cancel, to settle */
    size_t             pending;      /* items in pending_items */
    unsigned           room_waiters; /* submitters blocked on room_cv */
    unsigned           in_flight;    /* batches taken and not finished */
    wp_list            flying;       /* of those, the submitted ones: cancelled past the grace */
    wp_future        **to_cancel;    /* scratch, max_in_flight */
    bool               grace_spent;  /* past the grace, everything was cancelled once */
    uint64_t           next_seq, flush_upto;
    bool               closing;
    wp_stop            stop;
    int64_t            grace_deadline; /* ms, -1 = none */
    pthread_t          thread;

    wp_batcher_stats   st;           /* under mu */
};

static _Thread_local const wp_batcher *batching; /* set on the batcher thread */

/* ------------------------------------------------------------- the worker */

static int pack_item_result(wp_buf *out, const wp_buf *r)
{
    item_result_header h = { 0, 0, r->len };
    const void *bytes = r->data;
    if (r->overflow) {
        h.error = WP_E2BIG;
        bytes = "item result larger than max_message";
    } else if (r->failed) {
        h.error = WP_ETASK;
        h.code = r->code;
        bytes = r->message;
    }
    if (h.error != 0)
        h.len = strlen(bytes);
    int rc = wp_buf_append(out, &h, sizeof h);
    return rc < 0 ? rc : wp_buf_append(out, bytes, (size_t)h.len);
}

/* Runs in the worker: unpack the items, run the batch function, pack the
   per-item results. */
static int batch_trampoline(const void *arg, size_t len, wp_buf *out)
{
    batch_header h;
    if (len < sizeof h)
        return wp_buf_fail(out, EPROTO, "batch argument too short");
    memcpy(&h, arg, sizeof h);
    wp_batch_fn fn;
    memcpy(&fn, &h.fn, sizeof fn);
    size_t n = (size_t)h.n;
    wp_item *items = calloc(n ? n : 1, sizeof *items);
    wp_buf *bufs = calloc(n ? n : 1, sizeof *bufs);
    wp_buf **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    int rc = 0;
    if (items == NULL || bufs == NULL || ptrs == NULL)
        rc = wp_buf_fail(out, ENOMEM, "out of memory unpacking the batch");
    const char *p = (const char *)arg + sizeof h, *end = (const char *)arg + len;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint64_t ilen;
        if ((size_t)(end - p) < sizeof ilen)
            rc = wp_buf_fail(out, EPROTO, "batch argument truncated");
        else {
            memcpy(&ilen, p, sizeof ilen);
            p += sizeof ilen;
            if (ilen > (uint64_t)(end - p))
                rc = wp_buf_fail(out, EPROTO, "batch argument truncated");
            items[i] = (wp_item){ .data = p, .len = (size_t)ilen };
            p += ilen;
            bufs[i].max = out->max;
            ptrs[i] = &bufs[i];
        }
    }
    if (rc == 0)
        rc = fn(items, n, ptrs); /* non-zero, whatever it is: the batch's own failure */
    if (rc == 0) {
        uint64_t count = n;
        int packed = wp_buf_append(out, &count, sizeof count);
        for (size_t i = 0; packed == 0 && i < n; i++)
            packed = pack_item_result(out, &bufs[i]);
        /* Past max_message the worker reports WP_E2BIG from the overflow
           flag; no memory is the batch's failure. */
        if (packed == WP_ENOMEM)
            rc = wp_buf_fail(out, ENOMEM, "out of memory packing the results");
    }
    for (size_t i = 0; bufs != NULL && i < n; i++)
        free(bufs[i].data);
    free(items);
    free(bufs);
    free(ptrs);
    return rc;
}

/* ------------------------------------------------------------ item futures */

static int item_cancel(wp_future *f);
static void item_free(wp_future *f)
{
    free(f);
}
static const future_ops item_ops = { .cancel = item_cancel, .free = item_free };

static void item_settle(item *it, int error, int code, const char *msg, void *result, size_t len)
{
    wp__future_settle(&it->future, error, code, msg, result, len);
    wp_future_release(&it->future); /* the batcher's reference */
}

/* Under b->mu: the oldest pending item (there is one). */
static item *oldest_pending(const wp_batcher *b)
{
    assert(b->pending > 0);
    return WP_LIST_ENTRY(wp__list_first(&b->pending_items), item, node);
}

/* Under b->mu: it leaves the pending list. */
static void pending_remove(wp_batcher *b, item *it)
{
    assert(it->pending && b->pending > 0);
    wp__list_remove(&it->node);
    it->pending = false;
    b->pending--;
}

/* Under the item's mutex.  Pending: leave the list now, settle on the
   batcher thread.  In a batch already: it cannot be cancelled alone. */
static int item_cancel(wp_future *f)
{
    item *it = (item *)f;
    wp_batcher *b = it->b;
    pthread_mutex_lock(&b->mu);
    int rc = WP_EBUSY;
    if (it->pending) {
        pending_remove(b, it);
        wp__list_push_back(&b->cancelled, &it->node);
        pthread_cond_signal(&b->work_cv);
        pthread_cond_signal(&b->room_cv);
        rc = 0;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* ----------------------------------------------------------- batch results */

static void settle_from_result(batch *bt, const char *p, size_t len)
{
    uint64_t n = 0;
    bool ok = len >= sizeof n;
    if (ok)
        memcpy(&n, p, sizeof n);
    ok = ok && n == bt->n;
    size_t off = sizeof n;
    for (size_t i = 0; i < bt->n; i++) {
        item_result_header h;
        if (ok && len - off >= sizeof h) {
            memcpy(&h, p + off, sizeof h);
            off += sizeof h;
            ok = h.len <= len - off;
        } else {
            ok = false;
        }
        if (!ok) {
            item_settle(bt->items[i], WP_EPROTO, 0, "malformed batch result", NULL, 0);
            continue;
        }
        if (h.error == 0) {
            void *copy = h.len > 0 ? malloc((size_t)h.len) : NULL;
            if (h.len > 0 && copy == NULL)
                item_settle(bt->items[i], WP_ENOMEM, 0, "out of memory", NULL, 0);
            else {
                if (copy != NULL)
                    memcpy(copy, p + off, (size_t)h.len);
                item_settle(bt->items[i], 0, 0, NULL, copy, (size_t)h.len);
            }
        } else {
            char msg[WP_BUF_MESSAGE_MAX];
            size_t m = h.len < sizeof msg - 1 ? (size_t)h.len : sizeof msg - 1;
            memcpy(msg, p + off, m);
            msg[m] = '\0';
            item_settle(bt->items[i], h.error == WP_E2BIG ? WP_E2BIG : WP_ETASK, h.code, msg, NULL, 0);
        }
        off += (size_t)h.len;
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

/* The batch task settled (on the dispatcher thread): settle its items. */
static void batch_done(wp_future *f, void *ctx)
{
    batch *bt = ctx;
    int error = wp_future_error(f);
    if (error == 0) {
        size_t len;
        const char *p = wp_future_result(f, &len);
        settle_from_result(bt, p, len);
    } else {
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
           oldest_pending(b)->seq <= b->flush_upto ||
           now_us >= wp__sat_add(oldest_pending(b)->submitted_us, wp__ms_to_us(b->opts.max_wait_ms));
}

/* Under b->mu: take up to max_batch_size items that fit in one message. */
static batch *take_batch(wp_batcher *b, int64_t now_us, size_t *bytes)
{
    size_t n = b->pending < b->opts.max_batch_size ? b->pending : b->opts.max_batch_size;
    batch *bt = malloc(sizeof *bt + n * sizeof bt->items[0]);
    if (bt == NULL)
        return NULL;
    bt->b = b;
    wp__list_init(&bt->node);
    bt->future = NULL;
    bt->n = 0;
    *bytes = sizeof(batch_header);
    size_t limit = wp__pool_max_message(b->pool);
    while (bt->n < n && *bytes + sizeof(uint64_t) + oldest_pending(b)->len <= limit) {
        item *it = oldest_pending(b);
        *bytes += sizeof(uint64_t) + it->len;
        pending_remove(b, it);
        bt->items[bt->n++] = it;
        uint64_t waited = (uint64_t)(now_us - it->submitted_us);
        b->st.wait_us_total += waited;
        if (waited > b->st.wait_us_max)
            b->st.wait_us_max = waited;
    }
    b->in_flight++;
    b->st.batches++;
    b->st.items_batched += bt->n;
    b->st.in_flight = b->in_flight;
    /* Blocked submitters wake when half the room is free, all at once,
       rather than a few at every batch. */
    if (b->room_waiters > 0 && b->pending <= b->opts.max_pending / 2)
        pthread_cond_broadcast(&b->room_cv);
    return bt;
}

static void fail_batch(batch *bt, int error, const char *msg)
{
    for (size_t i = 0; i < bt->n; i++)
        item_settle(bt->items[i], error, 0, msg, NULL, 0);
    batch_finished(bt->b, bt);
}

/* Outside b->mu: pack the batch and submit it as one pool task. */
static void send_batch(wp_batcher *b, batch *bt, size_t bytes)
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
    char *arg = malloc(bytes);
    if (arg == NULL) {
        fail_batch(bt, WP_ENOMEM, "out of memory packing a batch");
        return;
    }
    batch_header h = { 0, bt->n };
    memcpy(&h.fn, &b->fn, sizeof b->fn);
    memcpy(arg, &h, sizeof h);
    size_t off = sizeof h;
    for (size_t i = 0; i < bt->n; i++) {
        uint64_t len = bt->items[i]->len;
        memcpy(arg + off, &len, sizeof len);
        memcpy(arg + off + sizeof len, bt->items[i]->data, bt->items[i]->len);
        off += sizeof len + bt->items[i]->len;
    }
    wp_task_options topts = b->opts.task;
    topts.flags &= ~(unsigned)WP_TASK_NOWAIT; /* this thread may wait for room */
    wp_future *f = NULL;
    int rc = wp_submit(b->pool, batch_trampoline, arg, off, &topts, &f);
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
   shutdown grace, everything pending and in flight.  O(pending) then. */
static void settle_cancelled(wp_batcher *b)
{
    bool cancel_all = grace_over(b);
    b->grace_spent |= cancel_all;
    wp_list list; /* settled below, outside b->mu */
    wp__list_init(&list);
    wp__list_move_all(&b->cancelled, &list);
    while (cancel_all && b->pending > 0) {
        item *it = oldest_pending(b);
        pending_remove(b, it);
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
        at = wp__sat_add(oldest_pending(b)->submitted_us, wp__ms_to_us(b->opts.max_wait_ms)) / 1000 + 1;
    if (b->closing && !b->grace_spent && b->grace_deadline >= 0 && (at < 0 || b->grace_deadline < at))
        at = b->grace_deadline;
    return at;
}

static void *batcher_main(void *arg)
{
    wp_batcher *b = arg;
    batching = b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (!wp__list_empty(&b->cancelled) || grace_over(b))
            settle_cancelled(b);
        int64_t now_us = wp__now_us();
        if (batch_due(b, now_us)) {
            size_t bytes;
            batch *bt = take_batch(b, now_us, &bytes);
            pthread_mutex_unlock(&b->mu);
            if (bt != NULL)
                send_batch(b, bt, bytes);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        if (b->closing && b->pending == 0 && b->in_flight == 0 && wp__list_empty(&b->cancelled))
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

/* ------------------------------------------------------------- public API */

static void batcher_free(wp_batcher *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work_cv);
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
    if (pool == NULL || fn == NULL || o.max_wait_ms < 0 || !WP_RESERVED_ZERO(&o) ||
        wp__task_options_check(&o.task) < 0)
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
    if (o.max_batch_size > (1u << 24) || o.max_in_flight > (1u << 16))
        return WP_EINVAL;
    size_t overhead = sizeof(batch_header) + sizeof(uint64_t);
    if (wp__pool_max_message(pool) <= overhead)
        return WP_EINVAL;

    wp_batcher *b = calloc(1, sizeof *b);
    if (b == NULL)
        return WP_ENOMEM;
    b->to_cancel = calloc(o.max_in_flight, sizeof *b->to_cancel);
    if (b->to_cancel == NULL) {
        free(b);
        return WP_ENOMEM;
    }
    wp__list_init(&b->pending_items);
    wp__list_init(&b->cancelled);
    wp__list_init(&b->flying);
    b->pool = pool;
    b->fn = fn;
    b->opts = o;
    b->max_item = wp__pool_max_message(pool) - overhead;
    b->grace_deadline = -1;
    atomic_init(&b->stop.callers, 0);
    pthread_mutex_init(&b->mu, NULL);
    wp__cond_init_monotonic(&b->work_cv);
    wp__cond_init_monotonic(&b->room_cv);
    if (pthread_create(&b->thread, NULL, batcher_main, b) != 0) {
        batcher_free(b);
        return WP_ENOMEM;
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
    if (it == NULL)
        return WP_ENOMEM;
    wp__future_init(&it->future, &item_ops);
    wp__list_init(&it->node);
    it->pending = false;
    it->b = b;
    it->len = len;
    if (len > 0)
        memcpy(it->data, data, len);

    /* On a dispatcher or batcher thread (an item's done-callback) the room
       may only come from this very thread: WP_EAGAIN rather than wait. */
    if (wp__on_dispatcher() || batching != NULL)
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
    wp__stop_enter(&b->stop);
    if (batching == b || wp__pool_must_not_wait(b->pool)) {
        wp__stop_leave(&b->mu, &b->room_cv, &b->stop);
        return WP_EBUSY;
    }
    int64_t deadline = wp__deadline_after(grace_ms < 0 ? -1 : grace_ms);
    pthread_mutex_lock(&b->mu);
    b->grace_deadline = wp__grace_deadline(!b->closing, b->grace_deadline, deadline);
    b->closing = true;
    pthread_cond_signal(&b->work_cv);
    pthread_cond_broadcast(&b->room_cv);
    wp__await_stop(&b->mu, &b->room_cv, &b->stop, b->thread);
    return 0;
}

void wp_batcher_destroy(wp_batcher *b)
{
    if (b == NULL || wp_batcher_shutdown(b, -1) != 0)
        return;
    /* Shutdowns other threads began may still be on their way out. */
    wp__await_callers(&b->mu, &b->room_cv, &b->stop);
    batcher_free(b);
}

int wp_batcher_get_stats(wp_batcher *b, wp_batcher_stats *out)
{
    if (b == NULL || out == NULL)
        return WP_EINVAL;
    pthread_mutex_lock(&b->mu);
    *out = b->st; /* b->st's reserved words are never written: zeros */
    out->pending = (unsigned)b->pending;
    out->in_flight = b->in_flight;
    pthread_mutex_unlock(&b->mu);
    out->mean_batch_size = out->batches ? (double)out->items_batched / (double)out->batches : 0.0;
    out->mean_wait_us = out->items_batched ? (double)out->wait_us_total / (double)out->items_batched : 0.0;
    return 0;
}
