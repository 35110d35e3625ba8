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
 */
#define _GNU_SOURCE
#include <check.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

/* Items are real addresses (never NULL, and ThreadSanitizer's hand-off
   annotations in queue.c get an address in application memory). */
typedef struct item {
    unsigned producer;
    unsigned seq;
} item;

static wp_queue *new_queue(unsigned capacity)
{
    wp_queue *q = calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(wp__queue_init(q, capacity), 0);
    return q;
}

static void free_queue(wp_queue *q)
{
    wp__queue_destroy(q);
    free(q);
}

/* Is the eventfd readable right now? */
static bool wake_fd_readable(wp_queue *q)
{
    struct pollfd p = { .fd = q->wake_fd, .events = POLLIN };
    int n = poll(&p, 1, 0);
    ck_assert_int_ge(n, 0);
    return n == 1 && (p.revents & POLLIN);
}

/* Wait (without sleeping for time) until q->blocked reaches n. */
static void wait_blocked(wp_queue *q, unsigned n)
{
    while (atomic_load(&q->blocked) != n)
        sched_yield();
}

typedef struct pusher {
    pthread_t   thread;
    wp_queue   *q;
    void       *item;
    bool        nowait;
    atomic_bool done;
    int         rc;
} pusher;

static void *pusher_main(void *arg)
{
    pusher *p = arg;
    p->rc = wp__queue_push(p->q, p->item, p->nowait);
    atomic_store(&p->done, true);
    return NULL;
}

static void pusher_start(pusher *p, wp_queue *q, void *it)
{
    p->q = q;
    p->item = it;
    p->nowait = false;
    atomic_init(&p->done, false);
    p->rc = 1;
    ck_assert_int_eq(pthread_create(&p->thread, NULL, pusher_main, p), 0);
}

static int pusher_join(pusher *p)
{
    ck_assert_int_eq(pthread_join(p->thread, NULL), 0);
    return p->rc;
}

/* Fill q with items[0 .. cap) (cap: its capacity), then start n producers
   pushing items[cap .. cap + n) and wait until all of them are blocked on
   the full queue. */
static void block_pushers(wp_queue *q, item *items, unsigned cap, pusher *p, unsigned n)
{
    for (unsigned i = 0; i < cap; i++)
        ck_assert_int_eq(wp__queue_push(q, &items[i], false), 0);
    for (unsigned i = 0; i < n; i++)
        pusher_start(&p[i], q, &items[cap + i]);
    wait_blocked(q, n);
}

static void *closer_main(void *arg)
{
    wp__queue_close(arg);
    return NULL;
}

typedef struct popper {
    wp_queue *q;
    void     *got;
} popper;

static void *popper_main(void *arg)
{
    popper *p = arg;
    p->got = wp__queue_pop(p->q);
    return NULL;
}

/* ------------------------------------------------------------ init / FIFO */

