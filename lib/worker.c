/* SPDX-License-Identifier: MIT */
/*
 * worker.c — the worker process: forked with two pipes, it reads one TASK
 * frame at a time, runs the task function on a private copy of the
 * argument, and writes back one RESULT or FAILURE frame.  Also the result
 * buffer (wp_buf) the task function fills.
 *
 * A worker keeps nothing it does not need: after fork it leads a process
 * group of its own (and is the subreaper of what its tasks fork), closes
 * every descriptor but stdio and its own two pipe ends (with
 * worker_rss_limit it then opens one more, on /proc/self/statm), resets
 * every signal to its default, dies with its parent (PR_SET_PDEATHSIG) and
 * exits on end-of-file from the pool, after max_tasks_per_worker tasks, or
 * between tasks once its resident set is past worker_rss_limit
 * (docs/ARCHITECTURE.md, "Recycling by resident set").
 * It leaves with _exit() so the parent program's atexit handlers and stdio
 * buffers copied by fork never run or flush twice.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "frame.h"
#include "image.h"
#include "worker.h"

_Static_assert(sizeof(wp_task_fn) <= sizeof(uint64_t), "function pointers travel as 64 bits");
/* The claim words and start times are shared with the pool's process: an
   atomic that needs a lock would need one in shared memory. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics are lock-free");

/* ------------------------------------------------------------ worker loop */

/* Bytes read from the pool at a time: many small TASK frames per read. */
#define WORKER_READ_BUF (64 * 1024)

typedef struct worker {
    const worker_config *cfg;
    worker_shared *shared;
    int   task_fd, result_fd;
    int   statm_fd;         /* /proc/self/statm with an rss_limit, else -1 */
    size_t page_bytes;      /* the unit of statm's counts */
    size_t last_rss;        /* the last resident set statm gave, in bytes */
    uint64_t start_peak_kib; /* getrusage's peak at start: not this worker's own */
    char *rbuf;             /* bytes read from the pool, not yet parsed */
    size_t rstart, rend;
    bool leaving;           /* relayed: past rss_limit, says so in the answer and leaves */
} worker;

static bool over_rss_limit(worker *w);

static void send_frame(worker *w, const frame_header *h, const void *payload)
{
    frame_header out = *h;
    if (out.type != FRAME_READY) /* an answer: says whether this worker leaves after it */
        out.expire_us = w->leaving ? FRAME_LEAVING : 0;
    h = &out;
    struct iovec iov[2] = {
        { .iov_base = (void *)h, .iov_len = sizeof *h },
        { .iov_base = (void *)payload, .iov_len = (size_t)h->length },
    };
    int n = h->length > 0 ? 2 : 1;
    size_t left = sizeof *h + (size_t)h->length;
    while (left > 0) {
        ssize_t put = writev(w->result_fd, iov, n);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            _exit(0); /* the pool is gone */
        }
        left -= (size_t)put;
        for (int i = 0; i < n && put > 0; i++) {
            size_t step = (size_t)put < iov[i].iov_len ? (size_t)put : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + step;
            iov[i].iov_len -= step;
            put -= (ssize_t)step;
        }
    }
}

/* A FAILURE frame; run_us travels in the fn field, as for results. */
static void send_failure(worker *w, uint64_t id, int error, int code, const char *message,
                         uint64_t run_us)
{
    frame_header h;
    size_t len = strlen(message);
    if (len >= FRAME_MESSAGE_MAX)
        len = FRAME_MESSAGE_MAX - 1;
    wp__frame_header(&h, FRAME_FAILURE, id, len);
    h.error = error;
    h.code = code;
    h.fn = run_us;
    send_frame(w, &h, message);
}

/*
 * Read the next TASK frame; false at end of input (the pool closed it).
 * One read takes all the frames the pool has written so far; they are
 * parsed from the buffer one by one.  A payload too big for the buffer is
 * read straight into its place.
 */
