/*
 * testutil.h — task functions and helpers shared by the Check suites: real
 * workers that succeed, fail, crash, hang, leak or break the protocol.
 */
#ifndef WP_TESTUTIL_H
#define WP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

/* Task functions (they run in worker processes). */
int tu_echo(const void *arg, size_t len, wp_buf *out);        /* result = arg */
int tu_empty(const void *arg, size_t len, wp_buf *out);       /* result = nothing */
int tu_fail(const void *arg, size_t len, wp_buf *out);        /* wp_buf_fail(code = *(int*)arg, "tu_fail") */
int tu_return(const void *arg, size_t len, wp_buf *out);      /* returns *(int*)arg, no wp_buf_fail */
int tu_segv(const void *arg, size_t len, wp_buf *out);        /* dies of SIGSEGV */
int tu_abort(const void *arg, size_t len, wp_buf *out);       /* dies of SIGABRT */
int tu_exit(const void *arg, size_t len, wp_buf *out);        /* _exit(*(int*)arg) */
int tu_hang(const void *arg, size_t len, wp_buf *out);        /* for (;;) */
int tu_sleep(const void *arg, size_t len, wp_buf *out);       /* sleeps *(int64_t*)arg ms, echoes */
int tu_garbage(const void *arg, size_t len, wp_buf *out);     /* writes junk to the pool's pipe */
int tu_big_result(const void *arg, size_t len, wp_buf *out);  /* *(size_t*)arg bytes of pattern */
int tu_alloc(const void *arg, size_t len, wp_buf *out);       /* malloc *(size_t*)arg bytes; WP_ETASK(12) if NULL */
int tu_pid(const void *arg, size_t len, wp_buf *out);         /* result = getpid() */
int tu_count_fds(const void *arg, size_t len, wp_buf *out);   /* result = int: open fds >= 3 */

/* Fill buf with a pattern derived from i (for checking big payloads). */
void tu_pattern(void *buf, size_t len, unsigned seed);
int  tu_pattern_ok(const void *buf, size_t len, unsigned seed);

/* A pool with n workers and the given start method; fails the test if it
   cannot be created. */
wp_pool *tu_pool(unsigned workers, int start_method);

/* Submit and wait for one task; returns the future (caller releases). */
wp_future *tu_run(wp_pool *p, wp_task_fn fn, const void *arg, size_t len,
                  const wp_task_options *opts);

/* Is a process with this pid still there (not yet reaped counts as there)? */
int tu_pid_alive(int pid);

#endif
