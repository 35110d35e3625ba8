/* SPDX-License-Identifier: MIT */
/*
 * check_process_trees.c — the processes tasks leave behind (check_process.c
 * says how the suite's tests work): a child, a setsid'ed child with a child
 * of its own and a double-forked daemon, all gone when their task ends by
 * its deadline, a cancel, recycling or shutdown, but kept while their worker
 * lives; and all gone when the pool's owner dies, with or without pidfds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_process.h"

#define GONE_MS      TU_PROMPT_MS /* processes that must be gone (it takes ms) */
/* The deadline of tree tasks: far past forking and reporting, even on a
   loaded machine under a sanitizer (times tu_slowdown()). */
#define TREE_TIMEOUT_MS 500

/* SIGKILL whatever of pids is still there (not our children: through a
   pidfd, never a pid that may have been reused).  Returns how many were. */
static int kill_leftovers(const int *pids, size_t n)
{
    int left = 0;
    for (size_t i = 0; i < n; i++) {
        if (tu_pid_exited(pids[i]))
            continue;
        left++;
        int fd = pidfd_of(pids[i]);
        if (fd >= 0) {
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
            close(fd);
        }
    }
    return left;
}

/* pids[0 .. must) exit within GONE_MS; then whatever of pids[0 .. n) is
   left is killed (escapees the library cannot reach, or, when the test
   fails, the stuck ones). */
static void assert_gone(const int *pids, size_t n, size_t must, const char *what)
{
    int64_t deadline = tu_now_ms() + GONE_MS;
    size_t i = 0;
    while (i < must) {
        if (tu_pid_exited(pids[i]))
            i++;
        else if (tu_now_ms() < deadline)
            tu_poll_pause();
        else
            break;
    }
    int stuck = i < must ? pids[i] : 0;
    int left = kill_leftovers(pids, must);
    kill_leftovers(pids + must, n - must);
    ck_assert_msg(stuck == 0, "%d of %zu %s outlived it (pid %d first)", left, must, what, stuck);
}

/* ------------------------------------------------- what tasks leave behind */

enum tree_shape {
    TREE_CHILD,  /* a child (in the worker's process group) */
    TREE_SETSID, /* a child in a session of its own, with a child of its own */
    TREE_DAEMON, /* double fork: a grandchild in a session of its own, orphaned */
    TREE_SHAPES
};

static const unsigned tree_reporters[TREE_SHAPES] = { 1, 2, 1 };

typedef struct tree_arg {
    char fifo[128];
    int  shape;
    int  then_return; /* once the tree has reported: 0 hang, 1 return */
} tree_arg;

/* In a process the task forked: say who we are (pid through the FIFO,
   a byte to the task), then wait to be killed. */
static _Noreturn void tree_member(const char *fifo, int ready)
{
    int pid = (int)getpid();
    int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid || write(ready, "x", 1) != 1)
        _exit(1);
    close(fd);
    for (;;)
        pause();
}

/* The task: fork a tree of the given shape, wait until all of it has
   reported, then hang or return. */
static int tu_tree(const void *arg, size_t len, wp_buf *out)
{
    tree_arg a;
    int ready[2];
    TU_TASK_ARG(a, arg, len, out);
    a.fifo[sizeof a.fifo - 1] = '\0';
    if (pipe2(ready, O_CLOEXEC) < 0)
        return wp_buf_fail(out, 5, "tu_tree: no pipe");
    pid_t c = fork();
    if (c == 0) {
        close(ready[0]);
        if (a.shape != TREE_CHILD) {
            if (setsid() < 0)
                _exit(1);
            pid_t g = fork();
            if (g == 0)
                tree_member(a.fifo, ready[1]);
            if (a.shape == TREE_DAEMON)
                _exit(g > 0 ? 0 : 1);
        }
        tree_member(a.fifo, ready[1]);
    }
    close(ready[1]);
    if (c < 0)
        return wp_buf_fail(out, 5, "tu_tree: cannot fork");
    char byte;
    for (unsigned i = 0; i < tree_reporters[a.shape]; i++)
        if (read(ready[0], &byte, 1) != 1)
            return wp_buf_fail(out, 5, "tu_tree: the tree did not report");
    close(ready[0]);
    if (a.shape == TREE_DAEMON)
        waitpid(c, NULL, 0);
    if (a.then_return)
        return 0;
    for (;;)
        pause();
}

