/* SPDX-License-Identifier: MIT */
/*
 * workerpool — run work in isolated worker processes, get futures back.
 *
 * Any thread submits a task (a function pointer and a copy of its argument
 * bytes); a dispatcher thread hands it over a pipe to a forked worker
 * process; the result comes back over a pipe and settles the task's future,
 * which any number of threads can wait on.  A worker that crashes, hangs past
 * its deadline or is cancelled takes down only its own task: the future says
 * why, and the pool starts a replacement.  A batcher can sit on top and group
 * single items into batches that run as one task.
 *
 * Conventions
 *   - Every function that can fail returns int: 0 on success or a negative
 *     WP_E* code; wp_strerror() names a code.
 *   - Option structs: every zero field means the default, and a NULL
 *     options pointer means all defaults.  errno is never used: neither read
 *     nor promised to mean anything after a call.
 *   - Growing structs: every option and stats struct ends in a reserved
 *     array.  Later releases carve new fields out of it, so the struct's size
 *     and every existing field's offset never change within a SONAME.  Option
 *     structs: reserved must be zero (WP_EINVAL otherwise), so a program that
 *     sets a field this library does not know yet gets an error, not a
 *     silently ignored setting; zero-initialize the whole struct, as
 *     `wp_pool_options o = { .workers = 4 };` does.  Stats structs: the
 *     library writes the reserved part as zeros.
 *   - Times are int64_t milliseconds; -1 means "no limit" for waits.
 *   - Handles are opaque.  Only wp_* symbols are exported.
 *
 * Fork safety: workers are forked, not exec'd, so that function pointers mean
 * the same thing in the worker as in the caller.  By default
 * (WP_START_FORKSERVER) wp_pool_create() forks one small single-threaded fork
 * server that forks every worker, so create pools early, before your program
 * starts threads of its own.  See wp_pool_options.start_method.
 */
#ifndef WORKERPOOL_H
#define WORKERPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbol visibility: the library is built with -fvisibility=hidden and only
   what is marked here is exported. */
#if defined(__GNUC__) && __GNUC__ >= 4
# define WP_EXTERN __attribute__((visibility("default")))
#else
# define WP_EXTERN
#endif

/* --------------------------------------------------------------- version */

/* The version this header belongs to (configure reads it from here).
   Semantic versioning: within one major version (from 1.0 on) nothing in
   this header is removed or changes meaning; during 0.x a minor release may
   change the ABI, and the library's SONAME then changes with it. */
#define WP_VERSION_MAJOR 0
#define WP_VERSION_MINOR 4
#define WP_VERSION_PATCH 0
/* 0xMMmmpp: compare with wp_version() to learn what the running library is. */
#define WP_VERSION_HEX ((WP_VERSION_MAJOR << 16) | (WP_VERSION_MINOR << 8) | WP_VERSION_PATCH)

/* The running library's version as WP_VERSION_HEX would spell it (may be
   newer than the header the program was built with). */
WP_EXTERN unsigned wp_version(void);
/* The running library's version as "MAJOR.MINOR.PATCH", e.g. "0.2.0";
   static storage, never NULL. */
WP_EXTERN const char *wp_version_string(void);

/* ---------------------------------------------------------------- errors */

/*
 * Error and outcome codes: distinct, stable, negative (names and values never
 * change).  One table, WP_ERRNO_MAP, lists each code once as
 * XX(name, value, description); the enum below and the words wp_strerror()
 * returns are both made from it, so they cannot disagree.  A program can
 * expand it too, e.g. to name every code in a log.
 */
