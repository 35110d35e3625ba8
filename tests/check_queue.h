/* SPDX-License-Identifier: MIT */
/*
 * check_queue.h — what the files of the queue suite share: the items
 * queued, making and freeing a queue, taking an item it must hold
 * (check_queue.c; it says how the suite's tests work), and each file's part
 * of the table.
 */
#ifndef WP_CHECK_QUEUE_H
#define WP_CHECK_QUEUE_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "queue.h"
#include "testutil.h"

/* Items are real addresses (never NULL, and ThreadSanitizer's hand-off
   annotations in queue.c get an address in application memory). */
typedef struct item {
    unsigned producer;
    unsigned seq;
} item;

/* A queue of this capacity (calloc'd, wp__queue_init), and its end. */
wp_queue *new_queue(unsigned capacity);
void      free_queue(wp_queue *q);
/* Take the oldest item, check that it is want, and release it (its room is
   free): a consumer done with it at once. */
void      take_expect(wp_queue *q, const void *want);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn queue_add_push_tests, queue_add_wake_tests, queue_add_stress_tests;

#endif