/* A test's tree tasks: one of each shape, each with a FIFO of its own. */
typedef struct forest {
    tu_fifo    fifo[TREE_SHAPES];
    wp_future *f[TREE_SHAPES];
    int        pids[MAX_PIDS];
    size_t     n;
    size_t     in_group;  /* pids[0 .. in_group): in a worker's process group */
} forest;

static void forest_open(forest *fr)
{
    memset(fr, 0, sizeof *fr);
    for (int s = 0; s < TREE_SHAPES; s++)
        tu_fifo_open(&fr->fifo[s]);
}

static tree_arg tree_arg_of(const forest *fr, int shape, int then_return)
{
    tree_arg a;
    memset(&a, 0, sizeof a);
    snprintf(a.fifo, sizeof a.fifo, "%s", fr->fifo[shape].path);
    a.shape = shape;
    a.then_return = then_return;
    return a;
}

/* Submit the three trees (their futures kept in fr->f if keep), and read
   every pid they report. */
static void forest_plant(forest *fr, wp_pool *p, const wp_task_options *opts, int then_return,
                         bool keep)
{
    for (int s = 0; s < TREE_SHAPES; s++) {
        tree_arg a = tree_arg_of(fr, s, then_return);
        ck_assert_int_eq(wp_submit(p, tu_tree, &a, sizeof a, opts, keep ? &fr->f[s] : NULL), 0);
    }
    for (int s = 0; s < TREE_SHAPES; s++)
        for (unsigned i = 0; i < tree_reporters[s]; i++) {
            int pid = tu_fifo_read_pid(&fr->fifo[s], TU_DEADLINE_MS);
            if (pid <= 0) {
                kill_leftovers(fr->pids, fr->n);
                ck_abort_msg("a tree of shape %d did not report", s);
            }
            fr->pids[fr->n++] = pid;
            if (s == TREE_CHILD)
                fr->in_group = fr->n;
        }
}

/* After its workers went: the fork server has killed every process of the
   trees.  Under WP_START_FORK only those in a worker's process group are
   sure to go (the rest escaped: see worker.h); the test kills the rest. */
static void forest_gone(const forest *fr)
{
    size_t must = tu_method == WP_START_FORKSERVER ? fr->n : fr->in_group;
    assert_gone(fr->pids, fr->n, must, "processes the tasks forked");
}

static void forest_close(forest *fr)
{
    for (int s = 0; s < TREE_SHAPES; s++) {
        if (fr->f[s] != NULL)
            wp_future_release(fr->f[s]);
        tu_fifo_close(&fr->fifo[s]);
    }
}

/* After the trees went, the pool still serves. */
static void still_serves(wp_pool *p)
{
    wp_future *f = tu_run(p, tu_echo, "next", 5, NULL);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
}

/* What ends the tree tasks' workers. */
enum ending { BY_DEADLINE, BY_CANCEL, BY_RECYCLE, BY_SHUTDOWN };

/* Three tree tasks, one of each shape, on three workers that then end
   `how`: every process of the trees goes with them. */
static void trees_end(enum ending how)
{
    static const int outcome[] = { [BY_DEADLINE] = WP_ETIMEDOUT, [BY_CANCEL] = WP_ECANCELED,
                                   [BY_RECYCLE] = 0 };
    wp_pool *p = tu_make_pool((wp_pool_options){
        .workers = TREE_SHAPES, .max_tasks_per_worker = how == BY_RECYCLE ? 1 : 0 });
    forest fr;
    forest_open(&fr);
    wp_task_options o = { .timeout_ms = how == BY_DEADLINE ? TREE_TIMEOUT_MS * tu_slowdown() : 0 };
    forest_plant(&fr, p, &o, how == BY_RECYCLE, how != BY_SHUTDOWN);
    if (how == BY_SHUTDOWN) {
        ck_assert_int_eq(wp_pool_shutdown(p, 0), 0);
    } else {
        for (int s = 0; s < TREE_SHAPES && how == BY_CANCEL; s++)
            ck_assert_int_eq(wp_future_cancel(fr.f[s]), 0);
        for (int s = 0; s < TREE_SHAPES; s++) {
            tu_wait_settled(fr.f[s]);
            ck_assert_msg(wp_future_error(fr.f[s]) == outcome[how], "tree %d: error %d (%s)", s,
                          wp_future_error(fr.f[s]), wp_future_message(fr.f[s]));
        }
        tu_wait_workers(p, TREE_SHAPES, 2 * TREE_SHAPES); /* the replacements */
    }
    forest_gone(&fr);
    if (how != BY_SHUTDOWN)
        still_serves(p);
    wp_pool_destroy(p);
    forest_close(&fr);
}

