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

/*
 * Laid out as ck_ring_t is: what producers write at every push and what
 * the consumer writes at every turn sit on cache lines of their own
 * (WP_CACHELINE apart), away from what every thread only reads, so a
 * producer's push does not take the line the consumer is about to read,
 * and the other way round.  (count is written by both sides: a push
 * reserves, a release frees; the ring pads its own indices.)
 */
typedef struct wp_queue {
    /* Read by every push and take; written at init, close and renew only. */
    ck_ring_t         ring;
    ck_ring_buffer_t *slots;
    unsigned          capacity;     /* most items it holds */
    atomic_bool       closed;       /* no new pushes */
    atomic_int        wake_fd;      /* eventfd in the consumer's poll set (renewed if closed under us) */
    pthread_mutex_t   room_mu;      /* taken only by producers waiting for room and their wakers */
    pthread_cond_t    room_cv;
    char              pad_producers[WP_CACHELINE];
    /* Written by producers at every push. */
    atomic_uint       count;        /* items reserved or in the ring (a release frees one) */
    atomic_uint       pushers;      /* producers inside wp__queue_push */
    atomic_uint       blocked;      /* producers waiting for room */
    atomic_uint       turn_waiters; /* producers asleep waiting to commit */
    atomic_uint       ranks;        /* bit r: an item of rank r was pushed since the last
                                       wp__queue_take_ranks */
    char              pad_consumer[WP_CACHELINE];
    /* Written by the consumer at every turn (and by the producer that wakes it). */
    atomic_int        consumer;     /* CONSUMER_AWAKE / _ASLEEP / _HUNGRY */
    atomic_uint       wake_rank;    /* asleep: a push of this rank or more wakes the consumer */
} wp_queue;

#define QUEUE_DEFAULT_CAPACITY 1024
#define QUEUE_MAX_CAPACITY     (1u << 30) /* the ring holds twice as many: must fit unsigned */

/* capacity: 0 means QUEUE_DEFAULT_CAPACITY; rounded up to a power of two;
   0, WP_EINVAL (over QUEUE_MAX_CAPACITY), WP_ENOMEM or WP_ESPAWN (no
   eventfd). */
int   wp__queue_init(wp_queue *q, unsigned capacity) WP_INTERNAL;
void  wp__queue_destroy(wp_queue *q) WP_INTERNAL;

/* Ranks: a push says how urgent its item is, 0 .. QUEUE_RANKS - 1; the
   consumer, going to sleep without wanting items, names the rank from
   which an item must wake it all the same (QUEUE_RANKS: none must). */
#define QUEUE_RANKS 32u

/* 0; WP_EAGAIN (full and nowait); WP_ESHUTDOWN (closed). */
int   wp__queue_push(wp_queue *q, void *item, bool nowait, unsigned rank) WP_INTERNAL;
/* Take the oldest item out of the ring, or NULL if none is ready.  It
   still counts against the capacity until wp__queue_release: a consumer
   may take every item at once to sort them (the pool does) and still
   bound what waits. */
void *wp__queue_take(wp_queue *q) WP_INTERNAL;
/* One item taken is done with: its room is free (wakes blocked producers). */
void  wp__queue_release(wp_queue *q) WP_INTERNAL;
/* Items pushed and not yet released. */
unsigned wp__queue_count(wp_queue *q) WP_INTERNAL;
/* Consumer: the ranks pushed since the last call (bit r for rank r), and
   forget them.  Call it before taking what is in the ring. */
unsigned wp__queue_take_ranks(wp_queue *q) WP_INTERNAL;

/* Refuse new pushes and wake blocked producers (they get WP_ESHUTDOWN). */
void  wp__queue_close(wp_queue *q) WP_INTERNAL;
/* Closed, and no producer is still inside wp__queue_push: nothing more comes. */
bool  wp__queue_sealed(wp_queue *q) WP_INTERNAL;

/* Consumer side of the wake-up protocol.  Before blocking in poll(), call
   wp__queue_may_sleep(q, hungry, wake_rank): false means work arrived that
   the consumer wants (any item when hungry, else one of rank wake_rank or
   more since the last wp__queue_take_ranks), do not block.
   After poll() returns, call wp__queue_awake(q, wake_fd_was_readable).
   wp__queue_kick() wakes a sleeping consumer for any reason (cancel,
   shutdown), hungry or not. */
bool  wp__queue_may_sleep(wp_queue *q, bool hungry, unsigned wake_rank) WP_INTERNAL;
void  wp__queue_awake(wp_queue *q, bool drain) WP_INTERNAL;
void  wp__queue_kick(wp_queue *q) WP_INTERNAL;
/* The consumer found wake_fd closed under it (the program closed a
   descriptor it did not own): forget that number, make a new eventfd. */
void  wp__queue_renew_wake(wp_queue *q) WP_INTERNAL;

#endif
