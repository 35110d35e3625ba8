/* SPDX-License-Identifier: MIT */
/*
 * util.h — the small internal header every part of the library shares:
 * the monotonic clock, locks and condition variables, descriptors, the pid
 * cache (util.c), and processes — pidfds, reaping, killing groups, listing
 * children (process.c).  Nothing here knows about pools or tasks.
 *
 * The library's one error convention, for every internal function as for
 * the API (as libuv's, whose internal functions return UV__ERR(errno)): a
 * function that can fail returns 0 — or a count, a descriptor: something
 * >= 0 — on success, and a negative WP_E* code on failure; never -1 with
 * errno, never -errno.  Where a message for people needs the system's own
 * reason, the errno value travels beside the code, in an out-parameter
 * named *os_error (or a field saying it is an errno value), and is put
 * into words by wp__strerror.  A predicate that cannot fail returns bool.
 */
#ifndef WP_UTIL_H
#define WP_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "workerpool.h"

#define WP_INTERNAL __attribute__((visibility("hidden")))
#define WP_UNUSED(x) ((void)(x))

/* Bytes of a message the library writes for people (a future's message,
   why a start failed, a system error's words): they are all one line. */
#define WP_MSG_MAX 192

/* A cache line, as Concurrency Kit's CK_MD_CACHELINE: fields that
   different threads write sit at least this far apart, so that one
   thread's writes do not keep taking the line from under another's. */
#define WP_CACHELINE 64

/* first doubled `doublings` times, but at most max_doublings times and
   never past cap: the one exponential backoff (worker starts, a failing
   ppoll, retry delays).  first >= 0; first << max_doublings must fit. */
static inline int64_t wp__backoff(int64_t first, unsigned doublings, unsigned max_doublings,
                                  int64_t cap)
{
    int64_t wait = first << (doublings < max_doublings ? doublings : max_doublings);
    return wait < cap ? wait : cap;
}

/* Saturating time arithmetic: any time up to INT64_MAX means "that long",
   never an overflow.  Both take non-negative values. */
static inline int64_t wp__sat_add(int64_t a, int64_t b)
{
    return b > INT64_MAX - a ? INT64_MAX : a + b;
}
static inline int64_t wp__ms_to_us(int64_t ms)
{
    return ms > INT64_MAX / 1000 ? INT64_MAX : ms * 1000;
}

/* Whether a public struct's reserved words are all zero (header,
   "Growing structs"): a set one names a field of a later release. */
#define WP_RESERVED_ZERO(s) wp__all_zero((s)->reserved, sizeof (s)->reserved / sizeof (s)->reserved[0])
static inline bool wp__all_zero(const uint64_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (w[i] != 0)
            return false;
    return true;
}

/* Milliseconds and microseconds on CLOCK_MONOTONIC. */
int64_t wp__now_ms(void) WP_INTERNAL;
int64_t wp__now_us(void) WP_INTERNAL;

/* A deadline `timeout_ms` from now; -1 stays -1 ("never"). */
int64_t wp__deadline_after(int64_t timeout_ms) WP_INTERNAL;

/* Fill a struct timespec for pthread_cond_timedwait on CLOCK_MONOTONIC. */
struct timespec;
void wp__timespec_at_ms(struct timespec *ts, int64_t at_ms) WP_INTERNAL;
/* A span of us >= 0 microseconds as a struct timespec (ppoll, nanosleep). */
void wp__timespec_of_us(struct timespec *ts, int64_t us) WP_INTERNAL;

/*
 * Locks.  Every condition variable's timed waits use CLOCK_MONOTONIC, so a
 * wall clock step never stretches or cuts a timeout.  Initialising can fail
 * (the system is out of memory or of some resource), and is checked, as
 * libuv's uv_mutex_init is: 0 or WP_ENOMEM, nothing to destroy on failure.
 * Lock, unlock, wait and signal on an initialised default mutex fail only
 * on misuse, a bug of the library's, and are not checked.
 */
#include <pthread.h>
int  wp__cond_init_monotonic(pthread_cond_t *cv) WP_INTERNAL;
/* A mutex and a condition variable that go together: both or neither. */
int  wp__lock_init(pthread_mutex_t *mu, pthread_cond_t *cv) WP_INTERNAL;
void wp__lock_destroy(pthread_mutex_t *mu, pthread_cond_t *cv) WP_INTERNAL;

/* Shutdown with a grace: the deadline in force after a call asking for
   `asked` (-1 = none).  A first call sets it; a later one can only
   shorten it. */
int64_t wp__grace_deadline(bool first, int64_t current, int64_t asked) WP_INTERNAL;

/* How a pool's or batcher's own thread stops, under the owner's mutex:
   shutdown callers wait for `stopped`, one of them joins, and destroy frees
   the owner only once every shutdown call in progress has returned. */
typedef struct wp_stop {
    bool        stopped;  /* the thread has done its last work (set by it) */
    bool        joined;   /* a caller has claimed the join */
    atomic_uint callers;  /* shutdown calls in progress (wp__stop_enter) */
} wp_stop;

/* First thing a shutdown call does, before it touches anything else. */
void wp__stop_enter(wp_stop *st) WP_INTERNAL;
/* A shutdown call that leaves early (locks and unlocks mu). */
void wp__stop_leave(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st) WP_INTERNAL;
/* A shutdown call's second step, after wp__stop_enter: WP_EBUSY (having
   left) when the caller must not wait (a done-callback, task code); else
   0 with mu locked and *deadline the grace's end for grace_ms (-1, none,
   for any negative grace_ms). */
