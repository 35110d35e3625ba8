/* SPDX-License-Identifier: MIT */
/*
 * check_exec.c — the exec start (lib/exec.c, lib/image.c;
 * docs/ARCHITECTURE.md, "Exec start"): describing this process's objects
 * and finding an address again from the description; a parser that
 * refuses every malformed description; the worker role taken before main
 * and never a second run of main; and what an exec'd worker has and does
 * not have — main's globals, the program's locks and descriptors, a
 * worker_init_ctx that is not static data.
 *
 * The rest of WP_START_EXEC (deadlines, cancel, crashes, retries,
 * recycling, the batcher) is every other suite's: their tests run under
 * all three start methods (WP_TEST_BOTH).
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "image.h"
#include "testutil.h"

extern char **environ;

#define MUTATIONS 4000     /* random byte changes the parser must survive */
#define MUTATE_SEED 12345u
#define MAIN_VALUE 1000    /* what main-time code writes into fresh_global */
#define INITIAL_VALUE 7    /* fresh_global's initial value */
#define STRAY_STATUS 122   /* lib/worker.h's WORKER_EXIT_SETUP */

static int fresh_global = INITIAL_VALUE;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

/* A static function: found by its place in the executable, no symbol. */
static int read_global(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    return wp_buf_append(out, &fresh_global, sizeof fresh_global);
}

/* ---------------------------------------------------------- the image */

WP_TEST(image_round_trip)
{
    void *desc;
    size_t len;
    ck_assert_int_eq(wp__image_describe(&desc, &len), 0);
    image im;
    ck_assert_int_eq(wp__image_parse(&im, desc, len), 0);
    ck_assert_uint_gt(im.n, 1); /* the executable, libc at least */
    for (size_t i = 1; i < im.n; i++)
        ck_assert(im.obj[i - 1].hi <= im.obj[i].lo);
    /* In the process that described itself, every address is itself. */
    wp_task_fn fn = read_global;
    void *fnp;
    memcpy(&fnp, &fn, sizeof fnp);
    ck_assert_ptr_eq(wp__image_translate(&im, (uint64_t)(uintptr_t)fnp, true, NULL), fnp);
    ck_assert_ptr_eq(wp__image_translate(&im, (uint64_t)(uintptr_t)&fresh_global, false, NULL),
                     &fresh_global);
    const char *why = NULL;
    ck_assert_ptr_null(wp__image_translate(&im, (uint64_t)(uintptr_t)&fresh_global, true, &why));
    ck_assert_ptr_nonnull(why); /* data is not code */
    void *heap = malloc(16);
    why = NULL;
    ck_assert_ptr_null(wp__image_translate(&im, (uint64_t)(uintptr_t)heap, false, &why));
    ck_assert_ptr_nonnull(strstr(why, "in no object the pool had loaded"));
    free(heap);
    wp__image_free(&im);
    free(desc);
}

/* Every cut of a description, and thousands of random byte changes:
   WP_EPROTO or a description whose objects are in order, never a crash
   (ASan and UBSan builds run this too; fuzz/fuzz_image.c goes further). */
WP_TEST(image_parse_refuses)
{
    void *desc;
    size_t len;
    ck_assert_int_eq(wp__image_describe(&desc, &len), 0);
    image im;
    for (size_t cut = 0; cut < len; cut++) {
        char *b = malloc(cut ? cut : 1);
        memcpy(b, desc, cut);
        ck_assert_int_eq(wp__image_parse(&im, b, cut), WP_EPROTO);
        free(b);
    }
    unsigned seed = MUTATE_SEED;
    char *b = malloc(len);
    for (int m = 0; m < MUTATIONS; m++) {
        memcpy(b, desc, len);
        for (int k = 0; k < 1 + m % 4; k++)
            b[rand_r(&seed) % len] = (char)rand_r(&seed);
        int rc = wp__image_parse(&im, b, len);
        ck_assert(rc == 0 || rc == WP_EPROTO);
        for (size_t i = 1; rc == 0 && i < im.n; i++)
            ck_assert(im.obj[i - 1].hi <= im.obj[i].lo);
        if (rc == 0)
            wp__image_free(&im);
    }
    free(b);
    free(desc);
}

