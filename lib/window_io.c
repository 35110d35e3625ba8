/* SPDX-License-Identifier: MIT */
/*
 * window_io.c — a worker's pipes, as the dispatcher uses them for its
 * window (docs/ARCHITECTURE.md, "Path of a task", "Wire format"): every
 * frame of the window not yet written goes out in one writev, as much as
 * the pipe takes (wp__slot_write); every answer the pipe holds comes in
 * with one read and settles the head of the window (wp__slot_read).
 * Anything a worker sends that the frame reader or the window cannot
 * explain is a protocol error, and the worker is killed.  What the window
 * holds and how a task is taken back is window.c's.
 *
 * Costs: a write is O(frames written) to build the iovecs, WRITE_IOVS at a
 * time; a read is O(bytes), READ_BUF_BYTES at a time, with a payload of
 * that size or more read straight into its place.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pool_impl.h"

static size_t frame_bytes(const win_entry *e)
{
    return sizeof e->hdr + (size_t)e->hdr.length;
}

/* A worker's pipe broke: if it is still alive the pool's SIGKILL is what
   ends it, and its death is reported so ("" when it was dead already: its
   own status tells).  Thread-unsafe static buffer: dispatcher only. */
static const char *lost_how(const slot *s, const char *why)
{
    static char how[KILL_HOW_MAX];
    if (s->h.pidfd >= 0 && wp__pidfd_exited(s->h.pidfd))
        return "";
    snprintf(how, sizeof how, "was killed by the pool (SIGKILL): %s", why);
    return how;
}

/* Build the iovecs for the unwritten frames, from the first unwritten
   byte; returns how many. */
static int write_iovs(slot *s, struct iovec *iov)
{
    int n = 0;
    size_t skip = s->out_done;
    for (unsigned i = s->written; i < s->count && n + 2 <= WRITE_IOVS; i++) {
        win_entry *e = wp__entry_at(s, i);
        if (skip < sizeof e->hdr)
            iov[n++] = (struct iovec){ (char *)&e->hdr + skip, sizeof e->hdr - skip };
        size_t arg_off = skip > sizeof e->hdr ? skip - sizeof e->hdr : 0;
        if (e->hdr.length > arg_off)
            iov[n++] = (struct iovec){ (char *)e->t->arg + arg_off, (size_t)e->hdr.length - arg_off };
        skip = 0;
    }
    return n;
}

