/* SPDX-License-Identifier: MIT */
/*
 * check_faults_workers.c — faults inside a pool (check_faults.c says how the
 * suite's tests work): workers that crash, exit, write garbage on the
 * pool's pipe or are killed by someone else, tasks that fail, the program
 * closing the pool's descriptors under it, and crashes interleaved with
 * successes from four threads — each fault takes down only its own task.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#include "check_faults.h"

/* ---------------------------------------------------------------- crashes */

WP_TEST_BOTH(worker_crashes)
{
    static const struct {
        wp_task_fn fn;
        int        arg;
        int        code;
        const char *text;
    } kinds[] = {
        { tu_segv, 0, 11, "SIGSEGV" },
        { tu_abort, 0, 6, "SIGABRT" },
        { tu_exit, 3, 256 + 3, "exited with status 3" },
    };
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);
    for (unsigned k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        wp_future *f = tu_run_crash(p, kinds[k].fn, &kinds[k].arg, sizeof kinds[k].arg, NULL, 1,
                                    k + 2); /* and its replacement */
        tu_check_outcome(f, WP_FAILED, WP_ECRASHED, kinds[k].code, NULL);
        const char *msg = wp_future_message(f);
        ck_assert_msg(strstr(msg, kinds[k].text) != NULL, "message \"%s\" lacks \"%s\"", msg,
                      kinds[k].text);
        ck_assert_msg(tu_has_number(msg, pid), "message \"%s\" lacks the worker's pid %d", msg, pid);
        wp_future_release(f);
        wait_gone(pid);

        /* A replacement serves the next tasks. */
        int next = tu_worker_pid(p);
        ck_assert_int_ne(next, pid);
        f = tu_run(p, tu_echo, "ok", 2, NULL);
        ck_assert_int_eq(wp_future_error(f), 0);
        wp_future_release(f);
        wp_pool_stats s = tu_pool_stats(p);
        tu_assert_stats(s, .crashed = TU_EQ(k + 1), .failed = TU_EQ(k + 1),
                           .workers_started = TU_EQ(k + 2), .workers_alive = TU_EQ(1));
        pid = next;
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(1 + 3 * 3), .succeeded = TU_EQ(1 + 3 * 2),
                       .failed = TU_EQ(3), .crashed = TU_EQ(3), .timed_out = TU_EQ(0),
                       .cancelled = TU_EQ(0));
    assert_gone(&pid, 1);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(protocol_garbage)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);
    wp_future *f = tu_run_crash(p, tu_garbage, NULL, 0, NULL, 1, 2); /* and its replacement */
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_EPROTO);
    ck_assert_str_ne(wp_future_message(f), "");
    wp_future_release(f);
    wait_gone(pid); /* it was killed */

    int next = tu_worker_pid(p);
    ck_assert_int_ne(next, pid);
    for (int i = 0; i < 10; i++) {
        f = tu_run(p, tu_echo, &i, sizeof i, NULL);
        ck_assert_int_eq(tu_result_int(f), i);
        wp_future_release(f);
    }
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(13), .succeeded = TU_EQ(12), .failed = TU_EQ(1),
                       .crashed = TU_EQ(0), .workers_started = TU_EQ(2));
    wp_pool_destroy(p);
}

/* A task that closes the worker's pipes and goes on running: the pool
   kills that worker, and says so (not "killed by SIGKILL", as if from
   outside). */
static int close_pipes_and_hang(const void *arg, size_t len, wp_buf *out)
{
    (void)arg; (void)len; (void)out;
    for (int fd = 3; fd < 64; fd++)
        close(fd);
    for (;;)
        pause();
    return 0;
}

WP_TEST_BOTH(pool_kill_is_named)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    wp_future *f = tu_run_crash(p, close_pipes_and_hang, NULL, 0, NULL, 1, 2);
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    ck_assert_int_eq(wp_future_code(f), SIGKILL);
    ck_assert_msg(strstr(wp_future_message(f), "killed by the pool (SIGKILL): its result pipe closed") != NULL,
                  "message: %s", wp_future_message(f));
    wp_future_release(f);

    f = tu_run_crash(p, tu_garbage, NULL, 0, NULL, 1, 3);
    ck_assert_int_eq(wp_future_error(f), WP_EPROTO);
    ck_assert_msg(strstr(wp_future_message(f), "the pool killed it") != NULL, "message: %s",
                  wp_future_message(f));
    wp_future_release(f);
    wp_pool_destroy(p);
}

