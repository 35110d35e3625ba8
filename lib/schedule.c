/* SPDX-License-Identifier: MIT */
/*
 * schedule.c — what the dispatcher decides each turn: which worker gets
 * which task, and what the clock asks for (deadlines, tasks stuck behind a
 * long one, the shutdown grace, starting and stopping workers).
 *
 * Scheduling is in line order (line.c: highest priority first, then
 * submit order) as far as it can be: idle workers first, one task each,
 * then every window is topped up round-robin, one task per worker per
 * round, so a few tasks spread over the workers and many stream; an idle
 * worker with nothing to take steals the first task in line not yet
 * started behind another worker.  No task starts while one ahead of it in
 * line waits: a task joins a window only after the tasks there behind it
 * are taken back (wp__slot_yield) — in every window, if any holds a task
 * of lower priority —, a task that finds no room takes
 * back, from every window, the tasks not started that are behind it
 * (preempt), and a task left behind a head that has run HOL_US goes to the
 * next worker with room before anything behind it in line does (unstick).
 * What is left: tasks already in two windows start in the order their
 * workers reach them, at most a window's worth of work (WINDOW_BUDGET_US)
 * or HOL_US apart.
 *
 * Costs: the loops here scan every slot, O(workers) each, a few of them per
 * turn.  That is fine: workers are at most MAX_WORKERS (1024), each check
 * is a few loads of the slot, and a turn that has anything to do makes
 * system calls (a read, a writev) that cost more than the whole scan.  A
 * task given or taken back is O(1) but for a steal, O(workers) to find the
 * oldest.
 */
#include "config.h"

#include <stdio.h>

#include "pool_impl.h"

bool wp__spawn_broken(const wp_pool *p)
{
    return (p->start_failures >= FAILURES_BEFORE_ESPAWN || p->poll_retry_at > 0) &&
           atomic_load(&p->n.alive) == 0;
}

/* The first task in line waiting behind a busy worker, taken back, or
   NULL.  O(workers). */
static task *steal_first(wp_pool *p)
{
    slot *from = NULL;
    const task *first = NULL;
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        const task *t = s->state == SLOT_BUSY ? wp__slot_stealable(s) : NULL;
        if (t != NULL && (first == NULL || wp__task_before(t, first))) {
            first = t;
            from = s;
        }
    }
    return from != NULL ? wp__slot_steal(from) : NULL;
}

/* Its head has run HOL_US.  O(1). */
static bool long_head(slot *s, int64_t now_us)
{
    if (s->state != SLOT_BUSY)
        return false;
    int64_t started = wp__slot_head_started(s);
    return started >= 0 && now_us - started >= HOL_US;
}

/* A task waits behind a long head (wp__slot_unblock left it there for an
   idle worker to steal). */
static bool stuck(slot *s, int64_t now_us)
{
    return s->live >= 2 && long_head(s, now_us);
}

/* For slot s, which has room and no long head of its own (there the task
   would wait as long): the first task left behind a long head elsewhere,
   taken back, if it is ahead of everything in the line; NULL otherwise.
   O(workers), only while p->stuck says such tasks may be
   there: a scan that finds none, or none ahead of the line, clears it
   for the rest of the turn. */
static task *unstick(wp_pool *p, slot *s, int64_t now_ms, int64_t now_us)
{
    slot *from = NULL;
    const task *first = NULL;
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *o = &p->slots[i];
        const task *t = o != s && stuck(o, now_us) ? wp__slot_stealable(o) : NULL;
        if (t != NULL && (first == NULL || wp__task_before(t, first))) {
            first = t;
            from = o;
        }
    }
    const task *next = first != NULL ? wp__line_peek(p, now_ms) : NULL;
    if (first == NULL || (next != NULL && wp__task_before(next, first))) {
        p->stuck = 0;
        return NULL;
    }
    p->stuck--;
    return wp__slot_steal(from);
}