WP_TEST(init_capacity_rounding)
{
    static const struct { unsigned in, out; } cases[] = {
        { 0, 1024 }, { 1, 1 }, { 2, 2 }, { 3, 4 }, { 5, 8 }, { 8, 8 },
        { 1000, 1024 }, { 1024, 1024 }, { 1025, 2048 }, { 65535, 65536 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wp_queue q;
        ck_assert_int_eq(wp__queue_init(&q, cases[i].in), 0);
        ck_assert_msg(q.capacity == cases[i].out, "capacity %u -> %u, want %u",
                      cases[i].in, q.capacity, cases[i].out);
        ck_assert_uint_eq(wp__queue_count(&q), 0);
        ck_assert_int_ge(q.wake_fd, 0);
        ck_assert_ptr_null(wp__queue_pop(&q));
        ck_assert(!wp__queue_sealed(&q));
        wp__queue_destroy(&q);
    }
}

WP_TEST(init_capacity_too_big)
{
    wp_queue q;
    ck_assert_int_eq(wp__queue_init(&q, (1u << 30) + 1), WP_EINVAL);
    ck_assert_int_eq(wp__queue_init(&q, 1u << 31), WP_EINVAL);
    ck_assert_int_eq(wp__queue_init(&q, UINT_MAX), WP_EINVAL);
}

WP_TEST(fifo_single_thread)
{
    wp_queue *q = new_queue(16);
    item items[40];
    /* Several rounds so the ring indices wrap around. */
    for (unsigned round = 0; round < 10; round++) {
        for (unsigned i = 0; i < 16; i++) {
            items[i].seq = round * 100 + i;
            ck_assert_int_eq(wp__queue_push(q, &items[i], true), 0);
            ck_assert_uint_eq(wp__queue_count(q), i + 1);
        }
        for (unsigned i = 0; i < 16; i++) {
            item *it = wp__queue_pop(q);
            ck_assert_ptr_eq(it, &items[i]);
            ck_assert_uint_eq(it->seq, round * 100 + i);
            ck_assert_uint_eq(wp__queue_count(q), 15 - i);
        }
        ck_assert_ptr_null(wp__queue_pop(q));
    }
    /* Interleaved pushes and pops keep the order too. */
    unsigned next_in = 0, next_out = 0;
    for (unsigned step = 0; step < 200; step++) {
        if (step % 3 != 2) {
            if (wp__queue_push(q, &items[next_in % 40], true) == 0)
                next_in++;
        } else {
            item *it = wp__queue_pop(q);
            if (it != NULL) {
                ck_assert_ptr_eq(it, &items[next_out % 40]);
                next_out++;
            }
        }
    }
    while (next_out < next_in) {
        ck_assert_ptr_eq(wp__queue_pop(q), &items[next_out % 40]);
        next_out++;
    }
    ck_assert_ptr_null(wp__queue_pop(q));
    free_queue(q);
}

WP_TEST(exact_bound_nowait)
{
    static const unsigned caps[] = { 1, 2, 8, 64, 1024 };
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        unsigned cap = caps[c];
        item *items = calloc(cap + 1, sizeof *items);
        ck_assert_ptr_nonnull(items);
        wp_queue *q = new_queue(cap);
        ck_assert_uint_eq(q->capacity, cap);
        for (unsigned i = 0; i < cap; i++)
            ck_assert_int_eq(wp__queue_push(q, &items[i], true), 0);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true), WP_EAGAIN);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true), WP_EAGAIN);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        /* One pop makes room for exactly one more. */
        ck_assert_ptr_eq(wp__queue_pop(q), &items[0]);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true), 0);
        ck_assert_int_eq(wp__queue_push(q, &items[0], true), WP_EAGAIN);
        for (unsigned i = 1; i <= cap; i++)
            ck_assert_ptr_eq(wp__queue_pop(q), &items[i]);
        ck_assert_ptr_null(wp__queue_pop(q));
        ck_assert_uint_eq(wp__queue_count(q), 0);
        free_queue(q);
        free(items);
    }
}

/* ------------------------------------------------------------ backpressure */

/* Capacity 1 and 2: a single pop from a full queue releases the blocked
   producer. */
WP_TEST(blocked_producer_released_by_pop)
{
    for (unsigned cap = 1; cap <= 2; cap++) {
        wp_queue *q = new_queue(cap);
        item items[3];
        pusher p;
        block_pushers(q, items, cap, &p, 1);
        /* It is blocked, not failed: it has not returned and added nothing. */
        ck_assert(!atomic_load(&p.done));
        ck_assert_uint_eq(wp__queue_count(q), cap);

        ck_assert_ptr_eq(wp__queue_pop(q), &items[0]);
        ck_assert_int_eq(pusher_join(&p), 0);
        ck_assert_uint_eq(atomic_load(&q->blocked), 0);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        for (unsigned i = 1; i <= cap; i++)
            ck_assert_ptr_eq(wp__queue_pop(q), &items[i]);
        ck_assert_ptr_null(wp__queue_pop(q));
        free_queue(q);
    }
}

/* A bigger queue wakes blocked producers once it has drained to half (the
   wake-up hysteresis of queue_pop); by then the producer is released. */
