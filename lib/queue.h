/* SPDX-License-Identifier: MIT */
/*
 * queue.h — the bounded MPMC queue that carries tasks from submitting threads
 * to the dispatcher (docs/ARCHITECTURE.md, "Path of a task", step 1).
 *
 * A Concurrency Kit ring (ck_ring, MPMC) holds the pointers; an atomic count
 * bounds it at exactly `capacity`, and a full queue blocks the producer on a
 * condition variable (or answers WP_EAGAIN) instead of spinning.  The
 * consumer sleeps in poll(); producers write its eventfd only when it said it
 * is asleep and hungry, so a busy dispatcher costs producers no syscall.
 */
#ifndef WP_QUEUE_H
#define WP_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <ck_ring.h>

#include "util.h"

typedef struct wp_queue {
    ck_ring_t         ring;
    ck_ring_buffer_t *slots;
    unsigned          capacity;   /* most items it holds */
    atomic_uint       count;      /* items reserved or in the ring */
    atomic_uint       pushers;    /* producers inside queue_push */
    atomic_bool       closed;     /* no new pushes */
    atomic_uint       blocked;    /* producers waiting for room */
    atomic_uint       turn_waiters; /* producers asleep waiting to commit */
    pthread_mutex_t   room_mu;
    pthread_cond_t    room_cv;
    atomic_int        consumer;   /* CONSUMER_AWAKE / _ASLEEP / _HUNGRY */
    atomic_int        wake_fd;    /* eventfd in the consumer's poll set (renewed if closed under us) */
} wp_queue;

/* capacity: 0 means 1024; rounded up to a power of two. */
int   wp__queue_init(wp_queue *q, unsigned capacity) WP_INTERNAL;
void  wp__queue_destroy(wp_queue *q) WP_INTERNAL;

/* 0; WP_EAGAIN (full and nowait); WP_ESHUTDOWN (closed). */
int   wp__queue_push(wp_queue *q, void *item, bool nowait) WP_INTERNAL;
/* The oldest item, or NULL if none is ready. */
void *wp__queue_pop(wp_queue *q) WP_INTERNAL;
unsigned wp__queue_count(wp_queue *q) WP_INTERNAL;

/* Refuse new pushes and wake blocked producers (they get WP_ESHUTDOWN). */
void  wp__queue_close(wp_queue *q) WP_INTERNAL;
/* Closed, and no producer is still inside queue_push: nothing more comes. */
bool  wp__queue_sealed(wp_queue *q) WP_INTERNAL;

/* Consumer side of the wake-up protocol.  Before blocking in poll(), call
   queue_may_sleep(q, hungry): false means work arrived, do not block.  After
   poll() returns, call queue_awake(q, wake_fd_was_readable).  queue_kick() wakes a sleeping
   consumer for any reason (cancel, shutdown), hungry or not. */
bool  wp__queue_may_sleep(wp_queue *q, bool hungry) WP_INTERNAL;
void  wp__queue_awake(wp_queue *q, bool drain) WP_INTERNAL;
void  wp__queue_kick(wp_queue *q) WP_INTERNAL;
/* The consumer found wake_fd closed under it (the program closed a
   descriptor it did not own): forget that number, make a new eventfd. */
void  wp__queue_renew_wake(wp_queue *q) WP_INTERNAL;

#endif
