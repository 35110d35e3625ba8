/* SPDX-License-Identifier: MIT */
/*
 * queue.c — bounded MPMC queue of pointers over ck_ring, with blocking
 * backpressure and lost-wake-up-free consumer wake-ups (see queue.h).
 *
 * Why the count beside the ring: ck_ring holds size-1 items and its full
 * check races with reservation; an atomic count reserved before the ring
 * gives an exact bound, so the ring (twice the capacity) never fills.
 *
 * Why our own commit wait: ck_ring 0.7.1's MPMC commit spins, without
 * yielding, until every earlier producer has committed.  A producer
 * preempted between reserve and commit then stalls all later producers for a
 * whole time slice, and with more producers than cores throughput collapses.
 * Yielding is not enough either (measured: hundreds of thousands of
 * sched_yield calls per 100,000 tasks with 4 producers on 2 cores, the
 * preempted producer still waiting for a CPU).  So we reserve with ck, spin
 * briefly for our turn, then sleep on a futex on the ring's commit index,
 * which frees the CPU for the producer we wait for; a committer wakes the
 * sleepers only when there are any.  Then we commit with ck.
 *
 * Why ranks: the pool's dispatcher takes every item out at once to sort
 * them by priority (docs/ARCHITECTURE.md, "Priorities and queue
 * deadlines"), and must hear of an item that could displace work already
 * sent to a worker even while it wants no items: a push of rank at least
 * the consumer's wake_rank wakes it then.  The rank bits producers set
 * for such pushes are how a consumer about to sleep learns of one pushed
 * just before.  Pushes below wake_rank (all of them, in a pool whose tasks
 * share one priority) cost one load of a line they read anyway.
 *
 * Costs: a push is O(1) — a compare-and-swap on the count, ck's reserve and
 * commit, one fence, a load of the rank bits (and an OR the first time a
 * rank is pushed in a consumer's turn) — and makes a system call only to
 * wake a consumer that sleeps hungry (or for its rank) or a producer that
 * sleeps for its turn; a take and a release are O(1), and a release takes
 * room_mu only when producers are blocked and half the room is free.
 * Every ordering below says which other operation it pairs with.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

#if defined(__SANITIZE_THREAD__)
# define WP_TSAN 1
#elif defined(__has_feature)
# if __has_feature(thread_sanitizer)
#  define WP_TSAN 1
# endif
#endif
#ifdef WP_TSAN
/* ck's atomics are inline assembly that ThreadSanitizer cannot see: tell it
   that publishing an item through the ring orders the item's contents. */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
# define HANDOFF_RELEASE(p) __tsan_release(p)
# define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
# define HANDOFF_RELEASE(p) ((void)(p))
# define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

enum { CONSUMER_AWAKE, CONSUMER_ASLEEP, CONSUMER_HUNGRY };

#define COMMIT_SPINS 64      /* turns to spin for our turn to commit before sleeping */
#define TURN_NAP_NS  1000000 /* longest sleep for it: a safety net, every commit wakes */

