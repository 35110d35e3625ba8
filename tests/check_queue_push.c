/* SPDX-License-Identifier: MIT */
/*
 * check_queue_push.c — pushing, and taking and releasing (check_queue.c
 * says how the suite's tests work): capacity rounding and its limit, FIFO
 * order, the exact bound, producers blocked on a full queue and released by
 * releases (not by takes), and close and seal: blocked producers woken with
 * WP_ESHUTDOWN, sealed only once no push is in progress.
 */
#define _GNU_SOURCE
#include "check_queue.h"

/* ---------------------------------------------------------------- helpers */

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
    p->rc = wp__queue_push(p->q, p->item, p->nowait, 0);
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
        ck_assert_int_eq(wp__queue_push(q, &items[i], false, 0), 0);
    for (unsigned i = 0; i < n; i++)
        pusher_start(&p[i], q, &items[cap + i]);
    wait_blocked(q, n);
}

static void *closer_main(void *arg)
{
    wp__queue_close(arg);
    return NULL;
}

/* A consumer on a thread of its own: takes one item and releases it. */
typedef struct taker {
    wp_queue *q;
    void     *got;
} taker;

static void *taker_main(void *arg)
{
    taker *t = arg;
    t->got = wp__queue_take(t->q);
    if (t->got != NULL)
        wp__queue_release(t->q);
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
        ck_assert_ptr_null(wp__queue_take(&q));
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
            ck_assert_int_eq(wp__queue_push(q, &items[i], true, 0), 0);
            ck_assert_uint_eq(wp__queue_count(q), i + 1);
        }
        for (unsigned i = 0; i < 16; i++) {
            item *it = wp__queue_take(q);
            ck_assert_ptr_eq(it, &items[i]);
            ck_assert_uint_eq(it->seq, round * 100 + i);
            ck_assert_uint_eq(wp__queue_count(q), 16 - i); /* until released */
            wp__queue_release(q);
            ck_assert_uint_eq(wp__queue_count(q), 15 - i);
        }
        ck_assert_ptr_null(wp__queue_take(q));
    }
    /* Interleaved pushes and takes keep the order too. */
    unsigned next_in = 0, next_out = 0;
    for (unsigned step = 0; step < 200; step++) {
        if (step % 3 != 2) {
            if (wp__queue_push(q, &items[next_in % 40], true, 0) == 0)
                next_in++;
        } else {
            item *it = wp__queue_take(q);
            if (it != NULL) {
                ck_assert_ptr_eq(it, &items[next_out % 40]);
                wp__queue_release(q);
                next_out++;
            }
        }
    }
    while (next_out < next_in) {
        take_expect(q, &items[next_out % 40]);
        next_out++;
    }
    ck_assert_ptr_null(wp__queue_take(q));
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
            ck_assert_int_eq(wp__queue_push(q, &items[i], true, 0), 0);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true, 0), WP_EAGAIN);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true, 0), WP_EAGAIN);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        /* A take makes no room; its release makes room for exactly one more. */
        ck_assert_ptr_eq(wp__queue_take(q), &items[0]);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true, 0), WP_EAGAIN);
        wp__queue_release(q);
        ck_assert_int_eq(wp__queue_push(q, &items[cap], true, 0), 0);
        ck_assert_int_eq(wp__queue_push(q, &items[0], true, 0), WP_EAGAIN);
        for (unsigned i = 1; i <= cap; i++)
            take_expect(q, &items[i]);
        ck_assert_ptr_null(wp__queue_take(q));
        ck_assert_uint_eq(wp__queue_count(q), 0);
        free_queue(q);
        free(items);
    }
}

/* ------------------------------------------------------------ backpressure */

/* Capacity 1 and 2: a single release of an item taken from a full queue
   lets the blocked producer in; the take alone does not. */
WP_TEST(blocked_producer_released_by_release)
{
    for (unsigned cap = 1; cap <= 2; cap++) {
        wp_queue *q = new_queue(cap);
        item items[3];
        pusher p;
        block_pushers(q, items, cap, &p, 1);
        /* It is blocked, not failed: it has not returned and added nothing. */
        ck_assert(!atomic_load(&p.done));
        ck_assert_uint_eq(wp__queue_count(q), cap);

        ck_assert_ptr_eq(wp__queue_take(q), &items[0]);
        /* Still counted: nothing woke the producer, it can have no room. */
        ck_assert(!atomic_load(&p.done));
        ck_assert_uint_eq(atomic_load(&q->blocked), 1);
        wp__queue_release(q);
        ck_assert_int_eq(pusher_join(&p), 0);
        ck_assert_uint_eq(atomic_load(&q->blocked), 0);
        ck_assert_uint_eq(wp__queue_count(q), cap);
        for (unsigned i = 1; i <= cap; i++)
            take_expect(q, &items[i]);
        ck_assert_ptr_null(wp__queue_take(q));
        free_queue(q);
    }
}

/* A bigger queue wakes blocked producers once it has drained to half (the
   wake-up hysteresis of wp__queue_release); by then the producer is
   released. */
WP_TEST(blocked_producer_released_by_draining_to_half)
{
    enum { CAP = 8 };
    wp_queue *q = new_queue(CAP);
    item items[CAP + 1];
    pusher p;
    block_pushers(q, items, CAP, &p, 1);
    ck_assert(!atomic_load(&p.done));
    for (unsigned i = 0; i < CAP / 2; i++)
        take_expect(q, &items[i]);
    ck_assert_int_eq(pusher_join(&p), 0);
    ck_assert_uint_eq(atomic_load(&q->blocked), 0);
    ck_assert_uint_eq(wp__queue_count(q), CAP / 2 + 1);
    for (unsigned i = CAP / 2; i <= CAP; i++)
        take_expect(q, &items[i]);
    ck_assert_ptr_null(wp__queue_take(q));
    free_queue(q);
}