#define WP_ERRNO_MAP(XX)                                                             \
    XX(EINVAL,    -1,  "invalid argument")                                           \
    XX(ENOMEM,    -2,  "out of memory")                                              \
    XX(EAGAIN,    -3,  "would block: the queue is full, or nothing is ready yet")    \
    XX(ETIMEDOUT, -4,  "timed out: a wait ran out, or a task ran past its deadline") \
    XX(ECANCELED, -5,  "cancelled")                                                  \
    XX(ESHUTDOWN, -6,  "the pool or batcher no longer accepts work")                 \
    XX(ECRASHED,  -7,  "the worker died while running the task")                     \
    XX(ETASK,     -8,  "the task function reported failure")                         \
    XX(E2BIG,     -9,  "an argument or result is larger than max_message")           \
    XX(EPROTO,    -10, "the wire protocol between pool and worker was broken")       \
    XX(ESPAWN,    -11, "workers or threads could not be started")                    \
    XX(ENOFUNC,   -12, "the function is not callable in the worker")                 \
    XX(EBUSY,     -13, "busy: the operation cannot happen now")                     \
    XX(EEXPIRED,  -14, "expired before it started")

#define WP_ERRNO_ENUM_(name, value, description) WP_##name = (value),
enum { WP_ERRNO_MAP(WP_ERRNO_ENUM_) };
#undef WP_ERRNO_ENUM_

/* The description of a WP_E* code from WP_ERRNO_MAP, "success" for 0,
   "unknown error" for anything else; static storage, never NULL. */
WP_EXTERN const char *wp_strerror(int code);

/* ----------------------------------------------------- tasks and results */

typedef struct wp_buf wp_buf;

/*
 * A task function.  Runs in a worker process with a private copy of the
 * argument bytes (aligned for any type).  Append the result with
 * wp_buf_append().  Return 0 on success; any other value is the task's own
 * failure code: the future fails with WP_ETASK and wp_future_code() returns
 * that value.  The function must be present in the worker's image: defined in
 * the program or in a library loaded before the pool was created.
 */
typedef int (*wp_task_fn)(const void *arg, size_t arg_len, wp_buf *result);

/* Append len bytes to a result.  0, WP_EINVAL, WP_ENOMEM, or WP_E2BIG when
   the result would cross max_message (the task then fails with WP_E2BIG
   even if it returns 0). */
WP_EXTERN int wp_buf_append(wp_buf *b, const void *data, size_t len);

/* Mark the result as failed with the task's own code and a message for
   people (copied; may be NULL).  Returns code, so a task can write
   `return wp_buf_fail(result, 3, "cannot open input");`.  The future fails
   with WP_ETASK whatever the task then returns. */
WP_EXTERN int wp_buf_fail(wp_buf *b, int code, const char *message);

/* ------------------------------------------------------------------- pool */

typedef struct wp_pool wp_pool;

enum {
    WP_START_FORKSERVER = 0, /* workers forked by a single-threaded fork server (default) */
    WP_START_FORK       = 1, /* the dispatcher thread forks workers itself */
    WP_START_EXEC       = 2  /* since 0.4: workers are fresh exec'd images of the program */
};

typedef struct wp_pool_options {
    unsigned workers;              /* worker processes; 0 = online CPUs */
    unsigned queue_capacity;       /* tasks waiting for a worker; 0 = 1024 (rounded up to a power of two) */
    unsigned max_tasks_per_worker; /* replace a worker after this many tasks; 0 = never */
    size_t   max_message;          /* largest argument or result, bytes; 0 = 64 MiB */
    size_t   worker_memory_limit;  /* address-space limit per worker, bytes; 0 = none */
    int      start_method;         /* WP_START_FORKSERVER (0, default), WP_START_FORK or
                                      WP_START_EXEC */
    int    (*worker_init)(void *ctx); /* run once in each new worker; non-zero = it failed to start */
    void    *worker_init_ctx;
    int64_t  start_timeout_ms;     /* a worker not ready (worker_init done) this long after it was
                                      asked for is killed and counts as a failed start; 0 = 10000 */
    size_t   worker_rss_limit;     /* since 0.3: a worker whose resident set is above this many
                                      bytes after a task is replaced before its next one, no
                                      task failing (graceful, unlike worker_memory_limit); 0 = none */
    uint64_t reserved[7];          /* must be zero: room for later fields (see Conventions) */
} wp_pool_options;