static bool receive_task(worker *w, frame_reader *r)
{
    frame_expect ex = { .types = FRAME_TO_WORKER, .task_id = 0, .max_message = w->cfg->max_message };
    for (;;) {
        size_t want;
        void *space = wp__frame_reader_space(r, &want);
        size_t got;
        if (w->rstart < w->rend) { /* parse what the last read brought */
            got = w->rend - w->rstart < want ? w->rend - w->rstart : want;
            memcpy(space, w->rbuf + w->rstart, got);
            w->rstart += got;
        } else if (want >= WORKER_READ_BUF) { /* a big payload: in place */
            ssize_t n = read(w->task_fd, space, want);
            if (n <= 0 && !(n < 0 && errno == EINTR)) {
                _exit(n == 0 ? 0 : WORKER_EXIT_BAD_FRAME);
            }
            got = n > 0 ? (size_t)n : 0;
        } else {
            ssize_t n = read(w->task_fd, w->rbuf, WORKER_READ_BUF);
            if (n == 0 && r->have == 0)
                return false;
            if (n <= 0 && !(n < 0 && errno == EINTR))
                _exit(n == 0 ? 0 : WORKER_EXIT_BAD_FRAME);
            w->rstart = 0;
            w->rend = n > 0 ? (size_t)n : 0;
            continue;
        }
        int rc = wp__frame_reader_advance(r, got, &ex);
        if (rc == FRAME_DONE)
            return true;
        if (rc < 0)
            _exit(WORKER_EXIT_BAD_FRAME);
    }
}

/* The pool's image when this worker was exec'd (worker_main sets it):
   what wp__worker_code translates with. */
static struct image *worker_image;

/* Addresses found lately, so a task function (and a batch's, behind the
   batcher's trampoline: two that alternate) is looked up once, not with a
   walk of the loader's table per task.  A few entries, replaced in turn. */
#define FOUND_CACHE 4
static struct found {
    uint64_t addr;
    bool     code;
    void    *here;
} found[FOUND_CACHE];
static unsigned found_next;

static void *find_code(uint64_t addr, bool code, const char **why)
{
    if (worker_image != NULL)
        return wp__image_translate(worker_image, addr, code, why);
    void *here = (void *)(uintptr_t)addr;
    if (wp__image_holds(here, code))
        return here;
    if (why != NULL)
        *why = "not in the worker's image (loaded after the pool was created?)";
    return NULL;
}

/* Is addr code (or data) of an object loaded here?  A pointer into a
   library the parent loaded after this worker's image was forked is not,
   nor is one into data.  dl_iterate_phdr, unlike dladdr, also sees the
   image of a statically linked program.  O(1) for an address found
   lately; the worker's one thread is the only caller. */
void *wp__worker_code(uint64_t addr, bool code, const char **why)
{
    if (addr == 0) {
        if (why != NULL)
            *why = "a NULL function";
        return NULL;
    }
    for (unsigned i = 0; i < FOUND_CACHE; i++)
        if (found[i].here != NULL && found[i].addr == addr && found[i].code == code)
            return found[i].here;
    void *here = find_code(addr, code, why);
    if (here != NULL) {
        found[found_next] = (struct found){ .addr = addr, .code = code, .here = here };
        found_next = (found_next + 1) % FOUND_CACHE;
    }
    return here;
}

/* Claim the task (worker.h): false if the pool took it back.  *t0 = when
   it started.  A relayed worker's pool claimed it as it sent it. */
static bool claim_task(worker *w, const frame_header *task, int64_t *t0)
{
    unsigned pos = (unsigned)task->code;
    if (pos >= WINDOW_MAX)
        _exit(WORKER_EXIT_BAD_FRAME);
    *t0 = wp__now_us();
    if (w->cfg->relayed)
        return true;
    /* The start time first: the swap (seq_cst) publishes it to a pool that
       sees STARTED (wp__slot_head_started). */
    atomic_store(&w->shared->started_us[pos], *t0);
    return wp__claim(&w->shared->claim[pos], task->task_id, CLAIM_STARTED);
}

