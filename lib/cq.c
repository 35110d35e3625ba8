/* SPDX-License-Identifier: MIT */
/*
 * cq.c — completion queues: futures delivered in the order they settle
 * (as_completed), in O(1) per future.
 *
 * wp_cq_add takes a reference on the future and registers a done-callback
 * with the cq as its context.  The callback, on whatever thread settles the
 * future, appends the future to a circular FIFO under the cq's mutex and
 * signals its condition variable; wp_cq_next pops from the front.  The
 * FIFO's room is reserved at add time (capacity >= futures watched and not
 * yet delivered), so a callback never allocates and never fails.
 *
 * A cq may be destroyed while futures it watches are still running: their
 * callbacks still have to run, so the cq is reference counted (one for its
 * owner, one per callback not yet run) and a callback that finds it
 * destroyed only releases its future.
 */
#include "config.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util.h"

#define CQ_FIRST_CAPACITY 16

struct wp_cq {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    wp_future     **ring;      /* settled, not yet delivered: ring[head .. head+ready) mod cap */
    size_t          cap, head, ready;
    size_t          watched;   /* added and not yet delivered (ready or still running) */
    size_t          refs;      /* 1 while not destroyed, + callbacks not yet run */
    size_t          waiters;   /* threads in wp_cq_next */
    bool            destroyed;
};

static void cq_free(wp_cq *cq)
{
    wp__lock_destroy(&cq->mu, &cq->cv);
    free(cq->ring);
    free(cq);
}

/* Under mu: drop one reference; true if it was the last (free it then,
   after unlocking). */
static bool cq_unref(wp_cq *cq)
{
    assert(cq->refs > 0);
    return --cq->refs == 0;
}

int wp_cq_create(wp_cq **out)
{
    if (out == NULL)
        return WP_EINVAL;
    *out = NULL;
    wp_cq *cq = calloc(1, sizeof *cq);
    if (cq == NULL)
        return WP_ENOMEM;
    if (wp__lock_init(&cq->mu, &cq->cv) < 0) {
        free(cq);
        return WP_ENOMEM;
    }
    cq->refs = 1;
    *out = cq;
    return 0;
}

/* Under mu: make room for `need` futures in the ring, keeping its order.
   Amortised O(1) per add: the ring doubles. */
static int cq_reserve(wp_cq *cq, size_t need)
{
    if (need <= cq->cap)
        return 0;
    size_t cap = cq->cap ? cq->cap : CQ_FIRST_CAPACITY;
    while (cap < need)
        cap *= 2;
    wp_future **ring = malloc(cap * sizeof *ring);
    if (ring == NULL)
        return WP_ENOMEM;
    for (size_t i = 0; i < cq->ready; i++)
        ring[i] = cq->ring[(cq->head + i) % cq->cap];
    free(cq->ring);
    cq->ring = ring;
    cq->cap = cap;
    cq->head = 0;
    return 0;
}

/* The done-callback: f settled (on the settling thread). */
static void cq_settled(wp_future *f, void *ctx)
{
    wp_cq *cq = ctx;
    pthread_mutex_lock(&cq->mu);
    bool keep = !cq->destroyed;
    if (keep) {
        assert(cq->ready < cq->cap); /* reserved by wp_cq_add */
        cq->ring[(cq->head + cq->ready) % cq->cap] = f;
        cq->ready++;
        if (cq->waiters > 0)
            pthread_cond_signal(&cq->cv);
    }
    bool last = cq_unref(cq);
    pthread_mutex_unlock(&cq->mu);
    if (!keep)
        wp_future_release(f); /* the cq's reference: nobody will take it */
    if (last)
        cq_free(cq);
}

int wp_cq_add(wp_cq *cq, wp_future *f)
{
    if (cq == NULL || f == NULL)
        return WP_EINVAL;
    pthread_mutex_lock(&cq->mu);
    assert(!cq->destroyed);
    int rc = cq_reserve(cq, cq->watched + 1);
    if (rc == 0) {
        cq->watched++;
        cq->refs++; /* for the callback */
    }
    pthread_mutex_unlock(&cq->mu);
    if (rc < 0)
        return rc;
    wp_future_retain(f);
    /* Outside mu: on a settled future the callback runs here, at once. */
    rc = wp_future_on_done(f, cq_settled, cq);
    if (rc < 0) {
        pthread_mutex_lock(&cq->mu);
        cq->watched--;
        bool last = cq_unref(cq);
        pthread_mutex_unlock(&cq->mu);
        assert(!last); /* the owner's reference is still there */
        WP_UNUSED(last);
        wp_future_release(f);
    }
    return rc;
}

int wp_cq_next(wp_cq *cq, int64_t timeout_ms, wp_future **f)
{
    if (f != NULL)
        *f = NULL;
    if (cq == NULL || f == NULL)
        return WP_EINVAL;
    int64_t deadline = wp__deadline_after(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&cq->mu);
    cq->waiters++;
    while (cq->ready == 0 && rc == 0) {
        if (cq->watched == 0)
            rc = WP_EAGAIN; /* nothing left that could come */
        else if (deadline >= 0 && wp__now_ms() >= deadline)
            rc = WP_ETIMEDOUT;
        else if (deadline < 0)
            pthread_cond_wait(&cq->cv, &cq->mu);
        else {
            struct timespec ts;
            wp__timespec_at_ms(&ts, deadline);
            pthread_cond_timedwait(&cq->cv, &cq->mu, &ts);
        }
    }
    cq->waiters--;
    if (rc == 0) {
        *f = cq->ring[cq->head];
        cq->head = (cq->head + 1) % cq->cap;
        cq->ready--;
        cq->watched--;
        if (cq->watched == 0 && cq->waiters > 0)
            pthread_cond_broadcast(&cq->cv); /* the others get WP_EAGAIN */
    }
    pthread_mutex_unlock(&cq->mu);
    return rc;
}

void wp_cq_destroy(wp_cq *cq)
{
    if (cq == NULL)
        return;
    pthread_mutex_lock(&cq->mu);
    assert(!cq->destroyed && cq->waiters == 0);
    cq->destroyed = true;
    /* Delivered to nobody: the cq's references go now (a release frees at
       most the future, never calls out).  Futures still running are
       released by their callbacks. */
    for (size_t i = 0; i < cq->ready; i++)
        wp_future_release(cq->ring[(cq->head + i) % cq->cap]);
    cq->ready = 0;
    bool last = cq_unref(cq);
    pthread_mutex_unlock(&cq->mu);
    if (last)
        cq_free(cq);
}