/*
 * Create a pool and start its workers.  opts NULL = all defaults.
 * WP_START_FORKSERVER forks the fork server here, before the dispatcher
 * thread exists.  WP_START_FORK makes the dispatcher fork workers from the
 * whole program: only safe when the rest of the program is single-threaded or
 * fork-safe (a lock held by another thread at fork time stays held forever in
 * the worker).
 * WP_START_EXEC starts every worker as a fresh image of the program
 * (posix_spawn of /proc/self/exe), never a fork of it: safe whatever threads
 * or runtimes (OpenMP, CUDA) the program has started.  The library takes
 * the worker role before main runs, so the program needs no change, and
 * finds each task function by its place in its own object (the executable
 * or a shared library), so ASLR does not matter.  A worker has the
 * program's code and the initial values of its globals, nothing main or
 * any thread set: worker_init builds per-worker state, and worker_init_ctx
 * must be NULL or point into the program's static data (WP_EINVAL
 * otherwise: a heap or stack pointer means nothing in another image).
 * Constructors that run after the library's own (C++ globals of the
 * executable) have not run in a worker.  The workers are the program's
 * children, as with WP_START_FORK (see "Host programs" in the manual).
 * Returns 0, WP_EINVAL, WP_ENOMEM or WP_ESPAWN (threads, pipes or the fork
 * server could not be created).  Workers that fail to start later are retried
 * with backoff; tasks fail with WP_ESPAWN if none can start.
 */
WP_EXTERN int wp_pool_create(wp_pool **out, const wp_pool_options *opts);

/*
 * Stop accepting work (WP_ESHUTDOWN from then on), let queued and running
 * tasks finish for up to grace_ms (-1 = as long as they take, 0 = not at
 * all), then cancel what is left (a running task's worker is killed) —
 * except running WP_TASK_SHIELD tasks: cancel cannot stop them, so they
 * run to their end or their own deadline, and shutdown waits for them.
 * Returns when every future has settled and every worker process is gone and
 * reaped.  Idempotent, and safe from any thread; a later call with a shorter
 * grace shortens it.  Returns 0, WP_EINVAL (pool NULL), or WP_EBUSY when
 * called from a done-callback or from task code (it would deadlock).
 */
WP_EXTERN int wp_pool_shutdown(wp_pool *pool, int64_t grace_ms);

/* wp_pool_shutdown(pool, -1) if not done yet, then free the pool.  Futures
   still held stay readable until released.  Other threads may be inside
   wp_pool_shutdown() meanwhile: destroy frees the pool only once they have
   returned.  Every other call on the pool must happen before destroy
   begins (the pool is gone after it).  Must not be called from a
   done-callback or task code (it then does nothing). */
WP_EXTERN void wp_pool_destroy(wp_pool *pool);

/*
 * Since 0.3.  Change the number of workers to `workers` (0 = online CPUs,
 * at most 1024).  Growing starts the new workers at once; shrinking
 * retires workers between tasks: a retiring worker finishes the task it
 * runs, the tasks queued behind it go to the other workers, and then it
 * stops.  No task fails, runs twice or waits forever because of a resize.
 * Returns as soon as the change is decided (not when workers have
 * started or stopped); the last call wins.  0, WP_EINVAL (pool NULL,
 * workers > 1024, or the descriptor limit cannot hold that many workers),
 * WP_ESHUTDOWN (after wp_pool_shutdown began).  Safe from any thread,
 * including done-callbacks.
 */
WP_EXTERN int wp_pool_resize(wp_pool *pool, unsigned workers);

typedef struct wp_pool_stats {
    uint64_t submitted;       /* tasks accepted by wp_submit */
    uint64_t succeeded;       /* settled WP_SUCCEEDED */
    uint64_t failed;          /* settled WP_FAILED, whatever the reason */
    uint64_t cancelled;       /* settled WP_CANCELLED */
    uint64_t timed_out;       /* of failed: past their deadline */
    uint64_t crashed;         /* of failed: their worker died */
    uint64_t retried;         /* extra attempts started */
    uint64_t workers_started; /* worker processes that reached ready */
    unsigned queued;          /* right now: waiting for a worker */
    unsigned running;         /* right now: running in a worker */
    unsigned workers_alive;   /* right now: worker processes ready or busy */
    uint64_t expired;         /* since 0.3, of failed: not started within queue_timeout_ms */
    uint64_t workers_recycled; /* since 0.3: workers replaced for passing worker_rss_limit */
    uint64_t reserved[6];     /* written as zeros: room for later counters */
} wp_pool_stats;

