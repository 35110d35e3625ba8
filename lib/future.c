/* SPDX-License-Identifier: MIT */
/*
 * future.c — futures: settle once, wait with timeouts, done-callbacks,
 * reference counts, wp_wait_any / wp_wait_all (see future.h).
 *
 * wp_wait_any and wp_wait_all register one small link per future pointing
 * at a shared counting waiter (its own mutex and condition variable): each
 * settle counts down and only the last one the waiter needs wakes it, so
 * waiting for 10,000 futures costs one wake-up, not 10,000.  Lock order is
 * future, then waiter.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "future.h"

typedef struct future_callback {
    wp_list    node;  /* in f->callbacks until it runs */
    wp_done_fn fn;
    void      *ctx;
} future_callback;

typedef struct future_waiter {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    size_t          settled;  /* linked futures that settled since linking */
    size_t          target;   /* wake once settled reaches it; 0 = not set yet */
} future_waiter;

typedef struct future_waiter_link {
    wp_list        node;    /* in f->waiters while linked */
    future_waiter *waiter;  /* NULL: its future had settled already */
} future_waiter_link;

/* Wait on cv until deadline_ms (-1 = none); false once it has passed. */
static bool cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    if (deadline_ms < 0) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    struct timespec ts;
    wp__timespec_at_ms(&ts, deadline_ms);
    return pthread_cond_timedwait(cv, mu, &ts) != ETIMEDOUT;
}

int wp__future_init(wp_future *f, const future_ops *ops)
{
    assert(ops != NULL && ops->cancel != NULL && ops->free != NULL);
    int rc = wp__lock_init(&f->mu, &f->cv);
    if (rc < 0)
        return rc;
    atomic_init(&f->refs, 1);
    atomic_init(&f->state, WP_PENDING);
    f->cancel_requested = false;
    f->error = 0;
    f->code = 0;
    f->message = NULL;
    f->result = NULL;
    f->result_len = 0;
    wp__list_init(&f->callbacks);
    wp__list_init(&f->waiters);
    f->ops = ops;
    return 0;
}

/* The state changes only under f->mu; it is atomic for the readers that
   take no lock (wp_future_state and the settled() checks). */
static bool transition(wp_future *f, int from, int to)
{
    pthread_mutex_lock(&f->mu);
    bool ok = !f->cancel_requested && atomic_load(&f->state) == from;
    if (ok)
        atomic_store(&f->state, to);
    pthread_mutex_unlock(&f->mu);
    return ok;
}

bool wp__future_start(wp_future *f)
{
    return transition(f, WP_PENDING, WP_RUNNING);
}

bool wp__future_requeue(wp_future *f)
{
    return transition(f, WP_RUNNING, WP_PENDING);
}