/* Every window takes back its tasks not started that are behind t.
   O(workers), and O(1) per slot where nothing is behind t. */
static bool yield_everywhere(wp_pool *p, const task *t)
{
    bool took = false;
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->state == SLOT_BUSY)
            took |= wp__slot_yield(p, s, t);
    }
    return took;
}

/* Some window holds a live task of a level below t's.  O(LEVELS). */
static bool outranks_a_window(const wp_pool *p, const task *t)
{
    for (unsigned l = 0; l < t->level; l++)
        if (p->live_at[l] > 0)
            return true;
    return false;
}

/* Give slot s task t, unless t was cancelled while it waited.  What is
   behind t in s goes back to the line (wp__slot_yield); so does what is
   behind it in every other window, if any holds a task of lower
   priority: otherwise that worker, freed first, would start it before t
   (O(workers) then; O(LEVELS) when priorities are all equal).  A task
   that joins a long head waits behind it: p->stuck counts it at once, so
   that the next worker with room in this very turn takes it (unstick)
   before anything behind it in line. */
static void give(wp_pool *p, slot *s, task *t, int64_t now_us)
{
    if (wp_future_state(&t->future) != WP_PENDING) {
        wp__task_settle(t, WP_ECANCELED, 0, "cancelled", NULL, 0);
        return;
    }
    if (outranks_a_window(p, t))
        (void)yield_everywhere(p, t);
    else
        (void)wp__slot_yield(p, s, t);
    wp__slot_send(p, s, t);
    if (p->nslots > 1 && stuck(s, now_us))
        p->stuck++;
}

/* One round over the slots: idle ones only, or all with room.  False once
   nothing more is waiting.  O(workers) per round, and a round gives at
   least one task or ends the dispatch: O(workers × tasks given). */
static bool dispatch_round(wp_pool *p, bool idle_only, int64_t now_ms, int64_t now_us,
                           bool *gave)
{
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if ((idle_only && (s->state != SLOT_IDLE || s->count > 0)) || wp__slot_room(p, s, now_us) == 0)
            continue;
        task *t = p->stuck > 0 && !long_head(s, now_us) ? unstick(p, s, now_ms, now_us) : NULL;
        if (t == NULL)
            t = wp__next_task(p, now_ms);
        if (t == NULL && s->state == SLOT_IDLE)
            t = steal_first(p);
        if (t == NULL)
            return false;
        give(p, s, t, now_us);
        *gave = true;
    }
    return true;
}

/* Idle workers first, then rounds while tasks are given and wait.  True
   if tasks still wait (every window is full). */
static bool dispatch_rounds(wp_pool *p, int64_t now_ms, int64_t now_us)
{
    bool gave = false;
    bool more = dispatch_round(p, true, now_ms, now_us, &gave);
    while (more) {
        gave = false;
        more = dispatch_round(p, false, now_ms, now_us, &gave);
        if (!gave)
            return more;
    }
    return false;
}

/*
 * Tasks wait and no window has room: the first in line must still start
 * before every task behind it, so those not started are taken back from
 * every window (they go back in line after it).  Their room comes back
 * when their frames are answered "skipped" (at once if not written yet).
 * O(workers), and O(1) per slot where nothing is behind the first.
 */
static bool preempt(wp_pool *p, int64_t now_ms)
{
    const task *first = wp__line_peek(p, now_ms);
    return first != NULL && yield_everywhere(p, first);
}

void wp__dispatch(wp_pool *p)
{
    int64_t now_us = wp__now_us(), now_ms = now_us / 1000;
    p->dispatched_ms = now_ms;
    if (wp__spawn_broken(p)) { /* no worker can start: fail rather than wait forever */
        task *t;
        while ((t = wp__next_task(p, now_ms)) != NULL)
            wp__task_settle(t, WP_ESPAWN, 0, p->spawn_error, NULL, 0);
        return;
    }
    if (dispatch_rounds(p, now_ms, now_us) && preempt(p, now_ms))
        dispatch_rounds(p, now_ms, now_us); /* the room of frames never written */
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->written < s->count)
            wp__slot_write(p, s); /* every frame it got, in one writev */
    }
}

