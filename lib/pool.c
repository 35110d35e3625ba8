/* SPDX-License-Identifier: MIT */
/*
 * pool.c — the pool's public API (include/workerpool.h): create, shutdown,
 * destroy and submit (the stats are task.c's, beside the counters).
 * Everything that happens after a task is queued is the dispatcher's
 * (dispatch.c, schedule.c, window.c, window_io.c, slot.c, task.c; the map
 * is docs/ARCHITECTURE.md).
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pool_impl.h"
#include "relay.h"

static int normalize_options(wp_pool_options *o, const wp_pool_options *in)
{
    *o = in != NULL ? *in : (wp_pool_options){ 0 };
    if (!WP_RESERVED_ZERO(o) ||
        (o->start_method != WP_START_FORKSERVER && o->start_method != WP_START_FORK &&
         o->start_method != WP_START_EXEC))
        return WP_EINVAL;
    if (o->workers == 0)
        o->workers = wp__online_cpus();
    if (o->workers > MAX_WORKERS || o->queue_capacity > QUEUE_MAX_CAPACITY)
        return WP_EINVAL;
    if (o->max_message == 0)
        o->max_message = DEFAULT_MAX_MESSAGE;
    if (o->start_timeout_ms < 0)
        return WP_EINVAL;
    if (o->start_timeout_ms == 0)
        o->start_timeout_ms = DEFAULT_START_TIMEOUT_MS;
    if (o->max_message > MAX_MESSAGE_LIMIT)
        return WP_EINVAL;
    return 0;
}

/* The tables sized for MAX_WORKERS (pool_impl.h, "Resizing"): mapped, not
   allocated, so that pages of slots never used are never touched — a
   pool of one worker pays for one slot, not 1024 (malloc may serve a big
   calloc from the heap and clear all of it).  MAP_SHARED for the claim
   words every worker shares, MAP_PRIVATE for the dispatcher's own. */
#define SHARED_BYTES (sizeof(worker_shared) * MAX_WORKERS)
#define SLOTS_BYTES  (sizeof(slot) * MAX_WORKERS)
#define PFDS_BYTES   (sizeof(struct pollfd) * (PFD_FIXED + PFD_PER_WORKER * MAX_WORKERS))

static void *map_zeroed(size_t len, int share)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, share | MAP_ANONYMOUS, -1, 0);
    return m != MAP_FAILED ? m : NULL;
}

static void unmap(void *m, size_t len)
{
    if (m != NULL)
        munmap(m, len);
}

static void pool_free(wp_pool *p)
{
    if (p->slots != NULL) /* slots_made: the dispatcher is gone, or never ran */
        for (unsigned i = 0; i < p->slots_made; i++)
            wp__frame_reader_reset(&p->slots[i].in);
    if (p->relay_stop != NULL) /* the dispatcher closed the socket: the relay ends */
        p->relay_stop(p->relay_ctx);
    wp__queue_destroy(&p->queue);
    wp__lock_destroy(&p->stop_mu, &p->stop_cv);
    if (p->use_exec)
        wp__exec_release(&p->exec);
    unmap(p->shared, SHARED_BYTES);
    unmap(p->slots, SLOTS_BYTES);
    unmap(p->pfds, PFDS_BYTES);
    free(p->rbuf);
    free(p);
}