WP_TEST_BOTH(tree_deadline)
{
    trees_end(BY_DEADLINE);
}

WP_TEST_BOTH(tree_cancel)
{
    trees_end(BY_CANCEL);
}

/* max_tasks_per_worker: each worker retires after its task. */
WP_TEST_BOTH(tree_recycle)
{
    trees_end(BY_RECYCLE);
}

WP_TEST_BOTH(tree_shutdown)
{
    trees_end(BY_SHUTDOWN);
}

/* A stray of a worker that lives (its task's double-forked daemon, which
   that worker adopted) is left alone when another worker dies; it goes
   with its own worker. */
WP_TEST_BOTH(tree_of_live_worker_kept)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    forest fr;
    forest_open(&fr);
    tree_arg a = tree_arg_of(&fr, TREE_DAEMON, 0);
    ck_assert_int_eq(wp_submit(p, tu_tree, &a, sizeof a, NULL, &fr.f[TREE_DAEMON]), 0);
    int daemon = tu_fifo_read_pid(&fr.fifo[TREE_DAEMON], TU_DEADLINE_MS);
    ck_assert_int_gt(daemon, 0);
    fr.pids[fr.n++] = daemon;
    /* Once the replacement is up, the fork server is done with the dead
       worker's strays (it sweeps them before it forks again). */
    expect_crash(p, tu_segv, 0, SIGSEGV, "killed by SIGSEGV", false, 2);
    bool kept = !tu_pid_exited(daemon);
    ck_assert_int_eq(wp_future_cancel(fr.f[TREE_DAEMON]), 0);
    tu_wait_settled(fr.f[TREE_DAEMON]);
    forest_gone(&fr);
    ck_assert_msg(kept, "another worker's death took a live worker's process");
    wp_pool_destroy(p);
    forest_close(&fr);
}

/* ---------------------------------------------------- the owner dies */

/* Every process under pid (its threads' children, theirs, ...), appended
   to pids. */
static void collect_descendants(int pid, int *pids, size_t *n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char kids[sizeof path + sizeof e->d_name + 16];
        snprintf(kids, sizeof kids, "/proc/%d/task/%s/children", pid, e->d_name);
        FILE *f = fopen(kids, "re");
        int kid;
        while (f != NULL && fscanf(f, "%d", &kid) == 1 && *n < MAX_PIDS) {
            pids[(*n)++] = kid;
            collect_descendants(kid, pids, n);
        }
        if (f != NULL)
            fclose(f);
    }
    closedir(d);
}

typedef struct owner_plan {
    bool trees;    /* run the three trees; else two tasks that hang */
    bool holder;   /* fork a child without exec, keeping every descriptor */
    bool no_pidfd; /* as on a kernel without pidfd */
} owner_plan;

/* How many pids the owner's tasks report through the FIFO of shape s:
   the trees' members, or the two hanging tu_report tasks' workers. */
static unsigned reports_expected(const owner_plan *plan, int s)
{
    if (plan->trees)
        return tree_reporters[s];
    return s == TREE_CHILD ? 2 : 0;
}

#define OWNER_NO_FILTER 9 /* the owner's exit status: no seccomp filter here */

/* In a child of the test: create a pool, have its workers busy, maybe fork
   a holder, report the holder's pid (or 0), and wait to be killed.  No
   Check calls: this is not the test's process. */
