/* SPDX-License-Identifier: MIT */
/*
 * window.c — a worker slot's window: the tasks written to its worker and
 * not answered yet, oldest first (docs/ARCHITECTURE.md, "The window").
 *
 * The dispatcher appends tasks (wp__slot_send; window_io.c writes their
 * frames and reads the answers), and takes back a task the worker has not
 * started through its claim word (worker.h): for a cancel, a deadline or a
 * crash of the task ahead, an idle worker stealing it, or a head that runs
 * long.  A task taken back whose frame is already (partly) written stays
 * in the window as a skipped entry until the worker answers "skipped"; one
 * whose frame was not written at all leaves at once.
 *
 * The worker answers frames in order and writes each answer before it
 * starts the next task, so only the head can be running, and once a task
 * is seen started every answer before it is in the pipe.
 */
#include "config.h"

#include <assert.h>
#include <string.h>
#include <unistd.h>

#include "pool_impl.h"

void wp__entry_wire_done(win_entry *e)
{
    task *t = e->t;
    assert(t->wires > 0);
    if (--t->wires == 0 && wp__future_is_settled(atomic_load(&t->future.state)))
        wp__task_drop_arg(t);
}

/* The entry no longer counts as live: it is skipped or leaves. */
static void entry_unlive(slot *s, const win_entry *e)
{
    wp_pool *p = e->t->pool;
    assert(s->live > 0 && s->live_at[e->t->level] > 0 && p->live_at[e->t->level] > 0);
    s->live--;
    s->live_at[e->t->level]--;
    p->live_at[e->t->level]--;
}

/* Entry i leaves the window: its claim position is free again, its
   reference goes.  O(1) for the head (every answer); O(window) for an
   entry taken back from the middle: later entries move down. */
static void entry_remove(slot *s, unsigned i)
{
    win_entry *e = wp__entry_at(s, i);
    if (i >= s->written) { /* its frame was not fully written */
        /* Never half a frame to a live worker: it would misread the rest. */
        assert(i > s->written || s->out_done == 0 || s->h.task_fd < 0);
        wp__entry_wire_done(e);
    } else {
        s->written--;
    }
    /* Free: the worker is done with this word (it swapped or saw SKIPPED
       before it answered, and the answer is read), and the next use of
       the position stores OFFERED afresh. */
    atomic_store(&s->shared->claim[e->pos], 0);
    s->pos_used &= ~(1u << e->pos);
    assert(s->bytes >= e->hdr.length);
    s->bytes -= (size_t)e->hdr.length;
    if (!e->skipped)
        entry_unlive(s, e);
    task *t = e->t;
    if (i == 0) { /* an answer: the head moves on, nothing is copied */
        s->head = (s->head + 1) % WINDOW_MAX;
    } else {
        for (unsigned k = i; k + 1 < s->count; k++)
            *wp__entry_at(s, k) = *wp__entry_at(s, k + 1);
    }
    s->count--;
    wp_future_release(&t->future);
}

/* Entry i's frame has not been written at all. */
static bool entry_unwritten(const slot *s, unsigned i)
{
    return i > s->written || (i == s->written && s->out_done == 0);
}

/* The head changed: its deadline, provisionally from now (it starts about
   now); the timer refines it from the worker's own start time. */
static void head_changed(slot *s)
{
    s->head_at_us = wp__now_us();
    s->head_start_us = -1;
    s->deadline_us = -1;
    if (s->count == 0)
        return;
    win_entry *e = wp__entry_at(s, 0);
    if (e->skipped)
        return;
    if (e->t->opts.timeout_ms > 0)
        s->deadline_us = wp__sat_add(s->head_at_us, wp__ms_to_us(e->t->opts.timeout_ms));
    wp__future_start(&e->t->future); /* false: a cancel is on its way */
}

void wp__window_answered(slot *s)
{
    entry_remove(s, 0);
    head_changed(s);
}

/* Read once per head, and kept within [0, now]: a task can write the
   words it shares with the pool, but not move its deadline later than
   the pool first saw it running, nor overflow the pool's arithmetic. */