/* Fill *out: 0, or WP_EINVAL if pool or out is NULL.  Lock-free and cheap
   enough to poll for a progress bar.  submitted == succeeded + failed +
   cancelled + (tasks not yet settled); a future's outcome is counted before
   the future is seen settled. */
WP_EXTERN int wp_pool_get_stats(wp_pool *pool, wp_pool_stats *out);

/* ------------------------------------------------------------- submitting */

/* wp_task_options.priority's range. */
enum { WP_PRIORITY_MIN = -2, WP_PRIORITY_MAX = 2 };

enum {
    WP_TASK_NOWAIT = 1u << 0, /* WP_EAGAIN instead of blocking on a full queue */
    WP_TASK_SHIELD = 1u << 1  /* once running, cancel cannot stop it (WP_EBUSY) */
};

typedef struct wp_task_options {
    int64_t  timeout_ms;     /* run-time limit per attempt, counted from the start of
                                the attempt in a worker; the worker is killed past it
                                and the task fails with WP_ETIMEDOUT; 0 = none */
    unsigned retries;        /* further attempts after WP_ECRASHED, WP_ETIMEDOUT or WP_ETASK
                                (never after a cancel); the future settles with the last
                                attempt's outcome and is WP_PENDING between attempts; 0 = none */
    unsigned retry_delay_ms; /* wait before the first retry, doubled for each next one
                                (at most 2^20 times); 0 = at once */
    unsigned flags;          /* WP_TASK_NOWAIT, WP_TASK_SHIELD */
    int64_t  queue_timeout_ms; /* since 0.3: a task not started within this long of its
                                submit never runs and fails with WP_EEXPIRED; 0 = none */
    int      priority;       /* since 0.3: WP_PRIORITY_MIN (-2) .. WP_PRIORITY_MAX (2),
                                0 = normal: a waiting task of higher priority starts
                                before any of lower, equal ones in submit order */
    uint32_t reserved_pad;   /* must be zero */
    uint64_t reserved[2];    /* must be zero: room for later fields (see Conventions) */
} wp_task_options;

typedef struct wp_future wp_future;

/*
 * Submit fn(arg, arg_len) to run in a worker.  The argument bytes are copied
 * before this returns.  opts NULL = defaults.  On success *out (if out is not
 * NULL) holds one reference to the task's future: release it with
 * wp_future_release().  With out NULL the task still runs and its outcome
 * only shows in the stats.  Blocks while the queue is full unless
 * WP_TASK_NOWAIT is set, or the caller is a done-callback on a dispatcher
 * thread: there it never blocks, and a full queue gives WP_EAGAIN.
 * Returns 0, WP_EINVAL (pool or fn NULL, arg NULL with arg_len > 0, a negative
 * timeout or queue timeout, a priority outside -2 .. 2, unknown flags or set
 * reserved words), WP_ESHUTDOWN, WP_EAGAIN (WP_TASK_NOWAIT and the
 * queue is full), WP_E2BIG (arg_len > max_message) or WP_ENOMEM.  On failure
 * nothing was queued and *out is NULL.
 */
WP_EXTERN int wp_submit(wp_pool *pool, wp_task_fn fn, const void *arg, size_t arg_len,
              const wp_task_options *opts, wp_future **out);

/*
 * Submit n tasks of one function: item i's bytes are task i's argument.
 * The same as n calls of wp_submit with these options — each item has its
 * own future (out[i], if out is not NULL), deadline, retries and cancel,
 * and a crash fails only the item that was running — but the pool may
 * carry several items to a worker at once and run them back to back,
 * choosing how many by itself.  Returns 0 once all n are queued (blocking
 * while the queue is full, as wp_submit does; with WP_TASK_NOWAIT it stops
 * at the first item that does not fit, WP_EAGAIN).  On any error,
 * items[0 .. *accepted) were queued and the rest were not (their out[i]
 * are NULL); accepted may be NULL.  Errors as wp_submit's, for the first
 * item that failed.
 */