static _Noreturn void owner_main(const owner_plan *plan, forest *fr, int hold, int out)
{
    if (plan->no_pidfd && !kernel_without_pidfd())
        _exit(OWNER_NO_FILTER);
    wp_pool *p = NULL;
    unsigned workers = plan->trees ? TREE_SHAPES : 2;
    wp_pool_options o = { .workers = workers, .start_method = tu_method };
    if (wp_pool_create(&p, &o) != 0)
        _exit(10);
    if (!tu_workers_up(p, workers, 0, TU_DEADLINE_MS))
        _exit(11);
    for (unsigned t = 0; t < workers; t++) {
        tree_arg a = tree_arg_of(fr, (int)t, 0);
        tu_report_arg r = tu_report_arg_of(-1, &fr->fifo[TREE_CHILD], NULL);
        int rc = plan->trees ? wp_submit(p, tu_tree, &a, sizeof a, NULL, NULL)
                             : wp_submit(p, tu_report, &r, sizeof r, NULL, NULL);
        if (rc != 0)
            _exit(12);
    }
    int holder = 0;
    if (plan->holder) {
        holder = fork();
        if (holder < 0)
            _exit(13);
        if (holder == 0) { /* keeps every descriptor, until the test lets it go */
            char c;
            while (read(hold, &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
    }
    if (write(out, &holder, sizeof holder) != (ssize_t)sizeof holder)
        _exit(14);
    for (;;)
        pause();
}

/*
 * SIGKILL an owner whose pool is busy: its fork server and workers go
 * within GONE_MS (in practice a few ms: the figure is printed) even while
 * a child it forked holds their socket and pipes.  Under the fork server so
 * does everything the tasks forked; under WP_START_FORK nobody is left to
 * kill those (worker.h), and the test does.
 */
static void owner_dies(const owner_plan *plan)
{
    forest fr;
    forest_open(&fr);
    int hold[2], pp[2];
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
    pid_t owner = fork();
    ck_assert_int_ge(owner, 0);
    if (owner == 0) {
        close(hold[1]);
        close(pp[0]);
        owner_main(plan, &fr, hold[0], pp[1]);
    }
    close(hold[0]);
    close(pp[1]);
    int holder = tu_read_int(pp[0], TU_DEADLINE_MS);
    close(pp[0]);
    int all[MAX_PIDS];
    size_t nall = 0, nreports = 0, want = 0;
    for (int s = 0; s < TREE_SHAPES; s++)
        for (unsigned i = 0; i < reports_expected(plan, s); i++, want++) {
            int pid = holder >= 0 ? tu_fifo_read_pid(&fr.fifo[s], TU_DEADLINE_MS) : -1;
            if (pid > 0) {
                all[nall++] = pid;
                nreports++;
            }
        }
    collect_descendants(owner, all, &nall);
    /* The ones that must go first: everything but the holder under the
       fork server, the workers (the owner's children) under WP_START_FORK. */
    int pids[MAX_PIDS];
    size_t n = 0, must = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            must = n;
        for (size_t i = 0; i < nall; i++) {
            bool first = tu_method == WP_START_FORKSERVER || tu_pid_parent(all[i]) == owner;
            bool again = false;
            for (size_t j = 0; j < i; j++)
                again = again || all[j] == all[i];
            if (all[i] != holder && !again && first == (pass == 0))
                pids[n++] = all[i];
        }
    }
    int64_t killed = tu_now_ms();
    ck_assert_int_eq(kill(owner, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(owner, &st, 0), owner);
    bool set_up = holder >= 0 && nreports == want && (!plan->holder || holder > 0);
    if (set_up)
        assert_gone(pids, n, must, "processes of the dead owner's pool");
    else
        kill_leftovers(pids, n);
    int64_t took = tu_now_ms() - killed;
    close(hold[1]); /* the holder exits */
    forest_close(&fr);
    if (WIFEXITED(st) && WEXITSTATUS(st) == OWNER_NO_FILTER)
        return; /* cannot make the kernel look older here */
    ck_assert_msg(set_up, "the owner did not set up (status 0x%x, holder %d, %zu of %zu reports)",
                  (unsigned)st, holder, nreports, want);
    printf("%s, %s%s%s: %zu processes gone %lld ms after the owner's SIGKILL\n",
           tu_method == WP_START_FORK ? "WP_START_FORK" : "WP_START_FORKSERVER",
           plan->trees ? "trees" : "hanging tasks", plan->holder ? ", a forked child" : "",
           plan->no_pidfd ? ", no pidfd" : "", must, (long long)took);
}

WP_TEST_BOTH(owner_dies_with_forked_child)
{
    owner_dies(&(owner_plan){ .holder = true });
}

WP_TEST_BOTH(owner_dies_with_forked_child_without_pidfd)
{
    owner_dies(&(owner_plan){ .holder = true, .no_pidfd = true });
}

WP_TEST_BOTH(owner_dies_trees)
{
    owner_dies(&(owner_plan){ .trees = true });
}

/* ---------------------------------------------------------- its tests */

TU_PART(process_add_trees_tests,
        TU_TEST(tree_deadline),
        TU_TEST(tree_cancel),
        TU_TEST(tree_recycle),
        TU_TEST(tree_shutdown),
        TU_TEST(tree_of_live_worker_kept),
        TU_TEST(owner_dies_with_forked_child),
        TU_TEST(owner_dies_with_forked_child_without_pidfd),
        TU_TEST(owner_dies_trees))
