/* SPDX-License-Identifier: MIT */
/*
 * check_queue_wake.c — the consumer's sleep/wake protocol over the eventfd
 * (check_queue.c says how the suite's tests work): a push wakes a hungry
 * sleeper and writes nothing while it is awake, may_sleep says no with an
 * item there, a kick wakes a sleeper that is not hungry, a push of rank at
 * least the wake rank wakes one too, and a push refused after close still
 * wakes it; a taken item counts until released.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <unistd.h>

#include "check_queue.h"

/* Is the eventfd readable right now? */
static bool wake_fd_readable(wp_queue *q)
{
    struct pollfd p = { .fd = q->wake_fd, .events = POLLIN };
    int n = poll(&p, 1, 0);
    ck_assert_int_ge(n, 0);
    return n == 1 && (p.revents & POLLIN);
}

/* ------------------------------------------------------------ wake protocol */

WP_TEST(wake_hungry_sleeper_on_push)
{
    wp_queue *q = new_queue(8);
    item it;
    ck_assert(!wake_fd_readable(q));
    ck_assert(wp__queue_may_sleep(q, true, QUEUE_RANKS));
    ck_assert(!wake_fd_readable(q));
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert_msg(wake_fd_readable(q), "a push to a hungry sleeper did not write the eventfd");
    wp__queue_awake(q, true);
    ck_assert_msg(!wake_fd_readable(q), "queue_awake(q, true) did not drain the eventfd");
    take_expect(q, &it);

    /* Only the first push after going to sleep writes; the state is AWAKE
       after it, so a second push does not. */
    ck_assert(wp__queue_may_sleep(q, true, QUEUE_RANKS));
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert(wake_fd_readable(q));
    uint64_t n = 0;
    ck_assert_int_eq(read(q->wake_fd, &n, sizeof n), (ssize_t)sizeof n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
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
        ck_assert_int_eq(wp__queue_push(q, &items[i], true, 0), 0);
    ck_assert(!wake_fd_readable(q));
    /* Awake again after a sleep. */
    for (unsigned i = 0; i < 32; i++)
        take_expect(q, &items[i]);
    ck_assert(wp__queue_may_sleep(q, true, QUEUE_RANKS));
    wp__queue_awake(q, false);
    for (unsigned i = 0; i < 32; i++)
        ck_assert_int_eq(wp__queue_push(q, &items[i], true, 0), 0);
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
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert(!wp__queue_may_sleep(q, true, QUEUE_RANKS));
    /* It stays awake: a further push does not write. */
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert(!wake_fd_readable(q));
    take_expect(q, &it);
    take_expect(q, &it);
    ck_assert(wp__queue_may_sleep(q, true, QUEUE_RANKS));
    wp__queue_awake(q, false);
    free_queue(q);
}

WP_TEST(non_hungry_sleeper_ignores_push_but_wakes_on_kick)
{
    wp_queue *q = new_queue(8);
    item it;
    /* Not hungry: may sleep even with work queued (no idle worker). */
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert(wp__queue_may_sleep(q, false, QUEUE_RANKS));
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), 0);
    ck_assert_msg(!wake_fd_readable(q), "a push woke a consumer that was not hungry");
    wp__queue_kick(q);
    ck_assert_msg(wake_fd_readable(q), "queue_kick did not wake a non-hungry sleeper");
    wp__queue_awake(q, true);
    ck_assert(!wake_fd_readable(q));
    /* Kick also wakes a hungry sleeper. */
    take_expect(q, &it);
    take_expect(q, &it);
    ck_assert(wp__queue_may_sleep(q, true, QUEUE_RANKS));
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
    ck_assert(wp__queue_may_sleep(q, false, QUEUE_RANKS));
    ck_assert_int_eq(wp__queue_push(q, &it, true, 0), WP_ESHUTDOWN);
    ck_assert(wake_fd_readable(q));
    wp__queue_awake(q, true);
    ck_assert(!wake_fd_readable(q));
    ck_assert(wp__queue_sealed(q));
    free_queue(q);
}

