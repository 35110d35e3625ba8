/* SPDX-License-Identifier: MIT */
/*
 * check_faults.c — workers that crash, exit, fail, break the protocol or
 * hang; shutdown while busy; the owning process dying (docs/ARCHITECTURE.md,
 * "Path of a task" and "Processes"; wp_pool_shutdown in the header).
 *
 * The invariant hammered here: every submitted task settles exactly once,
 * with the outcome it deserves, and a misbehaving worker takes down only
 * its own task.
 *
 * Every test runs under each start method, WP_START_FORKSERVER,
 * WP_START_FORK and WP_START_EXEC (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
 * joins threads, reads what tasks report through FIFOs, or polls the
 * observed condition against a deadline.
 *
 * WP_ENOFUNC (a function loaded after the fork server started) is not
 * tested here.
 *
 * This file holds what the suite's files share (check_faults.h: waiting
 * for processes to be gone, finding the fork server) and its main; the
 * tests are in one file per concern, run in this order:
 *   check_faults_workers.c  workers that crash, exit, fail, break the
 *                           protocol or are killed, descriptors closed
 *                           under the pool, crashes among successes;
 *   check_faults_end.c      shutdown while busy, the owner dying.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "check_faults.h"

/* Every pid in pids is gone (reaped).  Under WP_START_FORK the library
   reaps its workers itself before shutdown returns; under the fork server
   the server reaps them, and the pool reaps the server, so they should be
   gone at once too — but we allow that case a bounded poll (GONE_MS) for
   the kernel to finish tearing the processes down. */
void assert_gone(const int *pids, size_t n)
{
    int64_t grace = tu_method == WP_START_FORKSERVER ? GONE_MS : 0;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(tu_wait_reaped(pids[i], grace), "process %d is still there", pids[i]);
}

/* A killed worker is reaped within a bounded time (the pool does not wait
   for it before settling the task). */
void wait_gone(int pid)
{
    ck_assert_msg(tu_wait_reaped(pid, GONE_MS), "worker %d was never reaped", pid);
}

/* The fork server, found as the parent of one of its workers; -1 under
   WP_START_FORK (the workers' parent is this process). */
int forkserver_of(int worker)
{
    int parent = tu_pid_parent(worker);
    ck_assert_int_gt(parent, 0);
    if (tu_no_forkserver()) {
        ck_assert_int_eq(parent, (int)getpid());
        return -1;
    }
    ck_assert_int_ne(parent, (int)getpid());
    ck_assert_int_eq(tu_pid_parent(parent), (int)getpid());
    return parent;
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = { faults_add_workers_tests, faults_add_end_tests };
    const tu_suite suite = { .name = "faults", .timeout_s = 60 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