/* Under f->mu (lock order: future, then waiter).  O(waiters). */
static void wake_waiters(wp_future *f)
{
    WP_LIST_FOREACH(node, &f->waiters) {
        future_waiter *w = WP_LIST_ENTRY(node, future_waiter_link, node)->waiter;
        pthread_mutex_lock(&w->mu);
        if (++w->settled == w->target)
            pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static void run_callback(wp_future *f, future_callback *cb)
{
    cb->fn(f, cb->ctx);
    free(cb);
}

/* With no lock held: run and free every callback of a list taken out of
   f->callbacks at settle time, in order. */
static void run_callbacks(wp_future *f, wp_list *cbs)
{
    wp_list *node;
    while ((node = wp__list_first(cbs)) != NULL) {
        wp__list_remove(node);
        run_callback(f, WP_LIST_ENTRY(node, future_callback, node));
    }
}

int wp__future_settle(wp_future *f, int error, int code, const char *message,
                      void *result, size_t result_len)
{
    assert(error <= 0); /* 0 or a WP_E* outcome */
    pthread_mutex_lock(&f->mu);
    if (wp__future_is_settled(atomic_load(&f->state))) {
        pthread_mutex_unlock(&f->mu);
        free(result);
        return WP_EINVAL;
    }
    if (f->cancel_requested && error != WP_ECANCELED) {
        error = WP_ECANCELED;
        code = 0;
        message = "cancelled";
    }
    int state = error == 0 ? WP_SUCCEEDED : error == WP_ECANCELED ? WP_CANCELLED : WP_FAILED;
    f->error = error;
    f->code = error == 0 ? 0 : code;
    if (error == 0) {
        f->result = result;
        f->result_len = result_len;
    } else {
        free(result);
        /* A message that cannot be copied is left out, never a crash. */
        f->message = message != NULL ? strdup(message) : NULL;
    }
    if (f->ops->settling != NULL)
        f->ops->settling(f, state, error);
    wp_list cbs; /* run below, outside f->mu */
    wp__list_init(&cbs);
    wp__list_move_all(&f->callbacks, &cbs);
    /* Release: every field above is visible to whoever sees the state. */
    atomic_store_explicit(&f->state, state, memory_order_release);
    pthread_cond_broadcast(&f->cv);
    wake_waiters(f);
    pthread_mutex_unlock(&f->mu);
    run_callbacks(f, &cbs);
    return state;
}

/* ------------------------------------------------------------- public API */

int wp_future_state(const wp_future *f)
{
    if (f == NULL)
        return WP_EINVAL;
    return atomic_load_explicit(&((wp_future *)f)->state, memory_order_acquire);
}

static bool settled(const wp_future *f)
{
    return wp__future_is_settled(wp_future_state(f));
}

int wp_future_wait(wp_future *f, int64_t timeout_ms)
{
    if (f == NULL)
        return WP_EINVAL;
    if (settled(f))
        return 0;
    int64_t deadline = wp__deadline_after(timeout_ms);
    pthread_mutex_lock(&f->mu);
    while (!settled(f) && cond_wait_until(&f->cv, &f->mu, deadline))
        ;
    pthread_mutex_unlock(&f->mu);
    return settled(f) ? 0 : WP_ETIMEDOUT;
}

int wp_future_error(const wp_future *f)
{
    if (f == NULL)
        return WP_EINVAL;
    return settled(f) ? f->error : WP_EAGAIN;
}

const void *wp_future_result(const wp_future *f, size_t *len)
{
    bool ok = f != NULL && wp_future_state(f) == WP_SUCCEEDED;
    if (len != NULL)
        *len = ok ? f->result_len : 0;
    /* An empty success still answers non-NULL, so NULL always means "no". */
    if (!ok)
        return NULL;
    return f->result != NULL ? f->result : (const void *)"";
}

int wp_future_code(const wp_future *f)
{
    return f != NULL && settled(f) ? f->code : 0;
}

const char *wp_future_message(const wp_future *f)
{
    if (f == NULL || !settled(f) || f->message == NULL)
        return "";
    return f->message;
}

int wp_future_cancel(wp_future *f)
{
    if (f == NULL)
        return WP_EINVAL;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    if (wp__future_is_settled(atomic_load(&f->state)))
        rc = WP_EINVAL;
    else if (!f->cancel_requested) {
        rc = f->ops->cancel(f);
        if (rc == 0)
            f->cancel_requested = true;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int wp_future_on_done(wp_future *f, wp_done_fn fn, void *ctx)
{
    if (f == NULL || fn == NULL)
        return WP_EINVAL;
    future_callback *cb = malloc(sizeof *cb);
    if (cb == NULL)
        return WP_ENOMEM;
    wp__list_init(&cb->node);
    cb->fn = fn;
    cb->ctx = ctx;
    pthread_mutex_lock(&f->mu);
    bool now = settled(f);
    if (!now)
        wp__list_push_back(&f->callbacks, &cb->node);
    pthread_mutex_unlock(&f->mu);
    if (now)
        run_callback(f, cb);
    return 0;
}

void wp_future_retain(wp_future *f)
{
    /* Relaxed: the caller holds a reference already, so the count cannot
       reach zero meanwhile, and the new reference publishes nothing. */
    if (f != NULL)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void wp_future_release(wp_future *f)
{
    if (f == NULL)
        return;
    /* acq_rel: this thread's writes happen before the free, and the
       freeing thread sees every other holder's writes (the last release
       acquires what each earlier one released). */
    int was = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
    assert(was > 0); /* a release without a reference */
    if (was != 1)
        return;
    free(f->result);
    free(f->message);
    wp__lock_destroy(&f->mu, &f->cv);
    f->ops->free(f);
}

/* ------------------------------------------------------- waiting for many */

static bool valid_set(wp_future *const *fs, size_t n)
{
    if (fs == NULL || n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (fs[i] == NULL)
            return false;
    return true;
}

static bool lowest_settled(wp_future *const *fs, size_t n, size_t *index)
{
    for (size_t i = 0; i < n; i++)
        if (settled(fs[i])) {
            if (index != NULL)
                *index = i;
            return true;
        }
    return false;
}

static void unlink_waiter(wp_future *f, future_waiter_link *l)
{
    pthread_mutex_lock(&f->mu);
    assert(wp__list_linked(&l->node));
    wp__list_remove(&l->node);
    pthread_mutex_unlock(&f->mu);
}

/* Link w into every unsettled future of fs (links[i] for fs[i]; settled
   ones are marked by a NULL waiter).  Returns how many are unsettled.
   O(n), one lock of each future. */
static size_t link_waiter(wp_future *const *fs, size_t n, future_waiter *w,
                          future_waiter_link *links)
{
    size_t unsettled = 0;
    for (size_t i = 0; i < n; i++) {
        wp_future *f = fs[i];
        wp__list_init(&links[i].node);
        links[i].waiter = NULL;
        pthread_mutex_lock(&f->mu);
        if (!settled(f)) {
            links[i].waiter = w;
            wp__list_push_back(&f->waiters, &links[i].node);
            unsettled++;
        }
        pthread_mutex_unlock(&f->mu);
    }
    return unsettled;
}

/* Wait until `needed` of the futures in fs have settled (counting those
   already settled), or the deadline passes. */
static int wait_for_settles(wp_future *const *fs, size_t n, size_t needed, int64_t timeout_ms)
{
    int64_t deadline = wp__deadline_after(timeout_ms);
    future_waiter_link *links = malloc(n * sizeof *links);
    if (links == NULL)
        return WP_ENOMEM;
    future_waiter w = { .settled = 0, .target = 0 };
    if (wp__lock_init(&w.mu, &w.cv) < 0) {
        free(links);
        return WP_ENOMEM;
    }
    /* Not under w.mu: settling takes the future's mutex, then w.mu. */
    size_t already = n - link_waiter(fs, n, &w, links);
    pthread_mutex_lock(&w.mu);
    w.target = already >= needed ? 0 : needed - already;
    while (w.target > 0 && w.settled < w.target && cond_wait_until(&w.cv, &w.mu, deadline))
        ;
    bool done = w.settled >= w.target;
    pthread_mutex_unlock(&w.mu);
    for (size_t i = 0; i < n; i++)
        if (links[i].waiter != NULL)
            unlink_waiter(fs[i], &links[i]);
    wp__lock_destroy(&w.mu, &w.cv);
    free(links);
    return done ? 0 : WP_ETIMEDOUT;
}

int wp_wait_any(wp_future *const *fs, size_t n, int64_t timeout_ms, size_t *index)
{
    if (!valid_set(fs, n))
        return WP_EINVAL;
    if (!lowest_settled(fs, n, index) && timeout_ms != 0) {
        int rc = wait_for_settles(fs, n, 1, timeout_ms);
        if (rc == WP_ENOMEM)
            return rc;
    }
    return lowest_settled(fs, n, index) ? 0 : WP_ETIMEDOUT;
}

int wp_wait_all(wp_future *const *fs, size_t n, int64_t timeout_ms)
{
    if (!valid_set(fs, n))
        return WP_EINVAL;
    size_t first = 0;
    while (first < n && settled(fs[first]))
        first++;
    if (first == n)
        return 0;
    if (timeout_ms == 0)
        return WP_ETIMEDOUT;
    return wait_for_settles(fs + first, n - first, n - first, timeout_ms);
}