WP_TEST_BOTH(task_failures)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);

    int code = 42;
    wp_future *f = tu_run(p, tu_fail, &code, sizeof code, NULL);
    tu_check_outcome(f, WP_FAILED, WP_ETASK, 42, "tu_fail");
    wp_future_release(f);

    code = 5;
    f = tu_run(p, tu_return, &code, sizeof code, NULL);
    ck_assert_int_eq(wp_future_state(f), WP_FAILED);
    ck_assert_int_eq(wp_future_error(f), WP_ETASK);
    ck_assert_int_eq(wp_future_code(f), 5);
    ck_assert_str_ne(wp_future_message(f), "");
    wp_future_release(f);

    code = 0;
    f = tu_run(p, tu_return, &code, sizeof code, NULL);
    ck_assert_int_eq(wp_future_state(f), WP_SUCCEEDED);
    ck_assert_int_eq(wp_future_code(f), 0);
    wp_future_release(f);

    /* A failing task is no reason to replace its worker. */
    ck_assert_int_eq(tu_worker_pid(p), pid);
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    wp_pool_stats s = tu_pool_stats(p);
    tu_assert_stats(s, .submitted = TU_EQ(5), .succeeded = TU_EQ(3), .failed = TU_EQ(2),
                       .crashed = TU_EQ(0), .workers_started = TU_EQ(1));
    wp_pool_destroy(p);
}

/* ----------------------------------------- descriptors closed under it */

enum { MAX_FD_SEEN = 4096 };

/* Mark in open[] the descriptors this process has open now. */
static void open_fds(bool *open)
{
    memset(open, 0, MAX_FD_SEEN * sizeof *open);
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int dfd = dirfd(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dfd && fd < MAX_FD_SEEN)
            open[fd] = true;
    }
    closedir(d);
}

/* The program closes every descriptor the pool opened (as programs that
   "close all descriptors but mine" do): tasks still settle, nothing
   crashes or reads what it did not receive, destroy returns. */
WP_TEST_BOTH(descriptors_closed_under_pool)
{
    static bool before[MAX_FD_SEEN], after[MAX_FD_SEEN];
    tu_start_symbolizer(); /* its pipes are not the pool's: they stay open */
    open_fds(before);
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    wp_future *f = tu_run(p, tu_empty, NULL, 0, NULL);
    wp_future_release(f);
    open_fds(after);
    int closed = 0;
    for (int fd = 0; fd < MAX_FD_SEEN; fd++)
        if (after[fd] && !before[fd]) {
            close(fd);
            closed++;
        }
    ck_assert_int_ge(closed, 3);
    enum { N = 20 };
    wp_future *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(wp_submit(p, tu_echo, &i, sizeof i, NULL, &fs[i]), 0);
    ck_assert_int_eq(wp_wait_all(fs, N, TU_DEADLINE_MS), 0);
    tu_assert_not_spinning("a pool whose descriptors were closed");
    for (int i = 0; i < N; i++) {
        int err = wp_future_error(fs[i]);
        ck_assert_msg(err == 0 || err == WP_ESPAWN || err == WP_ECRASHED, "task %d: %s (%s)", i,
                      wp_strerror(err), wp_future_message(fs[i]));
        wp_future_release(fs[i]);
    }
    wp_pool_destroy(p);
}

/* ---------------------------------------- crashes among successes, 4 threads */

enum { IL_THREADS = 4, IL_PER_THREAD = 100, IL_TASKS = IL_THREADS * IL_PER_THREAD, IL_EVERY = 7 };
static atomic_int il_done[IL_TASKS];   /* done-callback runs per task */
static atomic_int il_state[IL_TASKS];  /* the state each callback saw */

typedef struct il_thread {
    wp_pool   *pool;
    int        first;
    bool       check;  /* wait for and check the outcomes in the thread */
    int        submit_failed, wrong;
    wp_future *fs[IL_PER_THREAD];
} il_thread;

static void il_on_done(wp_future *f, void *ctx)
{
    int id = (int)(intptr_t)ctx;
    atomic_store(&il_state[id], wp_future_state(f));
    atomic_fetch_add(&il_done[id], 1);
}

/* Wait for this thread's tasks, check each outcome, release the futures. */
static void il_check(il_thread *t)
{
    for (int k = 0; k < IL_PER_THREAD; k++) {
        int id = t->first + k;
        wp_future *f = t->fs[k];
        if (f == NULL)
            continue;
        if (wp_future_wait(f, -1) != 0) {
            t->wrong++;
        } else if (id % IL_EVERY == 0) {
            if (wp_future_state(f) != WP_FAILED || wp_future_error(f) != WP_ECRASHED ||
                wp_future_code(f) != 11 || strstr(wp_future_message(f), "SIGSEGV") == NULL)
                t->wrong++;
        } else {
            size_t len = 0;
            const void *r = wp_future_result(f, &len);
            if (wp_future_state(f) != WP_SUCCEEDED || r == NULL || len != sizeof id ||
                memcmp(r, &id, sizeof id) != 0) {
                fprintf(stderr, "task %d: state %d error %s message \"%s\"\n", id,
                        wp_future_state(f), wp_strerror(wp_future_error(f)), wp_future_message(f));
                t->wrong++;
            }
        }
        wp_future_release(f);
        t->fs[k] = NULL;
    }
}

