/* SPDX-License-Identifier: MIT */
/*
 * check_queue.c — the bounded MPMC task queue (lib/queue.c): capacity
 * rounding, FIFO order, the exact bound and blocking backpressure, close and
 * seal, a many-producer stress test, and the consumer sleep/wake protocol
 * over the eventfd, including a many-thread "no lost wake-up" test.
 *
 * Nothing here sleeps to let things happen: threads are ordered with joins,
 * barriers, or by polling the very atomic that shows the awaited state
 * (with sched_yield between looks).
 *
 * This file holds what the suite's files share (check_queue.h) and its
 * main; the tests are in one file per concern, run in this order:
 *   check_queue_push.c    capacity, FIFO order, the bound, backpressure,
 *                         close and seal;
 *   check_queue_wake.c    the consumer's sleep/wake protocol;
 *   check_queue_stress.c  many threads: producers, lost wake-ups, kicks.
 */
#define _GNU_SOURCE
#include "check_queue.h"

wp_queue *new_queue(unsigned capacity)
{
    wp_queue *q = calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(wp__queue_init(q, capacity), 0);
    return q;
}

void free_queue(wp_queue *q)
{
    wp__queue_destroy(q);
    free(q);
}

void take_expect(wp_queue *q, const void *want)
{
    void *got = wp__queue_take(q);
    ck_assert_ptr_eq(got, want);
    wp__queue_release(q);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        queue_add_push_tests, queue_add_wake_tests, queue_add_stress_tests,
    };
    const tu_suite suite = { .name = "queue", .timeout_s = 120 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
