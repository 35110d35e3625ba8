/* SPDX-License-Identifier: MIT */
/*
 * check_future.c — futures (lib/future.c): settle once; the public readers
 * for every outcome; cancel requests; waits with timeouts and from many
 * threads; done-callbacks; reference counts; wp_wait_any / wp_wait_all;
 * NULL arguments; wp_strerror.
 *
 * The futures here are embedded in a test-owned record with its own
 * future_ops (a configurable cancel answer, a free that counts).  Threads
 * are ordered with joins and barriers, or by polling what they are waiting
 * for (a waiter linked into a future, a thread's scheduler state in /proc);
 * nothing sleeps to let things happen.
 *
 * This file holds what the suite's files share (check_future.h: the test
 * record, waiting for a thread to block) and its main; the tests are in one
 * file per concern, run in this order:
 *   check_future_settle.c     settling once, the readers, cancel requests;
 *   check_future_wait.c       waits with timeouts and from many threads;
 *   check_future_callbacks.c  done-callbacks and reference counts;
 *   check_future_many.c       wp_wait_any and wp_wait_all;
 *   check_future_api.c        NULL arguments and wp_strerror.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check_future.h"

/* --------------------------------------------------------- test record */

atomic_int g_frees;

int rec_cancel(wp_future *f)
{
    rec *r = (rec *)f;
    atomic_fetch_add(&r->cancel_calls, 1);
    return r->cancel_rc;
}

void rec_free(wp_future *f)
{
    atomic_fetch_add(&g_frees, 1);
    free(f);
}

static const future_ops rec_ops = { .cancel = rec_cancel, .free = rec_free };

rec *new_rec(int cancel_rc)
{
    rec *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->cancel_rc = cancel_rc;
    atomic_init(&r->cancel_calls, 0);
    wp__future_init(&r->f, &rec_ops);
    return r;
}

wp_future *new_future(void)
{
    return &new_rec(0)->f;
}

void *dup_bytes(const char *s)
{
    char *p = strdup(s);
    ck_assert_ptr_nonnull(p);
    return p;
}

int settle_ok(wp_future *f, const char *result)
{
    return wp__future_settle(f, 0, 0, NULL, result ? dup_bytes(result) : NULL,
                             result ? strlen(result) : 0);
}

/* ------------------------------------------------ waiting for a thread */

/* Until the thread is blocked in the kernel (a futex wait: state S). */
void wait_thread_sleeping(atomic_int *tid_slot)
{
    int tid;
    while ((tid = atomic_load(tid_slot)) == 0)
        sched_yield();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    for (;;) {
        FILE *fp = fopen(path, "r");
        ck_assert_ptr_nonnull(fp);
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        ck_assert_ptr_nonnull(p);
        if (p[1] == ' ' && (p[2] == 'S' || p[2] == 'D'))
            return;
        sched_yield();
    }
}

/* Each test starts with fresh counters (also without CK_FORK). */
static void reset_globals(void)
{
    atomic_store(&g_frees, 0);
    future_settle_reset();
    future_callbacks_reset();
}

/* ------------------------------------------------------------------ main */

/* Every test starts from reset_globals. */
int main(void)
{
    static tu_part_fn *const parts[] = {
        future_add_settle_tests, future_add_wait_tests, future_add_callbacks_tests,
        future_add_many_tests, future_add_api_tests,
    };
    const tu_suite suite = { .name = "future", .timeout_s = 60, .setup = reset_globals };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