static void *il_run(void *arg)
{
    il_thread *t = arg;
    for (int k = 0; k < IL_PER_THREAD; k++) {
        int id = t->first + k;
        wp_task_fn fn = id % IL_EVERY == 0 ? tu_segv : tu_echo;
        t->fs[k] = NULL;
        if (wp_submit(t->pool, fn, &id, sizeof id, NULL, &t->fs[k]) != 0 ||
            wp_future_on_done(t->fs[k], il_on_done, (void *)(intptr_t)id) != 0)
            t->submit_failed++;
    }
    if (t->check)
        il_check(t);
    return NULL;
}

WP_TEST_BOTH(interleaved_crashes)
{
    for (int i = 0; i < IL_TASKS; i++) {
        atomic_store(&il_done[i], 0);
        atomic_store(&il_state[i], -1);
    }
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 2 });
    /* Under ASan with WP_START_FORK, replacements must not be forked while
       our threads are in the allocator (see TU_ASAN): hold both workers at
       a gate while the threads submit, and open it once they are done. */
    bool gated = TU_ASAN && tu_method == WP_START_FORK;
    tu_hold h;
    wp_future *held[2] = { NULL, NULL };
    if (gated) {
        tu_hold_open(&h);
        for (int i = 0; i < 2; i++)
            held[i] = tu_submit_held(p, &h, NULL, NULL);
    }
    pthread_t th[IL_THREADS];
    static il_thread t[IL_THREADS];
    for (int i = 0; i < IL_THREADS; i++) {
        t[i] = (il_thread){ .pool = p, .first = i * IL_PER_THREAD, .check = !gated };
        ck_assert_int_eq(pthread_create(&th[i], NULL, il_run, &t[i]), 0);
    }
    for (int i = 0; i < IL_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    if (gated) {
        /* Open the gate, then wait without allocating until every task has
           settled and the crashed workers are replaced. */
        for (int i = 0; i < 2; i++)
            while (write(h.gate.fd, "x", 1) < 0 && errno == EINTR) /* no Check call */
                ;
        for (int i = 0; i < IL_THREADS; i++)
            for (int k = 0; k < IL_PER_THREAD; k++)
                if (t[i].fs[k] != NULL)
                    wp_future_wait(t[i].fs[k], -1);
        tu_wait_workers(p, 2, 0);
        for (int i = 0; i < IL_THREADS; i++)
            il_check(&t[i]);
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(wp_future_wait(held[i], -1), 0);
            ck_assert_int_eq(wp_future_state(held[i]), WP_SUCCEEDED);
            wp_future_release(held[i]);
        }
        tu_hold_close(&h);
    }
    for (int i = 0; i < IL_THREADS; i++) {
        ck_assert_int_eq(t[i].submit_failed, 0);
        ck_assert_int_eq(t[i].wrong, 0);
    }
    /* Shutdown returns once the dispatcher is done: every callback ran. */
    ck_assert_int_eq(wp_pool_shutdown(p, -1), 0);
    unsigned segv = 0;
    for (int id = 0; id < IL_TASKS; id++) {
        ck_assert_msg(atomic_load(&il_done[id]) == 1, "task %d: %d done-callbacks", id,
                      atomic_load(&il_done[id]));
        bool crash = id % IL_EVERY == 0;
        segv += crash;
        ck_assert_int_eq(atomic_load(&il_state[id]), crash ? WP_FAILED : WP_SUCCEEDED);
    }
    unsigned extra = gated ? 2 : 0; /* the held tasks */
    wp_pool_stats s = tu_pool_stats(p);
    ck_assert_uint_eq(s.submitted, IL_TASKS + extra);
    tu_assert_stats(s, .submitted = TU_EQ(s.succeeded + s.failed + s.cancelled),
                       .succeeded = TU_EQ(IL_TASKS - segv + extra), .failed = TU_EQ(segv),
                       .crashed = TU_EQ(segv), .cancelled = TU_EQ(0));
    ck_assert_uint_ge(s.workers_started, segv); /* the last crashes may go unreplaced */
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(faults_add_workers_tests,
        TU_TEST(worker_crashes),
        TU_TEST(protocol_garbage),
        TU_TEST(pool_kill_is_named),
        TU_TEST(descriptors_closed_under_pool),
        TU_TEST(task_failures),
        TU_TEST(interleaved_crashes))
