/* SPDX-License-Identifier: MIT */
/*
 * check_pool.h — what the files of the pool suite share: each file's part
 * of the table, which check_pool.c's main runs (it says how the suite's
 * tests work).
 */
#ifndef WP_CHECK_POOL_H
#define WP_CHECK_POOL_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn pool_add_submit_tests, pool_add_results_tests, pool_add_shutdown_tests,
           pool_add_workers_tests, pool_add_many_tests;

#endif