static unsigned round_up_pow2(unsigned v)
{
    unsigned p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int wp__queue_init(wp_queue *q, unsigned capacity)
{
    if (capacity == 0)
        capacity = QUEUE_DEFAULT_CAPACITY;
    if (capacity > QUEUE_MAX_CAPACITY)
        return WP_EINVAL;
    q->capacity = round_up_pow2(capacity);
    unsigned ring_size = q->capacity * 2;
    q->slots = calloc(ring_size, sizeof *q->slots);
    if (q->slots == NULL)
        return WP_ENOMEM;
    ck_ring_init(&q->ring, ring_size);
    atomic_init(&q->count, 0);
    atomic_init(&q->pushers, 0);
    atomic_init(&q->closed, false);
    atomic_init(&q->blocked, 0);
    atomic_init(&q->turn_waiters, 0);
    atomic_init(&q->consumer, CONSUMER_AWAKE);
    atomic_init(&q->ranks, 0);
    atomic_init(&q->wake_rank, 0); /* every push marks until the consumer says otherwise */
    if (wp__lock_init(&q->room_mu, &q->room_cv) < 0) {
        free(q->slots);
        q->slots = NULL;
        return WP_ENOMEM;
    }
    atomic_init(&q->wake_fd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (q->wake_fd < 0) {
        wp__queue_destroy(q);
        return WP_ESPAWN;
    }
    return 0;
}

void wp__queue_destroy(wp_queue *q)
{
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    q->wake_fd = -1;
    wp__lock_destroy(&q->room_mu, &q->room_cv);
    free(q->slots);
    q->slots = NULL;
}

/* Count one more item in, if it fits.  The count is only a bound: the
   item's own bytes are ordered by the ring, so the first load may be
   relaxed (a stale value only costs one more turn of the CAS loop). */
static bool reserve_room(wp_queue *q)
{
    unsigned c = atomic_load_explicit(&q->count, memory_order_relaxed);
    while (c < q->capacity)
        if (atomic_compare_exchange_weak(&q->count, &c, c + 1))
            return true;
    return false;
}

static void write_wake_fd(wp_queue *q)
{
    uint64_t one = 1;
    ssize_t n = write(q->wake_fd, &one, sizeof one);
    WP_UNUSED(n); /* EAGAIN means the counter is already non-zero: awake anyway */
}

/* Only the producer that finds the consumer asleep and hungry pays for the
   write, so a busy dispatcher costs producers nothing.  It looks before it
   swaps: a compare-and-swap takes the consumer's cache line for writing
   even when it fails, and the consumer is awake at almost every push.
   The look is a seq_cst load, as the swap's read was (see wp__queue_push). */
static void wake_consumer(wp_queue *q, unsigned rank)
{
    int was = atomic_load(&q->consumer);
    /* wake_rank was stored before the consumer's seq_cst store of ASLEEP
       that this load saw, so the relaxed load reads it or a later value. */
    if (was == CONSUMER_AWAKE ||
        (was == CONSUMER_ASLEEP && rank < atomic_load_explicit(&q->wake_rank, memory_order_relaxed)))
        return;
    if (atomic_compare_exchange_strong(&q->consumer, &was, CONSUMER_AWAKE))
        write_wake_fd(q);
}

/*
 * Set the item's rank bit, after it is published, if its rank could wake
 * the consumer.  The loads are seq_cst, after ring_publish's seq_cst
 * fence:
 *   - wake_rank: a push that reads an old, higher value and so sets no bit
 *     reads it before the consumer's store of the lower one; the fence then
 *     makes the item visible to the consumer after that store, and
 *     wp__queue_may_sleep, having lowered it, looks at the ring itself.
 *   - ranks pairs with the consumer's exchange in wp__queue_take_ranks,
 *     which comes before it takes items: if the exchange comes first, this
 *     load sees the bits cleared and sets ours (or sees a later push's bit,
 *     which stays set until the next exchange); if it comes after, the
 *     item was published before the exchange and that turn takes it.
 * Either way a consumer that goes to sleep sees the item or its bit, or the
 * producer sees it asleep (wake_consumer).  The load before the OR: an OR
 * takes the line for writing, and most pushes find the bit set already.
 */
static void mark_rank(wp_queue *q, unsigned rank)
{
    if (rank < atomic_load(&q->wake_rank))
        return;
    unsigned bit = 1u << rank;
    if (!(atomic_load(&q->ranks) & bit))
        atomic_fetch_or(&q->ranks, bit);
}

/*
 * Wait for room; false if the queue closed meanwhile.  No lost wake-up:
 * the producer counts itself in `blocked` (seq_cst) before it tries for
 * room, and the consumer frees room (seq_cst fetch_sub) before it reads
 * `blocked`, so in the single order of seq_cst operations either the
 * producer's try sees the room, or the consumer sees the producer and
 * broadcasts — under room_mu, which the producer holds from its count to
 * its wait, so the broadcast cannot fall before the wait.  A close stores
 * `closed`, then broadcasts under room_mu: the same argument.
 */
static bool wait_for_room(wp_queue *q)
{
    bool ok = true;
    pthread_mutex_lock(&q->room_mu);
    atomic_fetch_add(&q->blocked, 1);
    for (;;) {
        if (atomic_load(&q->closed)) { /* before room: closed means closed */
            ok = false;
            break;
        }
        if (reserve_room(q))
            break;
        pthread_cond_wait(&q->room_cv, &q->room_mu);
    }
    atomic_fetch_sub(&q->blocked, 1);
    pthread_mutex_unlock(&q->room_mu);
    return ok;
}

static long futex(unsigned *addr, int op, unsigned val, const struct timespec *timeout)
{
    return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

/* Wait until every earlier producer has committed (p_tail == ticket). */
static void wait_for_turn(wp_queue *q, unsigned ticket)
{
    /* A safety net only: every commit wakes the sleepers. */
    static const struct timespec nap = { 0, TURN_NAP_NS };
    for (unsigned spins = 0;; spins++) {
        unsigned tail = ck_pr_load_uint(&q->ring.p_tail);
        if (tail == ticket)
            return;
        if (spins < COMMIT_SPINS) {
            ck_pr_stall();
            continue;
        }
        /* seq_cst, then the kernel compares p_tail with tail: a commit
           either happened before (no sleep) or sees us and wakes us. */
        atomic_fetch_add(&q->turn_waiters, 1);
        futex(&q->ring.p_tail, FUTEX_WAIT_PRIVATE, tail, &nap);
        atomic_fetch_sub(&q->turn_waiters, 1);
    }
}

static void ring_publish(wp_queue *q, void *item)
{
    unsigned ticket = 0;
    void **slot = ck_ring_enqueue_reserve_mpmc(&q->ring, q->slots, &ticket);
    assert(slot != NULL);
    /* Cannot fail: the count keeps the ring at most half full.  The slot
       was last read by a consumer that ck's own fences (invisible to
       ThreadSanitizer) ordered before this reservation: say so. */
    HANDOFF_ACQUIRE(q->slots);
    *slot = item;
    HANDOFF_RELEASE(item);
    wait_for_turn(q, ticket);
    ck_ring_enqueue_commit_mpmc(&q->ring, ticket);
    /* seq_cst: the commit's store to p_tail, then the load of the
       sleepers' count — the mirror of a sleeper's count, then the
       kernel's load of p_tail in FUTEX_WAIT: one of the two sees the
       other, so a sleeper is never left waiting for a commit that
       happened. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&q->turn_waiters) > 0)
        futex(&q->ring.p_tail, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

int wp__queue_push(wp_queue *q, void *item, bool nowait, unsigned rank)
{
    assert(item != NULL); /* NULL is what an empty take answers */
    assert(rank < QUEUE_RANKS);
    int rc = 0;
    atomic_fetch_add(&q->pushers, 1);
    if (atomic_load(&q->closed))
        rc = WP_ESHUTDOWN;
    else if (!reserve_room(q) && (nowait || !wait_for_room(q)))
        rc = nowait && !atomic_load(&q->closed) ? WP_EAGAIN : WP_ESHUTDOWN;
    if (rc == 0) {
        ring_publish(q, item);
        mark_rank(q, rank);
    }
    /* seq_cst: orders the publish before the consumer-state load below, the
       mirror of queue_may_sleep's store-then-check. */
    atomic_fetch_sub(&q->pushers, 1);
    if (atomic_load(&q->closed))
        wp__queue_kick(q); /* it may be waiting for the queue to seal */
    else if (rc == 0)
        wake_consumer(q, rank);
    return rc;
}

/* The consumer alone, as are the three below. */
void *wp__queue_take(wp_queue *q)
{
    void *item;
    if (!ck_ring_dequeue_mpmc(&q->ring, q->slots, &item))
        return NULL;
    HANDOFF_ACQUIRE(item);
    HANDOFF_RELEASE(q->slots); /* the slot is free for a producer's next lap */
    return item;
}

unsigned wp__queue_take_ranks(wp_queue *q)
{
    /* The load first: no write, so no stolen line, when nothing came. */
    return atomic_load(&q->ranks) != 0 ? atomic_exchange(&q->ranks, 0) : 0;
}

void wp__queue_release(wp_queue *q)
{
    /* Blocked producers wake when the queue has drained to half, not at
       every release: one wake-up then refills many slots, instead of a
       producer and the consumer taking turns one item at a time. */
    /* seq_cst, then the load of blocked: see wait_for_room. */
    unsigned was = atomic_fetch_sub(&q->count, 1);
    assert(was > 0); /* every item in the ring was counted first */
    unsigned left = was - 1;
    if (left <= q->capacity / 2 && atomic_load(&q->blocked) > 0) {
        pthread_mutex_lock(&q->room_mu);
        pthread_cond_broadcast(&q->room_cv);
        pthread_mutex_unlock(&q->room_mu);
    }
}

unsigned wp__queue_count(wp_queue *q)
{
    return atomic_load_explicit(&q->count, memory_order_relaxed);
}

void wp__queue_close(wp_queue *q)
{
    atomic_store(&q->closed, true);
    pthread_mutex_lock(&q->room_mu);
    pthread_cond_broadcast(&q->room_cv);
    pthread_mutex_unlock(&q->room_mu);
}

/* A push counts itself in `pushers` (seq_cst) before it looks at `closed`,
   and out only after it has published: once closed is set and pushers is
   seen at zero, no push is between the two, and any later one sees closed
   and is refused.  Each push that leaves with closed set kicks the
   consumer, so the consumer learns of the seal. */
bool wp__queue_sealed(wp_queue *q)
{
    return atomic_load(&q->closed) && atomic_load(&q->pushers) == 0;
}

bool wp__queue_may_sleep(wp_queue *q, bool hungry, unsigned wake_rank)
{
    assert(wake_rank <= QUEUE_RANKS);
    /* Stored only when it changes: producers read its line at every push. */
    unsigned was = atomic_load_explicit(&q->wake_rank, memory_order_relaxed);
    if (wake_rank != was)
        atomic_store(&q->wake_rank, wake_rank);
    atomic_store(&q->consumer, hungry ? CONSUMER_HUNGRY : CONSUMER_ASLEEP);
    /* seq_cst stores, then loads: a producer that published before this
       point is seen here (in the ring, or by its rank bit: mark_rank); one
       that publishes after sees us asleep and writes.  Lowered, the bits
       may miss pushes that read the old rank: the ring itself says. */
    unsigned urgent = wake_rank < QUEUE_RANKS ? ~0u << wake_rank : 0;
    bool look = hungry || wake_rank < was;
    if ((look && ck_ring_size(&q->ring) > 0) || (atomic_load(&q->ranks) & urgent) != 0) {
        atomic_store(&q->consumer, CONSUMER_AWAKE);
        return false;
    }
    return true;
}

/* The consumer's state is a plain seq_cst store: every other thread only
   ever writes AWAKE there (a swap from HUNGRY, or a kick), so this store
   of AWAKE cannot undo anything another thread meant. */
void wp__queue_awake(wp_queue *q, bool drain)
{
    atomic_store(&q->consumer, CONSUMER_AWAKE);
    if (drain) {
        uint64_t n;
        ssize_t r = read(q->wake_fd, &n, sizeof n);
        WP_UNUSED(r); /* EAGAIN: a racing reader already drained it */
    }
}

void wp__queue_renew_wake(wp_queue *q)
{
    /* The old number is not ours any more: never close it.  A producer
       that loaded it just before this store may still write to it once. */
    atomic_store(&q->wake_fd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    wp__queue_kick(q);
}

void wp__queue_kick(wp_queue *q)
{
    /* Always written: a consumer still marked awake may be about to sleep
       having already looked at what this kick is about. */
    atomic_store(&q->consumer, CONSUMER_AWAKE);
    write_wake_fd(q);
}