int64_t wp__slot_head_started(slot *s)
{
    if (s->count == 0 || s->win[s->head].skipped)
        return -1;
    const win_entry *e = &s->win[s->head];
    if (s->head_start_us < 0) {
        /* The worker stores started_us, then swaps the claim (seq_cst, so
           a release): a load that sees STARTED (an acquire) sees the
           start time too. */
        if (atomic_load(&s->shared->claim[e->pos]) != CLAIM(e->hdr.task_id, CLAIM_STARTED))
            return -1;
        int64_t at = atomic_load(&s->shared->started_us[e->pos]), now = wp__now_us();
        s->head_start_us = at < 0 ? 0 : at > now ? now : at;
    }
    return s->head_start_us;
}

/* A head taken back was marked running when it became the head: it is
   waiting again (unless a cancel settles it first). */
static void unstart(task *t)
{
    if (atomic_load(&t->future.state) == WP_RUNNING)
        wp__future_requeue(&t->future);
}

/* Claim e's word for the pool (worker.h): true if its worker will not run
   it — the pool swapped it to SKIPPED now, or the worker found it past
   its queue deadline and swapped it to EXPIRED (it answers so). */
static bool claim_back(slot *s, const win_entry *e)
{
    atomic_uint_fast64_t *word = &s->shared->claim[e->pos];
    return wp__claim(word, e->hdr.task_id, CLAIM_SKIPPED) ||
           atomic_load(word) == CLAIM(e->hdr.task_id, CLAIM_EXPIRED);
}

/*
 * Take back entry i if its worker has not started it: the task returns
 * (attempts undone; the caller requeues or settles it), or NULL if it has
 * started.
 */
static task *take_back(slot *s, unsigned i)
{
    win_entry *e = wp__entry_at(s, i);
    assert(!e->skipped);
    if (!claim_back(s, e))
        return NULL;
    task *t = e->t;
    wp_future_retain(&t->future); /* the entry's reference goes below */
    t->attempts--;
    t->slot = -1;
    unstart(t);
    if (entry_unwritten(s, i)) {
        entry_remove(s, i);
    } else {
        entry_unlive(s, e);
        e->skipped = true;
    }
    if (i == 0) /* a new head, or a skipped one: its deadline goes */
        head_changed(s);
    /* Its last task left before its frame was written (a task ahead of
       it given elsewhere in the same turn took it back): the worker has
       nothing to answer, so it is idle now, as after a last answer —
       busy with no task it would count as running for good. */
    if (s->count == 0 && s->state == SLOT_BUSY)
        wp__slot_idle(t->pool, s);
    wp_future_release(&t->future);
    return t;
}

/* The index of t's live entry, or -1.  O(window). */
static int entry_of(slot *s, const task *t)
{
    for (unsigned i = 0; i < s->count; i++) {
        const win_entry *e = wp__entry_at(s, i);
        if (e->t == t && !e->skipped)
            return (int)i;
    }
    return -1;
}

/* The running average decides the window: tasks that take about
   WINDOW_BUDGET_US in all, within [WINDOW_MIN, WINDOW_MAX]. */
static unsigned window_target(const wp_pool *p)
{
    if (p->relayed)
        return 1; /* every task sent is a task started: none waits behind it */
    int64_t avg = p->run_avg_us > 0 ? p->run_avg_us : 1;
    int64_t n = 1 + WINDOW_BUDGET_US / avg;
    return n < WINDOW_MIN ? WINDOW_MIN : n > WINDOW_MAX ? WINDOW_MAX : (unsigned)n;
}

unsigned wp__slot_room(const wp_pool *p, slot *s, int64_t now_us)
{
    if ((s->state != SLOT_IDLE && s->state != SLOT_BUSY) || wp__slot_retiring(p, s) || s->leaving)
        return 0;
    unsigned cap = window_target(p);
    if (s->count > 0) { /* a head that runs long keeps one task behind it, no more */
        int64_t started = wp__slot_head_started(s);
        if (started >= 0 && now_us - started >= HOL_US && cap > HOL_KEEP)
            cap = HOL_KEEP; /* a cap, never a raise: a relayed window stays at one */
    }
    if (s->count >= cap || (s->count > 0 && s->bytes >= WINDOW_BYTES))
        return 0;
    unsigned room = cap - s->count;
    unsigned max = p->opts.max_tasks_per_worker;
    if (max > 0) { /* the worker leaves after max tasks: never send more */
        unsigned promised = s->tasks_done + s->live;
        room = promised >= max ? 0 : room < max - promised ? room : max - promised;
    }
    return room;
}

