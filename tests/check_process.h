/* SPDX-License-Identifier: MIT */
/*
 * check_process.h — what the files of the process suite share: the
 * helpers check_process.c defines (it says how the suite's tests work) and
 * each file's part of the table.
 */
#ifndef WP_CHECK_PROCESS_H
#define WP_CHECK_PROCESS_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#define MAX_PIDS 64 /* the processes a test keeps track of */

/* A pidfd for pid (pidfd_open), or -1. */
int pidfd_of(int pid);

/* Make the kernel look older, from now on, in this process and every
   process it forks (a seccomp filter); false where no filter can be
   installed (the caller skips its test).  kernel_without_pidfd: as Linux
   before 5.3; kernel_without_pidfd_info: as before 6.15, a pidfd keeps no
   exit status. */
bool kernel_without_pidfd(void);
bool kernel_without_pidfd_info(void);
/* As Linux before 5.9: no close_range. */
bool kernel_without_close_range(void);
/* Does this kernel tell a pidfd's holder the exit status of a child that
   someone else reaped (PIDFD_INFO_EXIT, Linux 6.15)? */
bool kernel_keeps_exit_status(void);

/* Run fn (which kills p's worker) and check the report: WP_ECRASHED with
   code and text in the message, or, where may_lose, a status said to be
   lost.  Returns whether it was lost. */
bool expect_crash(wp_pool *p, wp_task_fn fn, int arg, int code, const char *text,
                  bool may_lose, uint64_t started);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn process_add_host_tests, process_add_trees_tests, process_add_children_tests;

#endif
