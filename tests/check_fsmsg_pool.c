/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg_pool.c — a pool and its fork-server socket (check_fsmsg.c says
 * how the suite's tests work): the owner closing the socket under the pool,
 * and a pool out of descriptors for a new worker's, both failing cleanly
 * instead of crashing.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check_fsmsg.h"

/* ----------------------------------------------------------- with a pool */

/* Descriptors >= 3 whose /proc/self/fd link starts with prefix. */
static unsigned fds_like(const char *prefix, int *out, unsigned max)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        char path[300], link[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d) || len <= 0)
            continue;
        link[len] = '\0';
        if (strncmp(link, prefix, strlen(prefix)) == 0 && n < max)
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

#define MAX_SEEN 64

/* The owner closes descriptors it thinks are its own, the fork-server
   socket among them: the pool must notice, settle what it cannot run and
   touch no descriptor it does not have. */
WP_TEST_BOTH(pool_loses_its_socket)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int canary[2];
    ck_assert_int_eq(pipe2(canary, O_CLOEXEC), 0);
    int socks[MAX_SEEN];
    unsigned n = fds_like("socket:", socks, MAX_SEEN);
    if (tu_method == WP_START_FORKSERVER)
        ck_assert_uint_ge(n, 1);
    for (unsigned i = 0; i < n; i++)
        close(socks[i]);

    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, tu_echo, "x", 1, NULL, &f), 0);
    ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
    if (tu_no_forkserver()) /* it has no socket to lose */
        ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert(fd_open(canary[0]) && fd_open(canary[1]));
    wp_future_release(f);
    wp_pool_destroy(p);
    ck_assert(fd_open(canary[0]) && fd_open(canary[1]));
    close(canary[0]);
    close(canary[1]);
}

/* The owner is out of descriptors when a replacement worker's pipe ends
   arrive (fork server) or are made (fork): a failed start that says so,
   and the pool recovers once descriptors are free again. */
WP_TEST_BOTH(pool_out_of_descriptors)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);

    /* No new descriptor below the worker's lowest one, so closing its
       pipes frees nothing the replacement's could use. */
    int seen[MAX_SEEN];
    unsigned n = fds_like("pipe:", seen, MAX_SEEN);
    n += fds_like("anon_inode:[pidfd]", seen + n, MAX_SEEN - n);
    ck_assert_uint_ge(n, 2);
    int limit = seen[0];
    for (unsigned i = 1; i < n; i++)
        limit = seen[i] < limit ? seen[i] : limit;
    tu_start_symbolizer();
    struct rlimit old, tight;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    tight = old;
    tight.rlim_cur = (rlim_t)limit;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    int fill[MAX_SEEN];
    unsigned nfill = 0;
    while (nfill < MAX_SEEN && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;

    /* Once the pool has seen it die, the task below waits for a replacement. */
    kill(pid, SIGKILL);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    wp_pool_stats st;
    while (wp_pool_get_stats(p, &st) == 0 && st.workers_alive > 0 && tu_now_ms() < deadline)
        tu_poll_pause();
    wp_future *g = NULL;
    int rc = wp_submit(p, tu_echo, "x", 1, NULL, &g);
    int waited = rc == 0 ? wp_future_wait(g, TU_DEADLINE_MS) : rc;
    for (unsigned i = 0; i < nfill; i++)
        close(fill[i]);
    int restored = setrlimit(RLIMIT_NOFILE, &old);
    /* The replacement may be forking now: no allocation (see TU_ASAN). */
    tu_wait_workers(p, 1, 2);

    ck_assert_int_eq(restored, 0);
    ck_assert_uint_lt(nfill, MAX_SEEN);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(waited, 0);
    ck_assert_int_eq(wp_future_error(g), WP_ESPAWN);
    ck_assert_msg(strstr(wp_future_message(g), strerror(EMFILE)) != NULL, "message: %s",
                  wp_future_message(g));
    wp_future_release(g);
    g = tu_run(p, tu_echo, "ok", 2, NULL);
    ck_assert_int_eq(wp_future_error(g), 0);
    wp_future_release(g);
    wp_pool_destroy(p);
}

/* ---------------------------------------------------------- its tests */

TU_PART(fsmsg_add_pool_tests,
        TU_TEST(pool_loses_its_socket),
        TU_TEST(pool_out_of_descriptors))