/* ------------------------------------------------------- the worker role */

/* Start this very program with the role variable set to `role`: it must
   exit with WORKER_EXIT_SETUP before main — never run this suite again. */
static void check_stray_role(const char *role)
{
    char var[128];
    snprintf(var, sizeof var, "%s=%s", EXEC_ROLE_ENV, role);
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 2, sizeof *env);
    memcpy(env, environ, n * sizeof *env);
    env[n] = var;
    char *argv[] = { "check_exec-stray", NULL };
    pid_t pid;
    ck_assert_int_eq(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env), 0);
    free(env);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == STRAY_STATUS,
                  "role \"%s\": status 0x%x, not exit %d", role, (unsigned)st, STRAY_STATUS);
}

/* Before the fix a worker orphaned between its spawn and its constructor
   went on into main: a second copy of the test suite, with pools and
   workers of its own, each doing the same (a fork bomb). */
WP_TEST(stray_role_never_runs_main)
{
    check_stray_role("0:1");              /* init is not our parent */
    check_stray_role("junk");
    check_stray_role("");
    char r[64];
    snprintf(r, sizeof r, "0:%ld", (long)getpid()); /* ours, but no configuration on fd 6 */
    check_stray_role(r);
    snprintf(r, sizeof r, "0:%ldx", (long)getpid());
    check_stray_role(r);
}

/* ------------------------------------------------ what a worker has */

static int trylock_held(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    int rc = pthread_mutex_trylock(&held_lock);
    return wp_buf_append(out, &rc, sizeof rc);
}

static int fd_is_open(const void *arg, size_t len, wp_buf *out)
{
    int fd;
    if (len != sizeof fd)
        return 1;
    memcpy(&fd, arg, sizeof fd);
    int open_ = fcntl(fd, F_GETFD) >= 0;
    return wp_buf_append(out, &open_, sizeof open_);
}

/* Takes held_lock, says so on pipes[0], holds it until pipes[1] speaks:
   the lock a forked copy of this program would find held forever. */
static void *hold_lock(void *arg)
{
    int *fds = arg;
    char c = 'x';
    pthread_mutex_lock(&held_lock);
    ck_assert_int_eq(write(fds[1], &c, 1), 1);
    ck_assert_int_eq(read(fds[2], &c, 1), 1);
    pthread_mutex_unlock(&held_lock);
    return NULL;
}

/* A fresh image: not main's value of a global but its initial one, a
   lock another thread held at create free, an inherited descriptor
   gone. */
WP_TEST(exec_worker_is_a_fresh_image)
{
    fresh_global = MAIN_VALUE;
    int held[2], done[2];
    ck_assert_int_eq(pipe2(held, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(done, O_CLOEXEC), 0);
    int fds[3] = { held[0], held[1], done[0] };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, hold_lock, fds), 0);
    char c;
    ck_assert_int_eq(read(held[0], &c, 1), 1); /* the lock is held now */
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC: a program's careless descriptor */
    ck_assert_int_ge(fd, 0);
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 1, .start_method = WP_START_EXEC });
    wp_future *f = tu_run(p, read_global, NULL, 0, NULL);
    ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), INITIAL_VALUE);
    wp_future_release(f);
    f = tu_run(p, trylock_held, NULL, 0, NULL);
    ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), 0); /* not EBUSY */
    wp_future_release(f);
    f = tu_run(p, fd_is_open, &fd, sizeof fd, NULL);
    ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), 0);
    wp_future_release(f);
    wp_pool_destroy(p);
    close(fd);
    ck_assert_int_eq(write(done[1], &c, 1), 1);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    for (int i = 0; i < 2; i++) {
        close(held[i]);
        close(done[i]);
    }
    fresh_global = INITIAL_VALUE;
}

static int ctx_init_value;
static int record_ctx(void *ctx)
{
    ctx_init_value = *(const int *)ctx;
    return 0;
}

static int read_ctx_value(const void *arg, size_t len, wp_buf *out)
{
    (void)arg;
    (void)len;
    return wp_buf_append(out, &ctx_init_value, sizeof ctx_init_value);
}