void wp__slot_send(wp_pool *p, slot *s, task *t)
{
    assert(s->state == SLOT_IDLE || s->state == SLOT_BUSY);
    assert(s->count < WINDOW_MAX && s->pos_used != UINT32_MAX);
    assert(!p->relayed || s->count == 0); /* a task sent is a task started: nothing behind */
    /* The task is in no other place: not held, in no window. */
    assert(t->slot < 0 && !wp__list_linked(&t->held_node));
    unsigned pos = (unsigned)__builtin_ctz(~s->pos_used);
    s->pos_used |= 1u << pos;
    t->id = ++p->last_id;
    t->slot = (int)(s - p->slots);
    t->attempts++;
    t->wires++;
    wp_future_retain(&t->future); /* the entry's */
    win_entry *e = &s->win[(s->head + s->count) % WINDOW_MAX];
    *e = (win_entry){ .t = t, .skipped = false, .pos = pos };
    wp__frame_header(&e->hdr, FRAME_TASK, t->id, t->arg_len);
    memcpy(&e->hdr.fn, &t->fn, sizeof t->fn);
    e->hdr.code = (int32_t)pos;
    /* A first attempt carries its queue deadline: the worker refuses it
       past that (a retry has started once: no deadline applies). */
    e->hdr.expire_us = t->attempts == 1 ? t->expire_us : 0;
    /* Offered before the frame can be read: this seq_cst store comes
       before the writev that carries the frame, and the worker's read of
       it before its compare-and-swap (a write(2) and the read(2) that
       returns its bytes order memory as a release and an acquire would:
       the kernel's pipe lock), so the worker's swap finds OFFERED. */
    atomic_store(&s->shared->claim[pos], CLAIM(t->id, CLAIM_OFFERED));
    if (p->relayed) {
        /* Its worker is on another rank and cannot swap our word: the
           task starts here, as it is sent, never to be taken back (a
           window of one, window_target), and a queue deadline no longer
           applies (docs/ARCHITECTURE.md, "More than one machine"). */
        e->hdr.expire_us = 0;
        atomic_store(&s->shared->started_us[pos], wp__now_us());
        bool claimed = wp__claim(&s->shared->claim[pos], t->id, CLAIM_STARTED);
        assert(claimed);
        (void)claimed;
    }
    s->count++;
    s->live++;
    s->live_at[t->level]++;
    p->live_at[t->level]++;
    s->bytes += t->arg_len;
    if (s->count == 1) {
        head_changed(s);
        wp__slot_set_state(p, s, SLOT_BUSY);
    }
}

void wp__stop_task(wp_pool *p, slot *s, task *t, int error, const char *msg)
{
    assert(t->slot == (int)(s - p->slots)); /* t is s's to stop */
    int i = entry_of(s, t);
    if (i < 0)
        return;
    task *back = take_back(s, (unsigned)i);
    if (back != NULL) {
        wp__task_finish(p, back, error, 0, msg, NULL, 0);
        return;
    }
    /* It started.  Take back every task behind it first: once none of
       them can start, killing the worker costs t alone.  One that has
       started already means t has finished, its answer in the pipe; if
       the read finds none, the claim words lie (a task can write them):
       the worker is killed all the same. */
    for (unsigned k = s->count; k-- > (unsigned)i + 1;) {
        if (wp__entry_at(s, k)->skipped)
            continue;
        task *n = take_back(s, k);
        if (n == NULL)
            break;
        wp__held_push(p, n, 0);
    }
    wp__slot_read(p, s); /* the answers before it, and maybe its own */
    if (entry_of(s, t) >= 0)
        wp__slot_stop(p, s, true, error, msg, "was killed by the pool (SIGKILL) to stop its task");
}

