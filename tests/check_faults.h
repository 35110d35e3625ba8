/* SPDX-License-Identifier: MIT */
/*
 * check_faults.h — what the files of the faults suite share: the helpers
 * check_faults.c defines (it says how the suite's tests work) and each
 * file's part of the table.
 */
#ifndef WP_CHECK_FAULTS_H
#define WP_CHECK_FAULTS_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#define GONE_MS  TU_PROMPT_MS /* for processes that must be gone */

/* Every pid in pids is gone (reaped), at once but for the kernel's
   teardown under the fork server (GONE_MS). */
void assert_gone(const int *pids, size_t n);
/* A killed worker is reaped within GONE_MS. */
void wait_gone(int pid);
/* The fork server, found as the parent of one of its workers; -1 under
   WP_START_FORK. */
int forkserver_of(int worker);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn faults_add_workers_tests, faults_add_end_tests;

#endif