/* Nothing queued, held or live in a window.  O(workers). */
static bool drained(wp_pool *p)
{
    if (!wp__queue_sealed(&p->queue) || wp__queue_count(&p->queue) > 0 || atomic_load(&p->n.held) > 0)
        return false;
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].live > 0)
            return false;
    return true;
}

bool wp__finished(wp_pool *p)
{
    if (!atomic_load(&p->closing) || !drained(p))
        return false;
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].state != SLOT_EMPTY)
            return false;
    return true;
}

/* Past the shutdown grace: cancel everything but shielded running tasks
   (a shield means cancel cannot stop it; shutdown waits for it, bounded
   by its own deadline).  Runs every turn after the grace; it finds
   nothing left to do after the first.  O(workers + tasks cancelled). */
static void cancel_everything(wp_pool *p)
{
    static const char gone[] = "the pool shut down before the task finished";
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        task *t;
        while ((s->state == SLOT_IDLE || s->state == SLOT_BUSY) &&
               (t = wp__slot_cancellable(s)) != NULL) {
            if (!(t->opts.flags & WP_TASK_SHIELD))
                wp__stop_task(p, s, t, WP_ECANCELED, gone);
            else if (!wp__slot_take_back_task(p, s, t, WP_ECANCELED, gone))
                break; /* it started meanwhile: shielded, it runs to its end */
        }
    }
    task *t;
    while ((t = wp__next_task(p, INT64_MAX)) != NULL)
        wp__task_settle(t, WP_ECANCELED, 0, "the pool shut down before the task ran", NULL, 0);
}

/* The head's deadline came (provisionally from when it became the head):
   check it against the worker's own start time, never firing early. */
static void check_deadline(wp_pool *p, slot *s, int64_t now_us)
{
    task *t = wp__slot_head_task(s);
    if (t == NULL || s->deadline_us < 0 || now_us < s->deadline_us)
        return;
    int64_t limit = wp__ms_to_us(t->opts.timeout_ms);
    int64_t started = wp__slot_head_started(s);
    int64_t due = wp__sat_add(started >= 0 ? started : now_us, limit);
    if (started < 0 || now_us < due) {
        s->deadline_us = due; /* not started yet, or it started later */
        return;
    }
    char msg[WP_MSG_MAX];
    snprintf(msg, sizeof msg, "task ran past its deadline of %lld ms", (long long)t->opts.timeout_ms);
    wp__stop_task(p, s, t, WP_ETIMEDOUT, msg);
}