/* Run one task and send its outcome; false if it was taken back instead. */
static bool run_task(worker *w, const frame_header *task, const void *arg)
{
    const char *why = NULL;
    /* Before the claim: claimed to running is a few instructions. */
    void *addr = wp__worker_code(task->fn, true, &why);
    wp_task_fn fn;
    memcpy(&fn, &addr, sizeof fn);
    wp_buf result = { .max = w->cfg->max_message };
    /* Past its queue deadline: refused, never started (the pool's timer
       may not have taken it back yet).  A bad position is claim_task's to
       refuse. */
    if (!w->cfg->relayed && task->expire_us > 0 && (unsigned)task->code < WINDOW_MAX &&
        wp__now_us() >= task->expire_us &&
        wp__claim(&w->shared->claim[(unsigned)task->code], task->task_id, CLAIM_EXPIRED)) {
        send_failure(w, task->task_id, WP_EEXPIRED, 0, "expired before it started: reached its "
                     "worker after its queue deadline", 0);
        return false;
    }
    int64_t t0;
    if (!claim_task(w, task, &t0)) {
        send_failure(w, task->task_id, WP_ECANCELED, 0, "taken back before it started", 0);
        return false;
    }
    if (addr == NULL) {
        char msg[WP_MSG_MAX];
        snprintf(msg, sizeof msg, "task function %#llx: %s", (unsigned long long)task->fn, why);
        send_failure(w, task->task_id, WP_ENOFUNC, 0, msg, 0);
        return true;
    }
    int rc = fn(arg, (size_t)task->length, &result);
    uint64_t run_us = (uint64_t)(wp__now_us() - t0);
    /* The task's own output, before anyone can kill us. */
    fflush(stdout);
    fflush(stderr);
    /* A relayed worker decides before it answers, and says so in the
       answer: its pool must not send it another task (FRAME_LEAVING). */
    w->leaving = w->cfg->relayed && over_rss_limit(w);
    /* One write per result, at once: a result held back while the next
       task runs would be lost if the pool killed that task's worker. */
    if (result.overflow) {
        char msg[WP_MSG_MAX];
        snprintf(msg, sizeof msg, "result larger than max_message (%zu bytes)", w->cfg->max_message);
        send_failure(w, task->task_id, WP_E2BIG, 0, msg, run_us);
    } else if (result.outcome != 0) { /* the library's own task failed (worker.h) */
        send_failure(w, task->task_id, result.outcome, 0, result.message, run_us);
    } else if (result.failed || rc != 0) {
        char msg[WP_MSG_MAX];
        if (!result.failed)
            snprintf(msg, sizeof msg, "task returned %d", rc);
        send_failure(w, task->task_id, WP_ETASK, result.failed ? result.code : rc,
                     result.failed ? result.message : msg, run_us);
    } else {
        frame_header h;
        wp__frame_header(&h, FRAME_RESULT, task->task_id, result.len);
        h.fn = run_us;
        send_frame(w, &h, result.data);
    }
    free(result.data);
    return true;
}

/* ----------------------------------------------------------- resident set */

/* /proc/self/statm: one line of seven page counts, each at most 20 digits
   and a separator. */
#define STATM_MAX 160
#define KIB 1024 /* ru_maxrss's unit */

/* The second count of a statm line (resident pages): false if the line
   does not start with two counts. */
static bool statm_resident(const char *line, uint64_t *pages)
{
    const char *c = line;
    while (*c >= '0' && *c <= '9')
        c++;
    if (c == line || *c++ != ' ' || *c < '0' || *c > '9')
        return false;
    uint64_t n = 0;
    for (; *c >= '0' && *c <= '9'; c++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*c - '0');
    }
    *pages = n;
    return true;
}

