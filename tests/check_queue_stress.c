/* SPDX-License-Identifier: MIT */
/*
 * check_queue_stress.c — the queue under many threads (check_queue.c says
 * how the suite's tests work): many producers and one consumer lose and
 * reorder nothing, no wake-up is ever lost, and kicks from many threads
 * wake a sleeper that is not hungry.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "check_queue.h"

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
        if (wp__queue_push(s->q, it, false, 0) != 0)
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
        item *it = wp__queue_take(s.q);
        if (it == NULL) {
            sched_yield();
            continue;
        }
        wp__queue_release(s.q);
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
    ck_assert_ptr_null(wp__queue_take(s.q));
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

/*
 * The consumer loop of a dispatcher: {may_sleep; poll(wake_fd); awake; take
 * (and release) all}.  First, bulk producers push as fast as they can (and block on the
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
        if (wp__queue_push(lw->q, &lw->items[i], false, 0) != 0)
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
        if (wp__queue_may_sleep(lw->q, true, QUEUE_RANKS)) {
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
        while ((it = wp__queue_take(lw->q)) != NULL) {
            wp__queue_release(lw->q);
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
    ck_assert_ptr_null(wp__queue_take(lw.q));
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
        if (!wp__queue_may_sleep(k.q, false, QUEUE_RANKS))
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

/* ---------------------------------------------------------- its tests */

TU_PART(queue_add_stress_tests,
        TU_CASE("stress", stress_many_producers_one_consumer),
        TU_CASE("stress", no_lost_wakeup_many_threads),
        TU_CASE("stress", kick_from_threads_wakes_non_hungry_sleeper))