/* Every slot's timers, every turn: O(workers). */
void wp__handle_timers(wp_pool *p)
{
    wp__resize_apply(p); /* first: the slots below are the ones in use */
    int64_t now_us = wp__now_us(), now = now_us / 1000;
    wp__expire_due(p, now_us);
    if (wp__grace_over(p, now)) {
        cancel_everything(p); /* again for late arrivals: they kick */
        p->grace_spent = true;
    }
    bool done = atomic_load(&p->closing) && drained(p);
    if (p->poll_retry_at > 0 && now >= p->poll_retry_at)
        p->poll_retry_at = 0; /* try again with workers */
    bool may_start = !done && !p->fs_full && p->poll_retry_at == 0;
    p->stuck = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (s->state == SLOT_BUSY)
            check_deadline(p, s, now_us);
        if (s->state == SLOT_BUSY && p->nslots > 1)
            wp__slot_unblock(p, s, now_us);
        if (p->nslots > 1 && stuck(s, now_us))
            p->stuck++;
        if (s->state == SLOT_STARTING && now >= s->start_deadline) {
            char how[KILL_HOW_MAX];
            snprintf(how, sizeof how, "was killed by the pool (SIGKILL): not ready within %lld ms",
                     (long long)p->opts.start_timeout_ms);
            wp__slot_stop(p, s, true, 0, NULL, how);
        }
        if (done && s->state != SLOT_EMPTY)
            wp__slot_stop(p, s, true, 0, NULL, "was stopped at shutdown");
        if (may_start && s->state == SLOT_EMPTY && now >= s->spawn_at && !wp__slot_retiring(p, s))
            wp__slot_start(p, s);
        if (s->state == SLOT_STOPPING && s->kill_again && !p->fs_full)
            wp__slot_kill(p, s); /* the socket drained: the kill it refused */
        if (s->state == SLOT_STOPPING && !p->use_forkserver && s->h.pidfd < 0)
            wp__slot_waitpid(p, s, true); /* no pidfd to wait on: it was just killed */
    }
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* O(workers + held). */
int64_t wp__next_timer_us(wp_pool *p, bool hungry)
{
    int64_t next = -1;
    bool closing = atomic_load(&p->closing);
    bool done = closing && drained(p);
    int64_t grace = atomic_load(&p->grace_deadline);
    /* Until handle_timers has acted on it, however late: deciding "past"
       from a second reading of the clock could skip it forever. */
    if (closing && grace >= 0 && !p->grace_spent)
        next = wp__ms_to_us(grace);
    for (unsigned i = 0; i < p->nslots; i++) {
        slot *s = &p->slots[i];
        if (done && s->state != SLOT_EMPTY && s->state != SLOT_STOPPING)
            next = 0; /* drained by this very turn: handle_timers stops it next */
        if (s->state == SLOT_BUSY) {
            next = min_deadline(next, s->deadline_us);
            int64_t started = s->live > HOL_KEEP && p->nslots > 1 ? wp__slot_head_started(s) : -1;
            if (started >= 0)
                next = min_deadline(next, started + HOL_US);
        }
        if (s->state == SLOT_EMPTY && !done && !p->fs_full && p->poll_retry_at == 0 &&
            !wp__slot_retiring(p, s))
            next = min_deadline(next, s->spawn_at * 1000);
        if (s->state == SLOT_STARTING)
            next = min_deadline(next, wp__ms_to_us(s->start_deadline));
    }
    /* O(held): short, see line.c.  A dispatcher that wants no task still
       wakes for a retry that comes due after its last look at the line:
       the retry may be ahead of a task pipelined in a window, which
       preempt then takes back.  Only once: a due retry that finds no
       room and nothing to take back waits for the next event. */
    int64_t due = wp__held_next_due_ms(p, hungry ? INT64_MIN : p->dispatched_ms);
    if (due >= 0)
        next = min_deadline(next, due * 1000);
    next = min_deadline(next, wp__expire_next_us(p));
    if (p->poll_retry_at > 0)
        next = min_deadline(next, p->poll_retry_at * 1000);
    return next;
}

/* O(workers) at worst, but it stops at the first slot with room. */
bool wp__hungry(const wp_pool *p)
{
    if (wp__spawn_broken(p))
        return true;
    int64_t now_us = wp__now_us();
    for (unsigned i = 0; i < p->nslots; i++)
        if (wp__slot_room(p, &p->slots[i], now_us) > 0)
            return true;
    return false;
}

/* The lowest level a window holds, plus one: a task submitted at that
   level or above may have to displace one (wp__slot_yield), so it must
   wake a dispatcher that sleeps without wanting tasks; a task with a queue
   deadline always does (RANK_DEADLINE: its timer).  O(LEVELS). */
unsigned wp__wake_rank(const wp_pool *p)
{
    unsigned lowest = RANK_DEADLINE;
    for (unsigned l = 0; l < LEVELS; l++)
        if (p->live_at[l] > 0) {
            lowest = l;
            break;
        }
    return lowest + 1 < RANK_DEADLINE ? lowest + 1 : RANK_DEADLINE;
}