/* ------------------------------------------------------------------ ranks */

/* Asleep without wanting items: a push below the wake rank writes
   nothing, one at or above it writes once; the rank bits tell a consumer
   about to sleep that such a push came first, until it takes them. */
WP_TEST(rank_wakes_sleeper_that_is_not_hungry)
{
    wp_queue *q = new_queue(16);
    item it[4];
    ck_assert(wp__queue_may_sleep(q, false, 3));
    ck_assert_int_eq(wp__queue_push(q, &it[0], true, 2), 0);
    ck_assert_msg(!wake_fd_readable(q), "a push below the wake rank woke the consumer");
    ck_assert_int_eq(wp__queue_push(q, &it[1], true, 3), 0);
    ck_assert_msg(wake_fd_readable(q), "a push at the wake rank did not wake the consumer");
    wp__queue_awake(q, true);
    ck_assert_uint_eq(wp__queue_take_ranks(q), 1u << 3); /* rank 2 could wake nothing */
    ck_assert_uint_eq(wp__queue_take_ranks(q), 0);

    /* Pushed while awake, before the consumer goes to sleep: may_sleep
       sees the bit and says no; below the rank it says yes. */
    ck_assert_int_eq(wp__queue_push(q, &it[2], true, QUEUE_RANKS - 1), 0);
    ck_assert(!wake_fd_readable(q));
    ck_assert(!wp__queue_may_sleep(q, false, QUEUE_RANKS - 1));
    ck_assert(wp__queue_may_sleep(q, false, QUEUE_RANKS)); /* no rank wakes it */
    wp__queue_awake(q, false);
    (void)wp__queue_take_ranks(q);
    /* Lowered from QUEUE_RANKS to 0: the three items pushed meanwhile set
       no bit that 0 would see (the rank then woke nothing), so the ring
       itself says no. */
    ck_assert(!wp__queue_may_sleep(q, false, 0));
    for (int i = 0; i < 3; i++)
        take_expect(q, &it[i]);
    ck_assert(wp__queue_may_sleep(q, false, 0)); /* nothing there, nothing new */
    wp__queue_awake(q, false);
    free_queue(q);
}

/* take leaves the item counted until release: the bound holds while the
   consumer sorts what it took. */
WP_TEST(take_counts_until_release)
{
    wp_queue *q = new_queue(2);
    item it[3];
    ck_assert_int_eq(wp__queue_push(q, &it[0], true, 0), 0);
    ck_assert_int_eq(wp__queue_push(q, &it[1], true, 0), 0);
    ck_assert_ptr_eq(wp__queue_take(q), &it[0]);
    ck_assert_ptr_eq(wp__queue_take(q), &it[1]);
    ck_assert_ptr_null(wp__queue_take(q));
    ck_assert_uint_eq(wp__queue_count(q), 2);
    ck_assert_int_eq(wp__queue_push(q, &it[2], true, 0), WP_EAGAIN);
    wp__queue_release(q);
    ck_assert_uint_eq(wp__queue_count(q), 1);
    ck_assert_int_eq(wp__queue_push(q, &it[2], true, 0), 0);
    ck_assert_ptr_eq(wp__queue_take(q), &it[2]);
    wp__queue_release(q); /* it[1] */
    ck_assert_uint_eq(wp__queue_count(q), 1);
    wp__queue_release(q); /* it[2] */
    ck_assert_uint_eq(wp__queue_count(q), 0);
    free_queue(q);
}

/* ---------------------------------------------------------- its tests */

TU_PART(queue_add_wake_tests,
        TU_CASE("wake", wake_hungry_sleeper_on_push),
        TU_CASE("wake", push_while_awake_does_not_write),
        TU_CASE("wake", may_sleep_false_when_item_there),
        TU_CASE("wake", non_hungry_sleeper_ignores_push_but_wakes_on_kick),
        TU_CASE("wake", refused_push_after_close_wakes_sleeper),
        TU_CASE("wake", rank_wakes_sleeper_that_is_not_hungry),
        TU_CASE("wake", take_counts_until_release))