typedef struct wp_item {
    const void *data;
    size_t len;
} wp_item;

WP_EXTERN int wp_submit_many(wp_pool *pool, wp_task_fn fn, const wp_item *items, size_t n,
                             const wp_task_options *opts, wp_future **out, size_t *accepted);

/* ---------------------------------------------------------------- futures */

/* Future states.  The last three are "settled" and never change again. */
enum { WP_PENDING, WP_RUNNING, WP_SUCCEEDED, WP_FAILED, WP_CANCELLED };

/* The state right now (without blocking); WP_EINVAL if f is NULL. */
WP_EXTERN int wp_future_state(const wp_future *f);

/* Wait until the future settles or timeout_ms passes (-1 = no limit, 0 =
   just look).  0 once settled, WP_ETIMEDOUT if not yet, WP_EINVAL if f is
   NULL.  Any number of threads may wait on one future at once. */
WP_EXTERN int wp_future_wait(wp_future *f, int64_t timeout_ms);

/* Settled: 0 on success or the outcome code (WP_ETASK, WP_ECRASHED,
   WP_ETIMEDOUT, WP_ECANCELED, WP_EEXPIRED, WP_EPROTO, WP_E2BIG, WP_ESPAWN,
   WP_ENOFUNC;
   for a batcher item also WP_ENOMEM, and WP_EPROTO or WP_ENOMEM from the
   batcher's own thread).  WP_EINVAL if f is NULL.
   Not yet settled: WP_EAGAIN. */
WP_EXTERN int wp_future_error(const wp_future *f);

/* On success: the result bytes (owned by the future, valid until its last
   reference is released; aligned for any type) and their length in *len
   (len may be NULL); never NULL on success, even for an empty result.
   Otherwise NULL and *len = 0. */
WP_EXTERN const void *wp_future_result(const wp_future *f, size_t *len);

/* WP_ETASK: the task's own code; WP_ECRASHED: the signal number, or 256 +
   exit status if the worker exited; otherwise 0. */
WP_EXTERN int wp_future_code(const wp_future *f);

/* Why it failed, for people (e.g. "worker 1234 killed by SIGSEGV"); "" on
   success or while unsettled.  Valid until the last reference is released. */
WP_EXTERN const char *wp_future_message(const wp_future *f);

/*
 * Cancel the task.  A queued task never runs; a running one has its worker
 * killed and replaced (no other task is touched).  Either way the future
 * settles as WP_CANCELLED with WP_ECANCELED, promptly, on the dispatcher
 * thread (a batcher item still pending: on the batcher's thread).  During a
 * retry delay the cancel wins.
 * Returns 0 (it will settle as cancelled, even if it was about to finish),
 * WP_EINVAL (already settled, or f NULL) or WP_EBUSY (a WP_TASK_SHIELD task
 * already running, or a batcher item in a batch sent and not yet done; one
 * waiting in a half of a batch that isolate split is pending again).
 */
WP_EXTERN int wp_future_cancel(wp_future *f);

/*
 * A done-callback.  Runs exactly once: on the dispatcher thread when the
 * future settles, or at once in the registering thread if it has already
 * settled.  It must not block (no waits on other futures, no
 * wp_pool_shutdown/destroy): every other future of the pool waits behind it.
 */
typedef void (*wp_done_fn)(wp_future *f, void *ctx);

/* Register a done-callback.  0, WP_EINVAL (f or fn NULL) or WP_ENOMEM.
   Callbacks run in registration order, after the future's waiters are
   woken: a callback may still be running (or not yet started) when
   wp_future_wait() or wp_wait_all() on its future has returned, so what
   ctx points to must live until the callback has run — to be sure, until
   wp_pool_shutdown() or wp_pool_destroy() has returned. */