void wp__slot_write(wp_pool *p, slot *s)
{
    while (s->written < s->count && s->h.task_fd >= 0) {
        struct iovec iov[WRITE_IOVS];
        int n = write_iovs(s, iov);
        ssize_t put = writev(s->h.task_fd, iov, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (put < 0) { /* it died, or will: the reap says how */
            wp__slot_stop(p, s, false, 0, NULL, lost_how(s, "its task pipe broke"));
            return;
        }
        size_t left = (size_t)put;
        while (left > 0) {
            win_entry *e = wp__entry_at(s, s->written);
            size_t rest = frame_bytes(e) - s->out_done;
            if (left < rest) {
                s->out_done += left;
                break;
            }
            left -= rest;
            s->out_done = 0;
            s->written++;
            wp__entry_wire_done(e);
        }
    }
}

static void protocol_error(wp_pool *p, slot *s, const char *why)
{
    char msg[WP_MSG_MAX];
    snprintf(msg, sizeof msg, "worker %d broke the protocol: %s; the pool killed it",
             (int)s->h.pid, why);
    wp__slot_stop(p, s, true, WP_EPROTO, msg,
                  "was killed by the pool (SIGKILL): it broke the protocol");
}

/* The worker answered the head's frame. */
static void handle_answer(wp_pool *p, slot *s)
{
    assert(s->count > 0); /* slot_expects took an answer only for a head */
    const frame_header *h = &s->in.hdr;
    win_entry *e = wp__entry_at(s, 0);
    task *t = e->t;
    bool skipped = e->skipped;
    bool failure = h->type == FRAME_FAILURE;
    /* The worker refused it past its queue deadline: only if the claim
       word says so (a task can write to the pipe, not forge the word's
       id). */
    bool refused = failure && h->error == WP_EEXPIRED &&
                   atomic_load(&s->shared->claim[e->pos]) == CLAIM(e->hdr.task_id, CLAIM_EXPIRED);
    bool ok = skipped ? (failure && h->error == WP_ECANCELED) || refused
                      : !failure || wp__worker_outcome(h->error) || refused;
    if (s->written == 0) { /* a task can write to its worker's pipe */
        protocol_error(p, s, "answered a task before it had all of its frame");
        return;
    }
    if (!ok) {
        protocol_error(p, s, skipped ? "ran a task it was told to skip" : "unknown failure code");
        return;
    }
    if (p->relayed && h->expire_us == FRAME_LEAVING)
        s->leaving = true; /* it sent its last answer: send it nothing more */
    if (!skipped)
        wp_future_retain(&t->future); /* across entry_remove */
    if (!skipped && !refused) { /* it ran (the worker counts it too) */
        int64_t sample = (int64_t)(h->fn < (uint64_t)RUN_SAMPLE_MAX_US ? h->fn : (uint64_t)RUN_SAMPLE_MAX_US);
        p->run_avg_us += (sample - p->run_avg_us) / (1 << RUN_AVG_SHIFT);
        s->tasks_done++;
        p->start_failures = 0;
    }
    wp__window_answered(s);
    if (!skipped) {
        size_t len = (size_t)h->length;
        char *payload = wp__frame_reader_take(&s->in);
        if (h->type == FRAME_RESULT) {
            wp__task_finish(p, t, 0, 0, NULL, payload, len);
        } else {
            wp__task_finish(p, t, h->error, h->code, payload != NULL ? payload : "", NULL, 0);
            free(payload);
        }
        wp_future_release(&t->future);
    }
    if (s->state == SLOT_BUSY && s->count == 0) {
        unsigned max = p->opts.max_tasks_per_worker;
        if (max > 0 && s->tasks_done >= max)
            wp__slot_stop(p, s, true, 0, NULL, "was retired"); /* it exits by itself anyway */
        else
            wp__slot_idle(p, s);
    }
}

static frame_expect slot_expects(const wp_pool *p, slot *s)
{
    frame_expect ex = { .types = 0, .task_id = 0, .max_message = p->opts.max_message };
    if (s->state == SLOT_STARTING)
        ex.types = FRAME_BIT(FRAME_READY);
    else if (s->count > 0) {
        ex.types = FRAME_BIT(FRAME_RESULT) | FRAME_BIT(FRAME_FAILURE);
        ex.task_id = wp__entry_at(s, 0)->hdr.task_id;
    }
    return ex;
}

/* Feed n bytes the worker sent into the frame reader; false if the slot
   stopped meanwhile (a protocol error). */
static bool feed(wp_pool *p, slot *s, const char *buf, size_t n)
{
    while (n > 0) {
        if (s->state == SLOT_STOPPING && s->count == 0)
            return true; /* nobody waits for it: drain */
        frame_expect ex = slot_expects(p, s);
        size_t want;
        void *space = wp__frame_reader_space(&s->in, &want);
        size_t take = n < want ? n : want;
        memcpy(space, buf, take);
        buf += take;
        n -= take;
        int rc = wp__frame_reader_advance(&s->in, take, &ex);
        if (rc == FRAME_DONE) {
            if (s->in.hdr.type == FRAME_READY) {
                s->ready_at = wp__now_ms();
                atomic_fetch_add(&p->n.workers_started, 1);
                wp__slot_idle(p, s);
            } else {
                handle_answer(p, s);
            }
            wp__frame_reader_reset(&s->in);
            if (s->state == SLOT_STOPPING && s->deliberate)
                return false;
        } else if (rc < 0) {
            protocol_error(p, s, rc == WP_E2BIG ? "result larger than max_message" : s->in.why);
            wp__frame_reader_reset(&s->in);
            return false;
        }
    }
    return true;
}

/*
 * Read everything the worker has sent (one read for many answers; a big
 * payload straight into its place) and handle each frame.  True if at
 * least one frame was handled.
 */
bool wp__slot_read(wp_pool *p, slot *s)
{
    uint64_t done_before = s->tasks_done + atomic_load(&p->n.workers_started);
    unsigned count_before = s->count;
    for (;;) {
        size_t want;
        void *space = wp__frame_reader_space(&s->in, &want);
        bool direct = want >= READ_BUF_BYTES;
        ssize_t n = read(s->h.result_fd, direct ? space : p->rbuf, direct ? want : READ_BUF_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) { /* end of file: the worker is gone or going */
            close(s->h.result_fd);
            s->h.result_fd = -1;
            wp__slot_stop(p, s, false, 0, NULL, lost_how(s, "its result pipe closed"));
            break;
        }
        if (direct) {
            frame_expect ex = slot_expects(p, s);
            int rc = wp__frame_reader_advance(&s->in, (size_t)n, &ex);
            if (rc == FRAME_DONE || rc < 0) { /* the end of a payload cannot be an error */
                assert(rc == FRAME_DONE);
                handle_answer(p, s);
                wp__frame_reader_reset(&s->in);
            }
        } else if (!feed(p, s, p->rbuf, (size_t)n) || (size_t)n < READ_BUF_BYTES) {
            break;
        }
    }
    return s->tasks_done + atomic_load(&p->n.workers_started) != done_before ||
           s->count != count_before;
}