/*
 * The worker's resident set in bytes, as the kernel counts it: every page
 * of its own that is in memory, those it still shares copy-on-write with
 * the process it was forked from included.  One pread of /proc/self/statm
 * on the descriptor opened at start (the kernel answers from counters it
 * keeps: O(1), however big the process).  Where that cannot be read — no
 * /proc in this mount namespace, or a task closed the descriptor — the
 * peak resident set (getrusage's ru_maxrss) stands in from then on: never
 * below the current size, so a leak still recycles the worker, but so does
 * a task that only peaked past the limit.  Only a peak past the one the
 * worker started with is its own: an exec'd worker's starts at the pool
 * process's peak (the kernel keeps the high-water mark of the address space
 * exec replaced, and posix_spawn's child shares the pool's; docs/
 * ARCHITECTURE.md, "Exec start"), a forked one's at its size when forked.
 * Below that, the last size statm gave stands in, so a worker does not
 * recycle for the pool's memory.  0 if neither can be read.
 */
static size_t resident_bytes(worker *w)
{
    if (w->statm_fd >= 0) {
        char line[STATM_MAX];
        ssize_t n;
        do
            n = pread(w->statm_fd, line, sizeof line - 1, 0);
        while (n < 0 && errno == EINTR); /* a task's signal handler */
        uint64_t pages;
        if (n > 0) {
            line[n] = '\0';
            if (statm_resident(line, &pages)) {
                w->last_rss = pages > SIZE_MAX / w->page_bytes ? SIZE_MAX
                                                               : (size_t)pages * w->page_bytes;
                return w->last_rss;
            }
        }
        /* Not ours any more, or never statm: a later number there may be a
           task's descriptor, so never read it again. */
        w->statm_fd = -1;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0 || ru.ru_maxrss <= 0)
        return 0;
    uint64_t kib = (uint64_t)ru.ru_maxrss;
    if (kib <= w->start_peak_kib)
        return w->last_rss;
    return kib > SIZE_MAX / KIB ? SIZE_MAX : (size_t)kib * KIB;
}