WP_EXTERN int wp_future_on_done(wp_future *f, wp_done_fn fn, void *ctx);

/* Reference counting.  wp_submit hands the caller one reference; the pool
   holds its own until the task settles.  Release order does not matter.
   Both accept NULL. */
WP_EXTERN void wp_future_retain(wp_future *f);
WP_EXTERN void wp_future_release(wp_future *f);

/* Wait until any of fs[0..n) has settled: 0 and *index = the lowest settled
   index, or WP_ETIMEDOUT, WP_EINVAL (fs NULL, n 0, a NULL entry) or
   WP_ENOMEM (no memory to wait on them all). */
WP_EXTERN int wp_wait_any(wp_future *const *fs, size_t n, int64_t timeout_ms, size_t *index);

/* Wait until all of fs[0..n) have settled, whatever their outcomes: 0, or
   WP_ETIMEDOUT, WP_EINVAL or WP_ENOMEM. */
WP_EXTERN int wp_wait_all(wp_future *const *fs, size_t n, int64_t timeout_ms);

/* ------------------------------------------------------ completion queues */

/*
 * A completion queue delivers futures in the order they settle, each
 * exactly once, in O(1) per future (Python's as_completed).  Any number of
 * threads may add and take at once.
 */
typedef struct wp_cq wp_cq;

/* A new, empty completion queue: 0, WP_EINVAL (out NULL) or WP_ENOMEM. */
WP_EXTERN int wp_cq_create(wp_cq **out);

/* Watch f: the cq takes a reference of its own, and once f has settled (at
   once if it already has) wp_cq_next delivers it.  Each add is one delivery.
   0, WP_EINVAL (cq or f NULL) or WP_ENOMEM. */
WP_EXTERN int wp_cq_add(wp_cq *cq, wp_future *f);

/* The next future to have settled, in settle order: 0 and *f set (the
   cq's reference passes to the caller, who releases it); WP_ETIMEDOUT if
   none settled within timeout_ms (-1 = no limit, 0 = do not wait);
   WP_EAGAIN at once if no watched future is left undelivered; WP_EINVAL. */
WP_EXTERN int wp_cq_next(wp_cq *cq, int64_t timeout_ms, wp_future **f);

/* Free the cq, releasing every future it never delivered (those still
   running are released as they settle).  No thread may be in wp_cq_next
   or wp_cq_add on it. */
WP_EXTERN void wp_cq_destroy(wp_cq *cq);

/* ---------------------------------------------------------------- batcher */

typedef struct wp_batcher wp_batcher;

/*
 * A batch function.  Runs in a worker process: n items in, result i goes to
 * results[i].  Return non-zero to fail the whole batch (every item fails
 * with WP_ETASK and that code); wp_buf_fail(results[i], ...) fails item i
 * alone.  A batch the library itself cannot unpack or pack in the worker
 * fails every item with WP_EPROTO or WP_ENOMEM (code 0, never retried).
 * Item bytes are not aligned: memcpy them out before reading anything wider
 * than a byte.
 */
typedef int (*wp_batch_fn)(const wp_item *items, size_t n, wp_buf *const *results);

typedef struct wp_batcher_options {
    size_t   max_batch_size;  /* 0 = 64 */
    int64_t  max_wait_ms;     /* longest the first item of a batch waits for it to fill; 0 = 10 */
    unsigned max_in_flight;   /* batches running at once; 0 = the pool's worker count */
    size_t   max_pending;     /* items waiting for a batch; 0 = 65536; past it submit blocks or WP_EAGAIN */
    wp_task_options task;     /* timeout, retries, flags, priority and queue timeout applied
                                 to each batch */
    unsigned isolate;         /* since 0.3, 0 = off: a batch that crashes or times out (after
                                 its retries) is split in halves and the halves re-run, down
                                 to single items, so only the items that crash or hang fail
                                 (with that outcome) and every other item gets its result;
                                 about 2·log2(n) more batches per poison item in n */
    uint32_t reserved_pad;    /* must be zero */
    uint64_t reserved[3];     /* must be zero: room for later fields (see Conventions) */
} wp_batcher_options;