static int start_dispatcher(wp_pool *p)
{
    /* Signals go to the program's threads, never to the dispatcher; a
       blocked SIGPIPE turns a write to a dead worker into EPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, wp__dispatcher_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* A relayed pool's fork server: a socket whose other end a relay serves
   (lib/relay.h), and what to call when the pool is done with it. */
typedef struct relay_end {
    int   sock;
    void (*stop)(void *ctx);
    void *ctx;
} relay_end;

static int pool_make(wp_pool **out, const wp_pool_options *opts, const relay_end *relay)
{
    *out = NULL;
    wp_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return WP_ENOMEM;
    int rc = normalize_options(&p->opts, opts);
    if (rc == 0)
        rc = wp__fd_budget(FDS_FIXED + FDS_PER_WORKER * p->opts.workers);
    if (rc < 0) {
        free(p);
        return rc;
    }
    rc = wp__queue_init(&p->queue, p->opts.queue_capacity);
    if (rc == 0 && (rc = wp__lock_init(&p->stop_mu, &p->stop_cv)) < 0)
        wp__queue_destroy(&p->queue);
    if (rc < 0) {
        free(p);
        return rc;
    }
    atomic_init(&p->cancels, NULL);
    atomic_init(&p->stop.callers, 0);
    atomic_init(&p->closing, false);
    atomic_init(&p->grace_deadline, -1);
    atomic_init(&p->target, p->opts.workers); /* the dispatcher's first turn starts them */
    wp__line_init(p);
    p->run_avg_us = WINDOW_BUDGET_US; /* start with short windows: tasks may be long */
    p->owner = wp__getpid();
    p->wcfg = (worker_config){
        .slots = MAX_WORKERS,
        .max_message = p->opts.max_message,
        .max_tasks = p->opts.max_tasks_per_worker,
        .memory_limit = p->opts.worker_memory_limit,
        .rss_limit = p->opts.worker_rss_limit,
        .init = p->opts.worker_init,
        .init_ctx = p->opts.worker_init_ctx,
    };
    /* Shared with every worker, for as many as a resize may ask: mapped
       before the fork server is forked; from a memfd for exec'd workers. */
    p->use_exec = p->opts.start_method == WP_START_EXEC;
    void *shared = NULL;
    if (p->use_exec && (rc = wp__exec_prepare(&p->exec, &p->wcfg, &shared, SHARED_BYTES)) < 0) {
        p->use_exec = false;
        pool_free(p);
        return rc;
    }
    p->shared = p->use_exec ? shared : map_zeroed(SHARED_BYTES, MAP_SHARED);
    p->wcfg.shared = p->shared;
    p->slots = map_zeroed(SLOTS_BYTES, MAP_PRIVATE);
    p->pfds = map_zeroed(PFDS_BYTES, MAP_PRIVATE);
    p->rbuf = malloc(READ_BUF_BYTES);
    if (p->shared == NULL || p->slots == NULL || p->pfds == NULL || p->rbuf == NULL) {
        pool_free(p);
        return WP_ENOMEM;
    }
    p->use_forkserver = p->opts.start_method == WP_START_FORKSERVER || relay != NULL;
    if (relay != NULL) { /* the relay is its fork server; its workers claim nothing */
        p->relayed = true;
        p->fs = (forkserver){ .pid = 0, .sock = relay->sock };
        (void)wp__fd_set_nonblock(relay->sock);
    } else if (p->use_forkserver && wp__forkserver_start(&p->fs, &p->wcfg) < 0) {
        pool_free(p);
        return WP_ESPAWN;
    }
    if (start_dispatcher(p) != 0) {
        if (p->use_forkserver && !p->relayed)
            wp__forkserver_stop(&p->fs);
        pool_free(p);
        return WP_ESPAWN;
    }
    if (relay != NULL) { /* from now on the pool owns the socket and calls stop */
        p->relay_stop = relay->stop;
        p->relay_ctx = relay->ctx;
    }
    *out = p;
    return 0;
}

int wp_pool_create(wp_pool **out, const wp_pool_options *opts)
{
    return out != NULL ? pool_make(out, opts, NULL) : WP_EINVAL;
}

int wp__relay_pool_create(wp_pool **out, const wp_pool_options *opts, int sock,
                          void (*stop)(void *ctx), void *ctx)
{
    if (out == NULL || sock < 0 || stop == NULL)
        return WP_EINVAL;
    relay_end relay = { .sock = sock, .stop = stop, .ctx = ctx };
    return pool_make(out, opts, &relay);
}

bool wp__pool_must_not_wait(const wp_pool *p)
{
    return wp__is_dispatcher_of(p) || wp__getpid() != p->owner;
}

/* The size asked last (a batcher created now takes it as its default
   max_in_flight), not how many workers are alive. */
unsigned wp__pool_workers(wp_pool *p)
{
    return atomic_load(&p->target);
}

size_t wp__pool_max_message(const wp_pool *p)
{
    return p->opts.max_message;
}

bool wp__pool_closing(wp_pool *p)
{
    return atomic_load(&p->closing);
}

int wp_pool_shutdown(wp_pool *pool, int64_t grace_ms)
{
    if (pool == NULL)
        return WP_EINVAL;
    wp__stop_enter(&pool->stop); /* first: destroy waits for it before it frees */
    int64_t deadline;
    int rc = wp__stop_begin(&pool->stop_mu, &pool->stop_cv, &pool->stop,
                            wp__pool_must_not_wait(pool), grace_ms, &deadline);
    if (rc < 0)
        return rc;
    atomic_store(&pool->grace_deadline,
                 wp__grace_deadline(!atomic_load(&pool->closing),
                                    atomic_load(&pool->grace_deadline), deadline));
    atomic_store(&pool->closing, true);
    wp__queue_close(&pool->queue);
    wp__queue_kick(&pool->queue);
    wp__await_stop(&pool->stop_mu, &pool->stop_cv, &pool->stop, pool->thread);
    return 0;
}

void wp_pool_destroy(wp_pool *pool)
{
    if (pool != NULL &&
        wp__stop_may_free(wp_pool_shutdown(pool, -1), &pool->stop_mu, &pool->stop_cv, &pool->stop))
        pool_free(pool);
}

int wp__task_options_check(const wp_task_options *o)
{
    if (o->timeout_ms < 0 || o->queue_timeout_ms < 0 ||
        o->priority < WP_PRIORITY_MIN || o->priority > WP_PRIORITY_MAX ||
        (o->flags & ~(unsigned)(WP_TASK_NOWAIT | WP_TASK_SHIELD)) != 0 ||
        o->reserved_pad != 0 || !WP_RESERVED_ZERO(o))
        return WP_EINVAL;
    return 0;
}

/* One task of wp_submit or wp_submit_many, its arguments checked. */
static int submit_one(wp_pool *pool, wp_task_fn fn, const void *arg, size_t arg_len,
                      const wp_task_options *opts, bool nowait, wp_future **out)
{
    if (arg_len > pool->opts.max_message)
        return WP_E2BIG;
    /* Small arguments share the record (one allocation); big ones have
       their own, freed as soon as the task settles. */
    bool inline_arg = arg_len <= ARG_INLINE_MAX;
    task *t = calloc(1, sizeof *t + (inline_arg ? arg_len : 0));
    if (t != NULL && inline_arg)
        t->arg = arg_len > 0 ? (char *)(t + 1) : NULL;
    else if (t != NULL)
        t->arg = malloc(arg_len);
    if (t == NULL || (arg_len > 0 && t->arg == NULL)) {
        free(t);
        return WP_ENOMEM;
    }
    t->arg_inline = inline_arg;
    if (arg_len > 0)
        memcpy(t->arg, arg, arg_len);
    t->arg_len = arg_len;
    t->fn = fn;
    t->pool = pool;
    t->opts = (task_options){ .timeout_ms = opts->timeout_ms,
                              .queue_timeout_ms = opts->queue_timeout_ms, .retries = opts->retries,
                              .retry_delay_ms = opts->retry_delay_ms, .flags = opts->flags };
    t->level = (unsigned)(opts->priority - WP_PRIORITY_MIN);
    if (opts->queue_timeout_ms > 0) /* from now: the submit */
        t->expire_us = wp__sat_add(wp__now_us(), wp__ms_to_us(opts->queue_timeout_ms));
    t->expiring_at = NOT_EXPIRING;
    t->queued = true;
    t->slot = -1;
    wp__list_init(&t->held_node);
    if (wp__future_init(&t->future, &wp__task_ops) < 0) {
        if (!inline_arg)
            free(t->arg);
        free(t);
        return WP_ENOMEM;
    }
    if (out != NULL)
        wp_future_retain(&t->future);

    atomic_fetch_add(&pool->n.submitted, 1);
    int rc = wp__queue_push(&pool->queue, t, nowait, t->expire_us > 0 ? RANK_DEADLINE : t->level);
    if (rc < 0) {
        atomic_fetch_sub(&pool->n.submitted, 1);
        if (out != NULL)
            wp_future_release(&t->future);
        wp_future_release(&t->future);
        return rc;
    }
    if (out != NULL)
        *out = &t->future;
    return 0;
}

static const wp_task_options default_task_options;

/* The checks wp_submit and wp_submit_many share: WP_EINVAL, WP_ESHUTDOWN
   or 0; *opts NULL becomes the defaults; and whether pushes must not block. */
static int submit_check(wp_pool *pool, wp_task_fn fn, const wp_task_options **opts, bool *nowait)
{
    if (*opts == NULL)
        *opts = &default_task_options;
    if (pool == NULL || fn == NULL || wp__task_options_check(*opts) < 0)
        return WP_EINVAL;
    if (wp__getpid() != pool->owner)
        return WP_ESHUTDOWN; /* a worker's copy of the pool runs nothing */
    /* On a dispatcher thread (a done-callback) a full queue may only drain
       through this very thread: answer WP_EAGAIN rather than wait. */
    *nowait = ((*opts)->flags & WP_TASK_NOWAIT) != 0 || wp__on_dispatcher();
    return 0;
}
int wp_submit(wp_pool *pool, wp_task_fn fn, const void *arg, size_t arg_len,
              const wp_task_options *opts, wp_future **out)
{
    if (out != NULL)
        *out = NULL;
    bool nowait;
    int rc = submit_check(pool, fn, &opts, &nowait);
    if (rc == 0 && arg == NULL && arg_len > 0)
        rc = WP_EINVAL;
    return rc < 0 ? rc : submit_one(pool, fn, arg, arg_len, opts, nowait, out);
}

int wp_submit_many(wp_pool *pool, wp_task_fn fn, const wp_item *items, size_t n,
                   const wp_task_options *opts, wp_future **out, size_t *accepted)
{
    if (accepted != NULL)
        *accepted = 0;
    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = NULL;
    bool nowait;
    int rc = submit_check(pool, fn, &opts, &nowait);
    if (rc == 0 && items == NULL && n > 0)
        rc = WP_EINVAL;
    /* Task by task: the queue carries them to the dispatcher, which writes
       every task it has for a worker in one go, so items travel and run
       together without a chunk size. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (items[i].data == NULL && items[i].len > 0)
            rc = WP_EINVAL;
        else
            rc = submit_one(pool, fn, items[i].data, items[i].len, opts, nowait,
                            out != NULL ? &out[i] : NULL);
        if (rc == 0 && accepted != NULL)
            *accepted = i + 1;
    }
    return rc;
}