int  wp__stop_begin(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st, bool must_not_wait,
                    int64_t grace_ms, int64_t *deadline) WP_INTERNAL;
/* With mu held: wait on cv until st->stopped; the first caller to get there
   joins thread; then leave as wp__stop_leave.  Returns with mu unlocked. */
void wp__await_stop(pthread_mutex_t *mu, pthread_cond_t *cv, wp_stop *st,
                    pthread_t thread) WP_INTERNAL;
/* A destroy, after its own shutdown call returned shutdown_rc: false if
   that refused (WP_EBUSY: the owner must not go); else wait until no
   other shutdown call is in progress (locks and unlocks mu) and return
   true: the owner may be freed now. */
bool wp__stop_may_free(int shutdown_rc, pthread_mutex_t *mu, pthread_cond_t *cv,
                       wp_stop *st) WP_INTERNAL;

/* 0, or WP_EINVAL (fd is not an open descriptor: fcntl's one failure). */
int wp__fd_set_nonblock(int fd) WP_INTERNAL;

/* Make room for `more` descriptors beyond those open now: if the soft
   RLIMIT_NOFILE is too low, raise it to the hard limit (as Go's runtime
   does).  0, or WP_EINVAL if even the hard limit is too low. */
int wp__fd_budget(unsigned more) WP_INTERNAL;

/* Close every descriptor >= lowfd except those listed (close_range where the
   kernel has it, /proc/self/fd otherwise).  Async-signal-safe enough to call
   right after fork. */
void wp__close_fds_except(int lowfd, const int *keep, size_t nkeep) WP_INTERNAL;

/* strerror(err) into buf, thread-safe (strerror_r); returns buf. */
const char *wp__strerror(int err, char *buf, size_t size) WP_INTERNAL;

/* ----------------------------------------------- process.c: processes */

/* pidfd_open(2): the pidfd, or WP_ENOFUNC when there is none to be had (a
   kernel before 5.3, or no descriptor left): the caller goes without. */
int wp__pidfd_open(pid_t pid) WP_INTERNAL;
/* pidfd_send_signal(2).  A process that is gone needs no signal, so there
   is nothing to report. */
void wp__pidfd_kill(int pidfd, int sig) WP_INTERNAL;
/* Has the process behind pidfd exited already (poll, no wait)? */
bool wp__pidfd_exited(int pidfd) WP_INTERNAL;

/* Every signal back to its default action, none blocked: what a process
   the library forks does first, so that nothing the program set up (SIGCHLD
   ignored or SA_NOCLDWAIT, handlers, a mask) rules it.  Async-signal-safe. */
void wp__reset_signals(void) WP_INTERNAL;

/* What wp__reap found. */
typedef enum reap_result {
    REAP_NOT_YET = 0, /* it has not ended (only without block), or someone else
                         is reaping it right now: ask again */
    REAP_DONE    = 1, /* reaped: *status is its wait status */
    REAP_LOST    = 2  /* someone else reaped it (the program ignores SIGCHLD or
                         reaps every child): its status is lost */
} reap_result;

/*
 * Reap the child pid, through its pidfd where there is one (>= 0: it names
 * that process, never a later one with the same pid).  Where the kernel
 * keeps a reaped process's status for the holders of its pidfd (Linux
 * 6.15), a process someone else reaped is REAP_DONE with that status.
 */
reap_result wp__reap(pid_t pid, int pidfd, bool block, int *status) WP_INTERNAL;

/*
 * SIGKILL the child pid and its process group (a worker leads its own, so
 * this takes what its task forked too).  Through the pidfd where there is
 * one: the group as well from Linux 6.9, safe even once pid is reaped.
 * Otherwise the group by number, which the caller must know cannot have
 * been reused: pid is its child and nobody has reaped it yet.
 */
void wp__kill_group(pid_t pid, int pidfd) WP_INTERNAL;

/* Call fn for every child of this process (single-threaded: the children
   of its one thread) and return how many calls returned true: 0 also when
   they cannot be listed (no /proc), which to the fork server, the one
   caller, is the same as none: it cannot kill what it cannot see.  From
   /proc/self/task/<pid>/children, or where the kernel lacks that file
   from wp__each_child_by_stat.  O(children), or O(processes) by stat. */
typedef bool (*wp_child_fn)(pid_t child, void *ctx);
int wp__each_child(wp_child_fn fn, void *ctx) WP_INTERNAL;
/* The same by reading every /proc/<pid>/stat for its parent's pid. */
int wp__each_child_by_stat(wp_child_fn fn, void *ctx) WP_INTERNAL;

/* "SIGSEGV" for SIGSEGV, "signal 42" for what has no name; static storage
   for known signals, buf otherwise. */
const char *wp__signal_name(int sig, char *buf, size_t size) WP_INTERNAL;

/* Describe a wait status for people: "killed by SIGSEGV", "exited with
   status 3".  Returns the future code (wp_future_code in the header): the
   signal number, or EXITED_CODE_BASE + the exit status. */
#define EXITED_CODE_BASE 256 /* above every signal number */
#define SIGNAL_NAME_MAX  32  /* room for "signal 64" and the like */
int wp__describe_status(int status, char *buf, size_t size) WP_INTERNAL;

/* getpid() without a system call: cached, and reset in every child by a
   pthread_atfork handler (so a forked copy of a pool knows it is a copy). */
pid_t wp__getpid(void) WP_INTERNAL;


#endif
