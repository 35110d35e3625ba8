/* SPDX-License-Identifier: MIT */
/*
 * check_pool.c — the pool's public behaviour (the header's "Pool" and
 * "Submitting"; docs/ARCHITECTURE.md): creation and options, submit/wait/result, argument checks,
 * many submitting threads, backpressure, big frames, result limits, stats,
 * done-callbacks, shutdown, and what workers inherit.
 *
 * Every test runs under each start method, WP_START_FORKSERVER,
 * WP_START_FORK and WP_START_EXEC (WP_TEST_BOTH).  No test sleeps to let things happen: it waits on futures,
 * joins threads, or polls the observed condition against a deadline.
 * Tasks that must stay running while the test looks use tu_report with
 * FIFOs the test owns (testutil.h).
 *
 * This file is the suite's main; the tests are in one file per concern,
 * run in this order:
 *   check_pool_submit.c    creation and options, submit/wait/result,
 *                          argument checks, many submitting threads,
 *                          backpressure;
 *   check_pool_results.c   big frames, result limits, stats, done-callbacks;
 *   check_pool_shutdown.c  shutdown and destroy, futures that outlive them;
 *   check_pool_workers.c   what workers inherit, a thousand of them;
 *   check_pool_many.c      wp_submit_many.
 */

#include "check_pool.h"

int main(void)
{
    static tu_part_fn *const parts[] = {
        pool_add_submit_tests, pool_add_results_tests, pool_add_shutdown_tests,
        pool_add_workers_tests, pool_add_many_tests,
    };
    const tu_suite suite = { .name = "pool", .timeout_s = 60 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