/* worker_init_ctx: static data is translated (its initial value is what
   the worker sees); a stack or heap pointer is refused at create. */
WP_TEST(exec_init_ctx)
{
    int on_stack = 1;
    int *on_heap = malloc(sizeof *on_heap);
    wp_pool *p = NULL;
    wp_pool_options o = { .workers = 1, .start_method = WP_START_EXEC, .worker_init = record_ctx };
    o.worker_init_ctx = &on_stack;
    ck_assert_int_eq(wp_pool_create(&p, &o), WP_EINVAL);
    o.worker_init_ctx = on_heap;
    ck_assert_int_eq(wp_pool_create(&p, &o), WP_EINVAL);
    ck_assert_ptr_null(p);
    free(on_heap);
    o.worker_init_ctx = &fresh_global;
    fresh_global = MAIN_VALUE;
    p = tu_pool_started(o);
    wp_future *f = tu_run(p, read_ctx_value, NULL, 0, NULL);
    ck_assert_int_eq(*(const int *)wp_future_result(f, NULL), INITIAL_VALUE);
    wp_future_release(f);
    wp_pool_destroy(p);
    fresh_global = INITIAL_VALUE;
}

static int refuse_to_start(void *ctx)
{
    (void)ctx;
    return 1;
}

/* A worker_init that fails in every exec'd worker: start failures with
   backoff, then the task fails WP_ESPAWN saying why — not a hang, not a
   crash of the task. */
WP_TEST(exec_init_fails_espawn)
{
    wp_pool *p = NULL;
    ck_assert_int_eq(wp_pool_create(&p, &(wp_pool_options){ .workers = 1,
                                                            .start_method = WP_START_EXEC,
                                                            .worker_init = refuse_to_start }),
                     0);
    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, read_global, NULL, 0, NULL, &f), 0);
    ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
    ck_assert_int_eq(wp_future_error(f), WP_ESPAWN);
    ck_assert_ptr_nonnull(strstr(wp_future_message(f), "worker_init"));
    wp_future_release(f);
    wp_pool_destroy(p);
}

/* ----------------------------------------------- the batcher, exec'd */

#define POISON 13 /* the item value that crashes its batch */

static int square_or_crash(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        int v;
        memcpy(&v, items[i].data, sizeof v);
        if (v == POISON)
            raise(SIGSEGV);
        v *= v;
        int rc = wp_buf_append(results[i], &v, sizeof v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The batcher's trampoline and the batch function are both found in the
   worker's image; a crashing item is isolated as with forked workers. */
WP_TEST(exec_batcher_isolates)
{
    enum { ITEMS = 40 };
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 2, .start_method = WP_START_EXEC });
    wp_batcher_options bo = { .max_batch_size = 8, .max_wait_ms = 1, .isolate = 1 };
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, square_or_crash, &bo), 0);
    wp_future *f[ITEMS];
    for (int i = 0; i < ITEMS; i++)
        ck_assert_int_eq(wp_batcher_submit(b, &i, sizeof i, &f[i]), 0);
    for (int i = 0; i < ITEMS; i++) {
        tu_wait_settled(f[i]);
        if (i == POISON) {
            ck_assert_int_eq(wp_future_error(f[i]), WP_ECRASHED);
        } else {
            ck_assert_msg(wp_future_error(f[i]) == 0, "item %d: %s", i, wp_future_message(f[i]));
            ck_assert_int_eq(*(const int *)wp_future_result(f[i], NULL), i * i);
        }
        wp_future_release(f[i]);
    }
    wp_batcher_stats st;
    ck_assert_int_eq(wp_batcher_get_stats(b, &st), 0);
    ck_assert_uint_eq(st.isolated, 1);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

int main(void)
{
    const tu_suite suite = { .name = "exec", .timeout_s = 60 };
    const tu_test tests[] = {
        TU_CASE("image", image_round_trip),
        TU_CASE("image", image_parse_refuses),
        TU_CASE("role", stray_role_never_runs_main),
        TU_CASE("worker", exec_worker_is_a_fresh_image),
        TU_CASE("worker", exec_init_ctx),
        TU_CASE("worker", exec_init_fails_espawn),
        TU_CASE("worker", exec_batcher_isolates),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
