/* SPDX-License-Identifier: MIT */
/*
 * batcher.h — what the batcher's files share: its records (an item, a
 * batch, the batcher), and the little they all do to its pending list.
 * batcher.c is the API and the item futures; batchthread.c is the
 * batcher's own thread, which forms, sends and settles batches;
 * batchsplit.c splits a batch that crashed or timed out into halves
 * (isolate: docs/ARCHITECTURE.md, "Poison-item isolation"); the bytes of a
 * batch are batchwire.c's.
 *
 * Locks (docs/ARCHITECTURE.md, "Threads and locks"): b->mu guards
 * everything in a batcher but what is set at create.  An item's cancel runs
 * under the item future's mutex and takes b->mu inside it, so the order is
 * future, then batcher: nothing takes a future's mutex (settle, start)
 * while holding b->mu.
 */
#ifndef WP_BATCHER_H
#define WP_BATCHER_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "future.h"
#include "list.h"
#include "util.h"

typedef struct batch batch;

typedef struct item {
    wp_future    future;   /* first: an item is its future */
    wp_batcher  *b;
    wp_list      node;     /* in b->pending_items or b->cancelled (under b->mu), or on none */
    bool         pending;  /* in b->pending_items */
    batch       *half;     /* the half it waits in to be sent again (under b->mu), or NULL */
    size_t       slot;     /* while half: its place in half->items */
    uint64_t     seq;      /* submit order, for flush */
    int64_t      submitted_us;
    size_t       len;
    char         data[];
} item;

struct batch {
    wp_batcher *b;
    wp_list     node;     /* in b->flying once submitted, in b->halves while a half waits
                             to be sent (under b->mu), or on none */
    wp_future  *future;   /* while in b->flying: its task's future (a reference) */
    bool        from_split; /* a half: made by splitting a batch that crashed or timed out */
    size_t      bytes;    /* its packed argument's size, at most max_message */
    size_t      n;
    item       *items[];
};

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
    wp_list            halves;       /* halves of split batches waiting to be sent, oldest first */
    size_t             half_items;   /* items in those halves */
    wp_future        **to_cancel;    /* scratch, max_in_flight */
    bool               grace_spent;  /* past the grace, everything was cancelled once */
    uint64_t           next_seq, flush_upto;
    bool               closing;
    wp_stop            stop;
    int64_t            grace_deadline; /* ms, -1 = none */
    pthread_t          thread;

    wp_batcher_stats   st;           /* under mu */
};

/* Under b->mu: the oldest pending item (there is one).  O(1). */
static inline item *wp__oldest_pending(const wp_batcher *b)
{
    assert(b->pending > 0);
    return WP_LIST_ENTRY(wp__list_first(&b->pending_items), item, node);
}

/* Under b->mu: it leaves the pending list. */
static inline void wp__pending_remove(wp_batcher *b, item *it)
{
    assert(it->pending && b->pending > 0);
    wp__list_remove(&it->node);
    it->pending = false;
    b->pending--;
}

/* A batch of room for n items, on no list, sent by no one yet; NULL if
   out of memory. */
static inline batch *wp__batch_new(wp_batcher *b, size_t n)
{
    batch *bt = malloc(sizeof *bt + n * sizeof bt->items[0]);
    if (bt == NULL)
        return NULL;
    bt->b = b;
    wp__list_init(&bt->node);
    bt->future = NULL;
    bt->from_split = false;
    bt->bytes = 0;
    bt->n = 0;
    return bt;
}

/* batcher.c: how an item's future is cancelled and freed. */
extern const future_ops wp__item_ops WP_INTERNAL;

/* batchthread.c: the batcher's thread (arg: the batcher). */
void *wp__batcher_main(void *arg) WP_INTERNAL;
/* The batcher whose thread this is, or NULL. */
const wp_batcher *wp__batcher_of_thread(void) WP_INTERNAL;

/* batchsplit.c (docs/ARCHITECTURE.md, "Poison-item isolation").  With no
   lock held, on the thread that saw bt's task end with this error: split
   bt into two halves for the batcher thread to send, and true (bt's items
   are theirs now, bt is only to be finished); or false, bt's items to
   settle with the error as without isolate: isolate is off, the error is
   neither WP_ECRASHED nor WP_ETIMEDOUT, bt holds one item (counted in
   st.isolated if it is a half), the shutdown grace is over, or no memory. */
bool wp__batch_split(batch *bt, int error) WP_INTERNAL;
/* Under b->mu: take the oldest waiting half out of b->halves to be sent
   (NULL if none).  O(its items). */
batch *wp__half_take(wp_batcher *b) WP_INTERNAL;
/* Under b->mu: if the item waits in a half, take it out of it (a half left
   with no item is freed: it is never sent) and true.  O(1). */
bool wp__half_drop(wp_batcher *b, item *it) WP_INTERNAL;
/* Under b->mu: every item of every waiting half onto list (by its node),
   and the halves freed.  O(their items). */
void wp__halves_drain(wp_batcher *b, wp_list *list) WP_INTERNAL;

#endif