bool wp__slot_take_back_task(wp_pool *p, slot *s, task *t, int error, const char *msg)
{
    int i = entry_of(s, t);
    task *back = i >= 0 ? take_back(s, (unsigned)i) : NULL;
    if (back != NULL)
        wp__task_finish(p, back, error, 0, msg, NULL, 0);
    return back != NULL;
}

bool wp__slot_yield(wp_pool *p, slot *s, const task *t)
{
    bool took = false;
    /* The window is in line order but for started tasks (every task joins
       it this way), so those behind t are at its end: from the newest,
       stop at the first that is ahead of t or has started.  O(1) when
       nothing yields. */
    for (unsigned i = s->count; i-- > 0;) {
        win_entry *e = wp__entry_at(s, i);
        if (e->skipped)
            continue;
        if (wp__task_before(e->t, t))
            break;
        task *back = take_back(s, i);
        if (back == NULL)
            break;
        wp__held_push(p, back, 0);
        took = true;
    }
    return took;
}

task *wp__slot_steal(slot *s)
{
    for (unsigned i = 1; i < s->count; i++)
        if (!wp__entry_at(s, i)->skipped)
            return take_back(s, i); /* the oldest not started, or none */
    return NULL;
}

void wp__slot_unblock(wp_pool *p, slot *s, int64_t now_us)
{
    if (s->live <= HOL_KEEP)
        return;
    int64_t started = wp__slot_head_started(s);
    if (started < 0 || now_us - started < HOL_US)
        return;
    /* Newest first, each in front: the line keeps their order.  The first
       behind the head stays (an idle worker may steal it). */
    for (unsigned i = s->count; i-- > HOL_KEEP;) {
        if (wp__entry_at(s, i)->skipped)
            continue;
        task *t = take_back(s, i);
        if (t != NULL)
            wp__held_push(p, t, 0);
    }
}

/*
 * The window ends (the worker stops or died): from the newest entry to
 * the oldest, one not started goes back to the front of the line (so the
 * line keeps their order), the started one ends with error and code.
 */
void wp__window_resolve(wp_pool *p, slot *s, int error, int code, const char *msg)
{
    /* No frame of it is finished now.  The pipe may still be open: a reap
       can come first while something the task forked keeps the worker's
       result pipe from reaching end-of-file. */
    if (s->h.task_fd >= 0) {
        close(s->h.task_fd);
        s->h.task_fd = -1;
    }
    while (s->count > 0) {
        unsigned i = s->count - 1;
        win_entry *e = wp__entry_at(s, i);
        if (e->skipped) {
            entry_remove(s, i);
            continue;
        }
        task *t = e->t;
        wp_future_retain(&t->future);
        bool back = claim_back(s, e);
        entry_remove(s, i);
        if (back) {
            t->attempts--;
            unstart(t);
            wp__held_push(p, t, 0);
        } else {
            wp__task_finish(p, t, error, code, msg, NULL, 0);
        }
        wp_future_release(&t->future);
    }
    s->written = 0;
    s->out_done = 0;
    s->deadline_us = -1;
    s->head_start_us = -1;
}

task *wp__slot_head_task(slot *s)
{
    if (s->count == 0 || wp__entry_at(s, 0)->skipped)
        return NULL;
    return wp__entry_at(s, 0)->t;
}

task *wp__slot_stealable(slot *s)
{
    for (unsigned i = 1; i < s->count; i++)
        if (!wp__entry_at(s, i)->skipped)
            return wp__entry_at(s, i)->t;
    return NULL;
}

task *wp__slot_cancellable(slot *s)
{
    for (unsigned i = s->count; i-- > 0;) {
        win_entry *e = wp__entry_at(s, i);
        if (e->skipped)
            continue;
        if (i == 0 && (e->t->opts.flags & WP_TASK_SHIELD) && wp__slot_head_started(s) >= 0)
            continue; /* cancel cannot stop it: it runs to its end */
        return e->t;
    }
    return NULL;
}