WP_TEST(blocked_producer_released_by_draining_to_half)
{
    enum { CAP = 8 };
    wp_queue *q = new_queue(CAP);
    item items[CAP + 1];
    pusher p;
    block_pushers(q, items, CAP, &p, 1);
    ck_assert(!atomic_load(&p.done));
    for (unsigned i = 0; i < CAP / 2; i++)
        ck_assert_ptr_eq(wp__queue_pop(q), &items[i]);
    ck_assert_int_eq(pusher_join(&p), 0);
    ck_assert_uint_eq(atomic_load(&q->blocked), 0);
    ck_assert_uint_eq(wp__queue_count(q), CAP / 2 + 1);
    for (unsigned i = CAP / 2; i <= CAP; i++)
        ck_assert_ptr_eq(wp__queue_pop(q), &items[i]);
    ck_assert_ptr_null(wp__queue_pop(q));
    free_queue(q);
}

/* Several blocked producers and a consumer that keeps popping: all get in,
   every item comes out once. */
WP_TEST(blocked_producers_all_released)
{
    enum { CAP = 4, N = 6 };
    wp_queue *q = new_queue(CAP);
    item items[CAP + N];
    pusher p[N];
    block_pushers(q, items, CAP, p, N);

    unsigned popped = 0, done = 0;
    unsigned char seen[CAP + N] = { 0 };
    while (done < N || wp__queue_count(q) > 0) {
        item *it = wp__queue_pop(q);
        if (it != NULL) {
            ck_assert(it >= items && it < items + CAP + N);
            ck_assert_msg(seen[it - items]++ == 0, "item %td popped twice", it - items);
            popped++;
            continue;
        }
        done = 0;
        for (unsigned i = 0; i < N; i++)
            done += atomic_load(&p[i].done);
        sched_yield();
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_int_eq(pusher_join(&p[i]), 0);
    ck_assert_ptr_null(wp__queue_pop(q));
    ck_assert_uint_eq(popped, CAP + N);
    ck_assert_uint_eq(atomic_load(&q->blocked), 0);
    free_queue(q);
}

/* ------------------------------------------------------------ close / seal */

WP_TEST(close_wakes_blocked_producers)
{
    enum { CAP = 2, N = 3 };
    wp_queue *q = new_queue(CAP);
    item items[CAP + N + 1];
    pusher p[N];
    block_pushers(q, items, CAP, p, N);

    wp__queue_close(q);
    for (unsigned i = 0; i < N; i++)
        ck_assert_int_eq(pusher_join(&p[i]), WP_ESHUTDOWN);
    ck_assert_uint_eq(atomic_load(&q->blocked), 0);

    /* Later pushes, blocking or not, are refused; nothing was added. */
    ck_assert_int_eq(wp__queue_push(q, &items[CAP + N], false), WP_ESHUTDOWN);
    ck_assert_int_eq(wp__queue_push(q, &items[CAP + N], true), WP_ESHUTDOWN);
    ck_assert_uint_eq(wp__queue_count(q), CAP);

    /* What was queued before the close is still delivered, in order. */
    for (unsigned i = 0; i < CAP; i++)
        ck_assert_ptr_eq(wp__queue_pop(q), &items[i]);
    ck_assert_ptr_null(wp__queue_pop(q));
    /* Even with room now, a closed queue takes nothing. */
    ck_assert_int_eq(wp__queue_push(q, &items[0], false), WP_ESHUTDOWN);
    ck_assert_int_eq(wp__queue_push(q, &items[0], true), WP_ESHUTDOWN);
    ck_assert_ptr_null(wp__queue_pop(q));
    ck_assert(wp__queue_sealed(q));
    free_queue(q);
}

/*
 * A producer blocked on a full queue when it is closed must get
 * WP_ESHUTDOWN (queue.h: "wake blocked producers (they get WP_ESHUTDOWN)"),
 * even if a pop made room before it got to run again.  The test holds
 * room_mu so that the producer, woken by close's broadcast, only runs again
 * once both the close and the pop have happened.
 */
WP_TEST(close_blocked_producer_gets_shutdown_despite_room)
{
    wp_queue *q = new_queue(1);
    item items[2];
    pusher p;
    block_pushers(q, items, 1, &p, 1);

    /* The producer is in pthread_cond_wait (it released room_mu there). */
    ck_assert_int_eq(pthread_mutex_lock(&q->room_mu), 0);
    pthread_t closer, popper_t;
    popper pp = { .q = q, .got = NULL };
    ck_assert_int_eq(pthread_create(&closer, NULL, closer_main, q), 0);
    while (!atomic_load(&q->closed))
        sched_yield();
    ck_assert_int_eq(pthread_create(&popper_t, NULL, popper_main, &pp), 0);
    while (wp__queue_count(q) != 0)
        sched_yield();
    ck_assert_int_eq(pthread_mutex_unlock(&q->room_mu), 0);
    ck_assert_int_eq(pthread_join(closer, NULL), 0);
    ck_assert_int_eq(pthread_join(popper_t, NULL), 0);
    ck_assert_ptr_eq(pp.got, &items[0]);

    int rc = pusher_join(&p);
    ck_assert_msg(rc == WP_ESHUTDOWN,
                  "a producer blocked when the queue closed returned %d (want WP_ESHUTDOWN %d); "
                  "its item went into a closed queue", rc, WP_ESHUTDOWN);
    ck_assert_ptr_null(wp__queue_pop(q));
    free_queue(q);
}

WP_TEST(sealed_only_after_close_and_no_push_in_progress)
{
    wp_queue *q = new_queue(1);
    item items[2];
    ck_assert(!wp__queue_sealed(q));
    ck_assert_int_eq(wp__queue_push(q, &items[0], false), 0);
    ck_assert(!wp__queue_sealed(q));

    /* A producer inside queue_push (blocked on the full queue). */
    pusher p;
    pusher_start(&p, q, &items[1]);
    wait_blocked(q, 1);
    ck_assert(!wp__queue_sealed(q));

    /* Keep it inside queue_push across the close by holding room_mu: it
       cannot return from pthread_cond_wait until we let go. */
    ck_assert_int_eq(pthread_mutex_lock(&q->room_mu), 0);
    pthread_t closer;
    ck_assert_int_eq(pthread_create(&closer, NULL, closer_main, q), 0);
    while (!atomic_load(&q->closed))
        sched_yield();
    ck_assert_msg(!wp__queue_sealed(q), "sealed while a producer is still inside queue_push");
    ck_assert_uint_eq(atomic_load(&q->pushers), 1);
    ck_assert_int_eq(pthread_mutex_unlock(&q->room_mu), 0);
    ck_assert_int_eq(pthread_join(closer, NULL), 0);
    ck_assert_int_eq(pusher_join(&p), WP_ESHUTDOWN);
    ck_assert(wp__queue_sealed(q));

    /* Sealed does not mean empty: the queued item is still there. */
    ck_assert_ptr_eq(wp__queue_pop(q), &items[0]);
    ck_assert(wp__queue_sealed(q));
    /* A refused push leaves it sealed. */
    ck_assert_int_eq(wp__queue_push(q, &items[1], true), WP_ESHUTDOWN);
    ck_assert(wp__queue_sealed(q));
    free_queue(q);
}

WP_TEST(close_idempotent_and_empty_sealed)
{
    wp_queue *q = new_queue(8);
    wp__queue_close(q);
    ck_assert(wp__queue_sealed(q));
    wp__queue_close(q);
    ck_assert(wp__queue_sealed(q));
    ck_assert_ptr_null(wp__queue_pop(q));
    free_queue(q);
}

/* ----------------------------------------------------------------- stress */

enum { STRESS_PRODUCERS = 8, STRESS_PER_PRODUCER = 50000 };

typedef struct stress {
    wp_queue         *q;
    item             *items;   /* [producer * PER + seq] */
    pthread_barrier_t start;
    atomic_uint       failures;
} stress;

typedef struct stress_producer {
    stress  *s;
    unsigned id;
} stress_producer;

static void *stress_producer_main(void *arg)
{
    stress_producer *sp = arg;
    stress *s = sp->s;
    pthread_barrier_wait(&s->start);
    for (unsigned i = 0; i < STRESS_PER_PRODUCER; i++) {
        item *it = &s->items[sp->id * STRESS_PER_PRODUCER + i];
        it->producer = sp->id;
        it->seq = i;
        if (wp__queue_push(s->q, it, false) != 0)
            atomic_fetch_add(&s->failures, 1);
    }
    return NULL;
}

WP_TEST(stress_many_producers_one_consumer)
{
    const unsigned total = STRESS_PRODUCERS * STRESS_PER_PRODUCER;
    stress s;
    s.q = new_queue(256);
    s.items = calloc(total, sizeof *s.items);
    unsigned char *seen = calloc(total, 1);
    ck_assert_ptr_nonnull(s.items);
    ck_assert_ptr_nonnull(seen);
    atomic_init(&s.failures, 0);
    ck_assert_int_eq(pthread_barrier_init(&s.start, NULL, STRESS_PRODUCERS + 1), 0);

    pthread_t th[STRESS_PRODUCERS];
    stress_producer sp[STRESS_PRODUCERS];
    for (unsigned i = 0; i < STRESS_PRODUCERS; i++) {
        sp[i].s = &s;
        sp[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, stress_producer_main, &sp[i]), 0);
    }

    /* This thread is the consumer. */
    unsigned next_seq[STRESS_PRODUCERS] = { 0 };
    unsigned got = 0, dup = 0, out_of_order = 0, foreign = 0;
    pthread_barrier_wait(&s.start);
    while (got < total) {
        item *it = wp__queue_pop(s.q);
        if (it == NULL) {
            sched_yield();
            continue;
        }
        if (it < s.items || it >= s.items + total) {
            foreign++;
            got++;
            continue;
        }
        size_t idx = (size_t)(it - s.items);
        if (seen[idx]++)
            dup++;
        unsigned prod = (unsigned)(idx / STRESS_PER_PRODUCER);
        unsigned seq = (unsigned)(idx % STRESS_PER_PRODUCER);
        if (it->producer != prod || it->seq != seq || seq != next_seq[prod])
            out_of_order++;
        next_seq[prod] = seq + 1;
        got++;
    }
    for (unsigned i = 0; i < STRESS_PRODUCERS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_ptr_null(wp__queue_pop(s.q));
    ck_assert_uint_eq(wp__queue_count(s.q), 0);
    ck_assert_uint_eq(atomic_load(&s.failures), 0);
    ck_assert_uint_eq(foreign, 0);
    ck_assert_uint_eq(dup, 0);
    ck_assert_uint_eq(out_of_order, 0);
    for (unsigned i = 0; i < total; i++)
        ck_assert_msg(seen[i] == 1, "item %u seen %u times", i, seen[i]);
    for (unsigned i = 0; i < STRESS_PRODUCERS; i++)
        ck_assert_uint_eq(next_seq[i], STRESS_PER_PRODUCER);

    pthread_barrier_destroy(&s.start);
    free(seen);
    free(s.items);
    free_queue(s.q);
}

/* ------------------------------------------------------------ wake protocol */

WP_TEST(wake_hungry_sleeper_on_push)
{
    wp_queue *q = new_queue(8);
    item it;
    ck_assert(!wake_fd_readable(q));
    ck_assert(wp__queue_may_sleep(q, true));
    ck_assert(!wake_fd_readable(q));
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert_msg(wake_fd_readable(q), "a push to a hungry sleeper did not write the eventfd");
    wp__queue_awake(q, true);
    ck_assert_msg(!wake_fd_readable(q), "queue_awake(q, true) did not drain the eventfd");
    ck_assert_ptr_eq(wp__queue_pop(q), &it);

    /* Only the first push after going to sleep writes; the state is AWAKE
       after it, so a second push does not. */
    ck_assert(wp__queue_may_sleep(q, true));
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert(wake_fd_readable(q));
    uint64_t n = 0;
    ck_assert_int_eq(read(q->wake_fd, &n, sizeof n), (ssize_t)sizeof n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert(!wake_fd_readable(q));
    wp__queue_awake(q, false);
    free_queue(q);
}

WP_TEST(push_while_awake_does_not_write)
{
    wp_queue *q = new_queue(64);
    item items[64];
    /* Freshly initialised: awake. */
    for (unsigned i = 0; i < 32; i++)
        ck_assert_int_eq(wp__queue_push(q, &items[i], true), 0);
    ck_assert(!wake_fd_readable(q));
    /* Awake again after a sleep. */
    while (wp__queue_pop(q) != NULL)
        ;
    ck_assert(wp__queue_may_sleep(q, true));
    wp__queue_awake(q, false);
    for (unsigned i = 0; i < 32; i++)
        ck_assert_int_eq(wp__queue_push(q, &items[i], true), 0);
    ck_assert(!wake_fd_readable(q));
    /* A kick always writes, even while awake: the consumer may be about
       to sleep having already looked at what the kick is about. */
    wp__queue_kick(q);
    ck_assert(wake_fd_readable(q));
    free_queue(q);
}

WP_TEST(may_sleep_false_when_item_there)
{
    wp_queue *q = new_queue(8);
    item it;
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert(!wp__queue_may_sleep(q, true));
    /* It stays awake: a further push does not write. */
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert(!wake_fd_readable(q));
    ck_assert_ptr_eq(wp__queue_pop(q), &it);
    ck_assert_ptr_eq(wp__queue_pop(q), &it);
    ck_assert(wp__queue_may_sleep(q, true));
    wp__queue_awake(q, false);
    free_queue(q);
}

WP_TEST(non_hungry_sleeper_ignores_push_but_wakes_on_kick)
{
    wp_queue *q = new_queue(8);
    item it;
    /* Not hungry: may sleep even with work queued (no idle worker). */
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert(wp__queue_may_sleep(q, false));
    ck_assert_int_eq(wp__queue_push(q, &it, true), 0);
    ck_assert_msg(!wake_fd_readable(q), "a push woke a consumer that was not hungry");
    wp__queue_kick(q);
    ck_assert_msg(wake_fd_readable(q), "queue_kick did not wake a non-hungry sleeper");
    wp__queue_awake(q, true);
    ck_assert(!wake_fd_readable(q));
    /* Kick also wakes a hungry sleeper. */
    while (wp__queue_pop(q) != NULL)
        ;
    ck_assert(wp__queue_may_sleep(q, true));
    wp__queue_kick(q);
    ck_assert(wake_fd_readable(q));
    wp__queue_awake(q, true);
    ck_assert(!wake_fd_readable(q));
    free_queue(q);
}

WP_TEST(refused_push_after_close_wakes_sleeper)
{
    /* After close the consumer waits for the queue to seal; the last
       producer leaving queue_push must wake it, hungry or not. */
    wp_queue *q = new_queue(8);
    item it;
    wp__queue_close(q);
    ck_assert(wp__queue_may_sleep(q, false));
    ck_assert_int_eq(wp__queue_push(q, &it, true), WP_ESHUTDOWN);
    ck_assert(wake_fd_readable(q));
    wp__queue_awake(q, true);
    ck_assert(!wake_fd_readable(q));
    ck_assert(wp__queue_sealed(q));
    free_queue(q);
}

/*
 * The consumer loop of a dispatcher: {may_sleep; poll(wake_fd); awake; pop
 * all}.  First, bulk producers push as fast as they can (and block on the
 * small queue) while ping-pong producers keep one item in flight each,
 * waiting until the consumer has taken it before pushing the next.  Then
 * one ping-pong producer alone: the consumer runs dry after every item and
 * each push races it on its way into sleep, so a single lost wake-up leaves
 * it in poll() with an item queued and nobody to push another: the 5 s
 * safety timeout fires and fails the test.
 */
enum { LW_BULK = 3, LW_BULK_EACH = 20000, LW_PINGPONG = 3, LW_PINGPONG_EACH = 5000,
       LW_SOLO = 20000,
       LW_PRODUCERS = LW_BULK + LW_PINGPONG + 1, /* the last: alone, afterwards */
       LW_TOTAL = LW_BULK * LW_BULK_EACH + LW_PINGPONG * LW_PINGPONG_EACH + LW_SOLO,
       LW_SAFETY_MS = TU_DEADLINE_MS }; /* no wake-up for this long: one was lost */

typedef struct lostwake {
    wp_queue         *q;
    item             *items;
    atomic_uchar     *seen;
    pthread_barrier_t start;
    atomic_uint       push_failures;
    atomic_bool       lost;      /* the consumer's safety timeout fired */
    unsigned          received, dups, sleeps;
} lostwake;

typedef struct lw_producer {
    lostwake *lw;
    unsigned  first, count;
    bool      pingpong, solo;
} lw_producer;

static void *lw_producer_main(void *arg)
{
    lw_producer *p = arg;
    lostwake *lw = p->lw;
    if (!p->solo)
        pthread_barrier_wait(&lw->start);
    for (unsigned i = p->first; i < p->first + p->count; i++) {
        if (wp__queue_push(lw->q, &lw->items[i], false) != 0)
            atomic_fetch_add(&lw->push_failures, 1);
        if (p->pingpong) {
            while (atomic_load(&lw->seen[i]) == 0 && !atomic_load(&lw->lost))
                sched_yield();
        } else if (i % 7 == 0) {
            sched_yield();
        }
        if (atomic_load(&lw->lost))
            break;
    }
    return NULL;
}

static void *lw_consumer_main(void *arg)
{
    lostwake *lw = arg;
    pthread_barrier_wait(&lw->start);
    while (lw->received < LW_TOTAL) {
        if (wp__queue_may_sleep(lw->q, true)) {
            lw->sleeps++;
            struct pollfd pfd = { .fd = lw->q->wake_fd, .events = POLLIN };
            int n = poll(&pfd, 1, LW_SAFETY_MS);
            if (n == 0) {
                atomic_store(&lw->lost, true);
                wp__queue_close(lw->q); /* release producers blocked on a full queue */
                return NULL;
            }
            wp__queue_awake(lw->q, n > 0 && (pfd.revents & POLLIN));
        }
        item *it;
        while ((it = wp__queue_pop(lw->q)) != NULL) {
            if (atomic_fetch_add(&lw->seen[it - lw->items], 1) != 0)
                lw->dups++;
            lw->received++;
        }
        /* A dispatcher does other work between draining the queue and
           going to sleep (frames, deadlines): widen that window, in which
           a push must not be missed. */
        if (lw->received % 2 == 0)
            sched_yield();
    }
    return NULL;
}

WP_TEST(no_lost_wakeup_many_threads)
{
    lostwake lw;
    memset(&lw, 0, sizeof lw);
    lw.q = new_queue(64); /* small: bulk producers also block on backpressure */
    lw.items = calloc(LW_TOTAL, sizeof *lw.items);
    lw.seen = calloc(LW_TOTAL, sizeof *lw.seen);
    ck_assert_ptr_nonnull(lw.items);
    ck_assert_ptr_nonnull(lw.seen);
    for (unsigned i = 0; i < LW_TOTAL; i++)
        atomic_init(&lw.seen[i], 0);
    atomic_init(&lw.push_failures, 0);
    atomic_init(&lw.lost, false);
    /* The consumer, and the concurrent producers, start together. */
    ck_assert_int_eq(pthread_barrier_init(&lw.start, NULL, LW_PRODUCERS), 0);

    pthread_t consumer, prod[LW_PRODUCERS];
    lw_producer lp[LW_PRODUCERS];
    ck_assert_int_eq(pthread_create(&consumer, NULL, lw_consumer_main, &lw), 0);
    unsigned first = 0;
    for (unsigned i = 0; i < LW_PRODUCERS; i++) {
        lp[i].lw = &lw;
        lp[i].solo = i == LW_PRODUCERS - 1;
        lp[i].pingpong = i >= LW_BULK;
        lp[i].count = lp[i].solo ? LW_SOLO : lp[i].pingpong ? LW_PINGPONG_EACH : LW_BULK_EACH;
        lp[i].first = first;
        first += lp[i].count;
        if (!lp[i].solo)
            ck_assert_int_eq(pthread_create(&prod[i], NULL, lw_producer_main, &lp[i]), 0);
    }
    ck_assert_uint_eq(first, LW_TOTAL);
    for (unsigned i = 0; i < LW_PRODUCERS - 1; i++)
        ck_assert_int_eq(pthread_join(prod[i], NULL), 0);
    lw_producer_main(&lp[LW_PRODUCERS - 1]); /* alone, in this thread */
    ck_assert_int_eq(pthread_join(consumer, NULL), 0);

    ck_assert_msg(!atomic_load(&lw.lost),
                  "lost wake-up: the consumer slept %d ms with an item queued (received %u of %u)",
                  LW_SAFETY_MS, lw.received, (unsigned)LW_TOTAL);
    ck_assert_uint_eq(atomic_load(&lw.push_failures), 0);
    ck_assert_uint_eq(lw.received, LW_TOTAL);
    ck_assert_uint_eq(lw.dups, 0);
    if (getenv("WP_TEST_VERBOSE"))
        fprintf(stderr, "no_lost_wakeup: consumer slept %u times for %u items\n",
                lw.sleeps, (unsigned)LW_TOTAL);
    for (unsigned i = 0; i < LW_TOTAL; i++)
        ck_assert(atomic_load(&lw.seen[i]) == 1);
    ck_assert_ptr_null(wp__queue_pop(lw.q));
    pthread_barrier_destroy(&lw.start);
    free(lw.seen);
    free(lw.items);
    free_queue(lw.q);
}

/* Kicks from several threads against a consumer that sleeps not hungry
   (pushes would not wake it): every round it is woken, none is lost. */
typedef struct kicker {
    wp_queue   *q;
    atomic_bool stop;
} kicker;

static void *kicker_main(void *arg)
{
    kicker *k = arg;
    while (!atomic_load(&k->stop)) {
        wp__queue_kick(k->q);
        sched_yield();
    }
    return NULL;
}

WP_TEST(kick_from_threads_wakes_non_hungry_sleeper)
{
    enum { KICKERS = 3, ROUNDS = 2000 };
    kicker k = { .q = new_queue(8) };
    atomic_init(&k.stop, false);
    pthread_t th[KICKERS];
    for (unsigned i = 0; i < KICKERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, kicker_main, &k), 0);
    unsigned timeouts = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        if (!wp__queue_may_sleep(k.q, false))
            ck_abort_msg("may_sleep(q, false) must always allow sleeping");
        struct pollfd pfd = { .fd = k.q->wake_fd, .events = POLLIN };
        int n = poll(&pfd, 1, LW_SAFETY_MS);
        if (n == 0) {
            timeouts++;
            break;
        }
        wp__queue_awake(k.q, n > 0 && (pfd.revents & POLLIN));
    }
    atomic_store(&k.stop, true);
    for (unsigned i = 0; i < KICKERS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_uint_eq(timeouts, 0);
    free_queue(k.q);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "queue", .timeout_s = 120 };
    const tu_test tests[] = {
        TU_CASE("basic", init_capacity_rounding),
        TU_CASE("basic", init_capacity_too_big),
        TU_CASE("basic", fifo_single_thread),
        TU_CASE("basic", exact_bound_nowait),
        TU_CASE("backpressure", blocked_producer_released_by_pop),
        TU_CASE("backpressure", blocked_producer_released_by_draining_to_half),
        TU_CASE("backpressure", blocked_producers_all_released),
        TU_CASE("close", close_wakes_blocked_producers),
        TU_CASE("close", close_blocked_producer_gets_shutdown_despite_room),
        TU_CASE("close", sealed_only_after_close_and_no_push_in_progress),
        TU_CASE("close", close_idempotent_and_empty_sealed),
        TU_CASE("wake", wake_hungry_sleeper_on_push),
        TU_CASE("wake", push_while_awake_does_not_write),
        TU_CASE("wake", may_sleep_false_when_item_there),
        TU_CASE("wake", non_hungry_sleeper_ignores_push_but_wakes_on_kick),
        TU_CASE("wake", refused_push_after_close_wakes_sleeper),
        TU_CASE("stress", stress_many_producers_one_consumer),
        TU_CASE("stress", no_lost_wakeup_many_threads),
        TU_CASE("stress", kick_from_threads_wakes_non_hungry_sleeper),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