/* Open what resident_bytes reads, when there is a limit to check. */
static void resident_open(worker *w)
{
    w->statm_fd = -1;
    if (w->cfg->rss_limit == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    w->page_bytes = page > 0 ? (size_t)page : 1;
    w->last_rss = 0;
    struct rusage ru;
    w->start_peak_kib = getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0 ? (uint64_t)ru.ru_maxrss : 0;
    w->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

/* Past worker_rss_limit: time to be replaced (one system call, only with
   a limit). */
static bool over_rss_limit(worker *w)
{
    return w->cfg->rss_limit > 0 && resident_bytes(w) > w->cfg->rss_limit;
}

/* ------------------------------------------------------------ worker main */

static _Noreturn void worker_main(const worker_config *cfg, unsigned slot, int task_fd, int result_fd)
{
    worker w = { .cfg = cfg, .shared = &cfg->shared[slot], .task_fd = task_fd, .result_fd = result_fd };
    worker_image = cfg->image;
    memset(found, 0, sizeof found); /* a worker forked by a worker: not its parent's */
    found_next = 0;
    if (cfg->memory_limit > 0) {
        struct rlimit rl = { .rlim_cur = cfg->memory_limit, .rlim_max = cfg->memory_limit };
        if (setrlimit(RLIMIT_AS, &rl) < 0)
            _exit(WORKER_EXIT_SETUP);
    }
    w.rbuf = malloc(WORKER_READ_BUF);
    if (w.rbuf == NULL)
        _exit(WORKER_EXIT_SETUP);
    resident_open(&w);
    if (cfg->init != NULL && cfg->init(cfg->init_ctx) != 0)
        _exit(WORKER_EXIT_INIT_FAILED);
    frame_header ready;
    wp__frame_header(&ready, FRAME_READY, 0, 0);
    send_frame(&w, &ready, NULL);

    frame_reader r;
    wp__frame_reader_init(&r);
    int status = 0;
    for (unsigned done = 0; cfg->max_tasks == 0 || done < cfg->max_tasks;) {
        if (!receive_task(&w, &r))
            break;
        bool ran = run_task(&w, &r.hdr, r.payload != NULL ? r.payload : "");
        done += ran;
        wp__frame_reader_reset(&r);
        /* Its answer is written, so nothing is lost: past the limit, claim
           no more (the pool takes back what it sent ahead).  Not after the
           last of max_tasks: leaving then anyway, it is retired, not
           recycled.  Every worker runs one task first, so even a limit
           below an idle worker's size makes progress. */
        bool over = cfg->relayed ? w.leaving : over_rss_limit(&w);
        if (ran && (cfg->max_tasks == 0 || done < cfg->max_tasks) && over) {
            status = WORKER_EXIT_RECYCLED;
            break;
        }
    }
    fflush(NULL);
    _exit(status);
}

_Noreturn void wp__worker_become(const worker_config *cfg, unsigned slot, pid_t parent,
                                 int task_fd, int result_fd, bool close_others)
{
    /* A process group of its own, before any task runs, so that one kill
       takes whatever its tasks fork (the parent sets it too: whichever of
       the two runs first). */
    (void)setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(WORKER_EXIT_SETUP);
    /* And their subreaper: what they fork and orphan stays below the
       worker while it lives, so it is known whose it is (worker.h). */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* Nothing of the program's (or the fork server's) signal set-up: tasks
       and worker_init start from the defaults, no signal blocked.  Except
       one thing: alone in its group, a worker is never the terminal's
       foreground, and the terminal must not stop it (SIGTTOU, SIGTTIN):
       its output goes out, its reads of the terminal fail with EIO. */
    wp__reset_signals();
    signal(SIGTTOU, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    int keep[] = { task_fd, result_fd };
    if (close_others)
        wp__close_fds_except(3, keep, 2);
    /* Output the parent had buffered but not written is the parent's. */
    __fpurge(stdout);
    __fpurge(stderr);
    worker_main(cfg, slot, task_fd, result_fd);
}

int wp__worker_pipes(int to_worker[2], int from_worker[2], int *os_error)
{
    if (pipe2(to_worker, O_CLOEXEC) < 0) {
        *os_error = errno;
        return WP_ESPAWN;
    }
    if (pipe2(from_worker, O_CLOEXEC) < 0) {
        *os_error = errno;
        close(to_worker[0]);
        close(to_worker[1]);
        return WP_ESPAWN;
    }
    /* Bigger pipes move large arguments in fewer wake-ups; best effort. */
    (void)fcntl(to_worker[1], F_SETPIPE_SZ, WORKER_PIPE_BYTES);
    (void)fcntl(from_worker[1], F_SETPIPE_SZ, WORKER_PIPE_BYTES);
    return 0;
}

void wp__worker_handle_of(worker_handle *out, pid_t pid, int task_fd, int result_fd)
{
    /* Cannot fail: both are descriptors of the caller's own pipes. */
    (void)wp__fd_set_nonblock(task_fd);
    (void)wp__fd_set_nonblock(result_fd);
    out->pid = pid;
    out->task_fd = task_fd;
    out->result_fd = result_fd;
    int pidfd = wp__pidfd_open(pid);
    out->pidfd = pidfd >= 0 ? pidfd : -1; /* without one: by pid (worker.h) */
}

int wp__worker_spawn(const worker_config *cfg, unsigned slot, worker_handle *out, int *os_error)
{
    int to_worker[2], from_worker[2];
    if (wp__worker_pipes(to_worker, from_worker, os_error) < 0)
        return WP_ESPAWN;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        wp__worker_become(cfg, slot, parent, to_worker[0], from_worker[1], true);
    int e = errno;
    close(to_worker[0]);
    close(from_worker[1]);
    if (pid < 0) {
        close(to_worker[1]);
        close(from_worker[0]);
        *os_error = e;
        return WP_ESPAWN;
    }
    (void)setpgid(pid, pid);
    wp__worker_handle_of(out, pid, to_worker[1], from_worker[0]);
    return 0;
}