/* Several blocked producers and a consumer that keeps taking and
   releasing: all get in, every item comes out once. */
WP_TEST(blocked_producers_all_released)
{
    enum { CAP = 4, N = 6 };
    wp_queue *q = new_queue(CAP);
    item items[CAP + N];
    pusher p[N];
    block_pushers(q, items, CAP, p, N);

    unsigned taken = 0, done = 0;
    unsigned char seen[CAP + N] = { 0 };
    while (done < N || wp__queue_count(q) > 0) {
        item *it = wp__queue_take(q);
        if (it != NULL) {
            wp__queue_release(q);
            ck_assert(it >= items && it < items + CAP + N);
            ck_assert_msg(seen[it - items]++ == 0, "item %td taken twice", it - items);
            taken++;
            continue;
        }
        done = 0;
        for (unsigned i = 0; i < N; i++)
            done += atomic_load(&p[i].done);
        sched_yield();
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_int_eq(pusher_join(&p[i]), 0);
    ck_assert_ptr_null(wp__queue_take(q));
    ck_assert_uint_eq(taken, CAP + N);
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
    ck_assert_int_eq(wp__queue_push(q, &items[CAP + N], false, 0), WP_ESHUTDOWN);
    ck_assert_int_eq(wp__queue_push(q, &items[CAP + N], true, 0), WP_ESHUTDOWN);
    ck_assert_uint_eq(wp__queue_count(q), CAP);

    /* What was queued before the close is still delivered, in order. */
    for (unsigned i = 0; i < CAP; i++)
        take_expect(q, &items[i]);
    ck_assert_ptr_null(wp__queue_take(q));
    /* Even with room now, a closed queue takes nothing. */
    ck_assert_int_eq(wp__queue_push(q, &items[0], false, 0), WP_ESHUTDOWN);
    ck_assert_int_eq(wp__queue_push(q, &items[0], true, 0), WP_ESHUTDOWN);
    ck_assert_ptr_null(wp__queue_take(q));
    ck_assert(wp__queue_sealed(q));
    free_queue(q);
}

/*
 * A producer blocked on a full queue when it is closed must get
 * WP_ESHUTDOWN (queue.h: "wake blocked producers (they get WP_ESHUTDOWN)"),
 * even if a release made room before it got to run again.  The test holds
 * room_mu so that the producer, woken by close's broadcast, only runs again
 * once both the close and the take and release have happened.
 */
WP_TEST(close_blocked_producer_gets_shutdown_despite_room)
{
    wp_queue *q = new_queue(1);
    item items[2];
    pusher p;
    block_pushers(q, items, 1, &p, 1);

    /* The producer is in pthread_cond_wait (it released room_mu there). */
    ck_assert_int_eq(pthread_mutex_lock(&q->room_mu), 0);
    pthread_t closer, taker_t;
    taker tk = { .q = q, .got = NULL };
    ck_assert_int_eq(pthread_create(&closer, NULL, closer_main, q), 0);
    while (!atomic_load(&q->closed))
        sched_yield();
    ck_assert_int_eq(pthread_create(&taker_t, NULL, taker_main, &tk), 0);
    while (wp__queue_count(q) != 0)
        sched_yield();
    ck_assert_int_eq(pthread_mutex_unlock(&q->room_mu), 0);
    ck_assert_int_eq(pthread_join(closer, NULL), 0);
    ck_assert_int_eq(pthread_join(taker_t, NULL), 0);
    ck_assert_ptr_eq(tk.got, &items[0]);

    int rc = pusher_join(&p);
    ck_assert_msg(rc == WP_ESHUTDOWN,
                  "a producer blocked when the queue closed returned %d (want WP_ESHUTDOWN %d); "
                  "its item went into a closed queue", rc, WP_ESHUTDOWN);
    ck_assert_ptr_null(wp__queue_take(q));
    free_queue(q);
}

WP_TEST(sealed_only_after_close_and_no_push_in_progress)
{
    wp_queue *q = new_queue(1);
    item items[2];
    ck_assert(!wp__queue_sealed(q));
    ck_assert_int_eq(wp__queue_push(q, &items[0], false, 0), 0);
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
    take_expect(q, &items[0]);
    ck_assert(wp__queue_sealed(q));
    /* A refused push leaves it sealed. */
    ck_assert_int_eq(wp__queue_push(q, &items[1], true, 0), WP_ESHUTDOWN);
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
    ck_assert_ptr_null(wp__queue_take(q));
    free_queue(q);
}

/* ---------------------------------------------------------- its tests */

TU_PART(queue_add_push_tests,
        TU_CASE("basic", init_capacity_rounding),
        TU_CASE("basic", init_capacity_too_big),
        TU_CASE("basic", fifo_single_thread),
        TU_CASE("basic", exact_bound_nowait),
        TU_CASE("backpressure", blocked_producer_released_by_release),
        TU_CASE("backpressure", blocked_producer_released_by_draining_to_half),
        TU_CASE("backpressure", blocked_producers_all_released),
        TU_CASE("close", close_wakes_blocked_producers),
        TU_CASE("close", close_blocked_producer_gets_shutdown_despite_room),
        TU_CASE("close", sealed_only_after_close_and_no_push_in_progress),
        TU_CASE("close", close_idempotent_and_empty_sealed))