/* Create a batcher that runs fn on pool.  0, WP_EINVAL (out, pool or fn
   NULL, a negative time, unknown task flags, set reserved words), WP_ENOMEM,
   WP_ESPAWN (its thread could not be started), WP_ESHUTDOWN (the pool is
   shutting down), WP_EBUSY (from a done-callback or task code).  Item futures settle on the pool's
   dispatcher thread (their done-callbacks run there), except pending items
   that are cancelled, which settle on the batcher's own thread.  A batch
   carries at most max_message bytes in all, so one item may be up to
   max_message - 24 bytes. */
WP_EXTERN int wp_batcher_create(wp_batcher **out, wp_pool *pool, wp_batch_fn fn,
                      const wp_batcher_options *opts);

/* Submit one item (copied); *out gets its future (out may be NULL; NULL on
   failure).  Blocks while max_pending items wait (never in a done-callback
   on a dispatcher or batcher thread: there it gives WP_EAGAIN).  0,
   WP_EINVAL, WP_ESHUTDOWN (the batcher or its pool is shutting down),
   WP_E2BIG (item too large for a batch), WP_ENOMEM, WP_EAGAIN.  Items still
   pending when the pool shuts down settle WP_CANCELLED (WP_ECANCELED), as
   the pool's own queued tasks do. */
WP_EXTERN int wp_batcher_submit(wp_batcher *b, const void *item, size_t len, wp_future **out);

/* As wp_batcher_submit, with flags: WP_TASK_NOWAIT gives WP_EAGAIN instead
   of blocking; any other flag is WP_EINVAL. */
WP_EXTERN int wp_batcher_submit_opts(wp_batcher *b, const void *item, size_t len,
                           unsigned flags, wp_future **out);

/* Send what is waiting now, full or not (still at most max_in_flight
   batches at once).  0, WP_EINVAL, WP_ESHUTDOWN. */
WP_EXTERN int wp_batcher_flush(wp_batcher *b);

/* Stop accepting, flush, wait up to grace_ms for batches to finish (-1 = as
   long as they take, 0 = not at all), then cancel what is left: pending
   items, and batches in flight (their tasks are cancelled, unless
   WP_TASK_SHIELD, which runs to the end).  Every item future settles before
   this returns.  Idempotent; a later call with a shorter grace shortens it.
   0, WP_EINVAL, WP_EBUSY (from a done-callback or task code). */
WP_EXTERN int wp_batcher_shutdown(wp_batcher *b, int64_t grace_ms);

/* wp_batcher_shutdown(b, -1) if not done, then free it.  Call it before
   destroying the pool.  As with wp_pool_destroy, other threads may be
   inside wp_batcher_shutdown() meanwhile; no other call may race it. */
WP_EXTERN void wp_batcher_destroy(wp_batcher *b);

typedef struct wp_batcher_stats {
    uint64_t items;             /* items accepted */
    uint64_t batches;           /* batches sent (with isolate, halves too) */
    uint64_t items_batched;     /* items sent in those batches (again for each half) */
    double   mean_batch_size;   /* items_batched / batches */
    uint64_t wait_us_total;     /* sum over sent items of submit-to-send time, µs (includes
                                   waiting for a free in-flight slot, not only for the batch
                                   to fill) */
    uint64_t wait_us_max;       /* longest submit-to-send time, µs */
    double   mean_wait_us;      /* wait_us_total / items_batched */
    unsigned pending;           /* right now: items waiting for a batch (or a half) */
    unsigned in_flight;         /* right now: batches running */
    uint64_t isolated;          /* since 0.3: items that failed alone after isolate split
                                   their batch */
    uint64_t reserved[7];       /* written as zeros: room for later counters */
} wp_batcher_stats;

/* Fill *out: 0, or WP_EINVAL if b or out is NULL. */
WP_EXTERN int wp_batcher_get_stats(wp_batcher *b, wp_batcher_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* WORKERPOOL_H */
