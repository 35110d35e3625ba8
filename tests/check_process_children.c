/* SPDX-License-Identifier: MIT */
/*
 * check_process_children.c — listing a process's children
 * (check_process.c says how the suite's tests work): wp__each_child and
 * its /proc/<pid>/stat fallback see exactly the children there are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h" /* wp__each_child, wp__each_child_by_stat */
#include "check_process.h"

/* ------------------------------------------------ listing one's children */

typedef struct kids {
    int    pid[MAX_PIDS];
    size_t n;
} kids;

static bool note_kid(pid_t pid, void *ctx)
{
    kids *k = ctx;
    if (k->n < MAX_PIDS)
        k->pid[k->n++] = (int)pid;
    return true;
}

static bool same_pids(const kids *k, const int *want, size_t n)
{
    if (k->n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < k->n; j++)
            found = found || k->pid[j] == want[i];
        if (!found)
            return false;
    }
    return true;
}

/* What the fork server uses to find strays: both ways list exactly this
   process's children, zombies included. */
WP_TEST(children_listed)
{
    enum { KIDS = 3 };
    int hold[2], pids[KIDS];
    ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
    for (int i = 0; i < KIDS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            char c;
            close(hold[1]);
            if (i > 0) /* the first one ends at once: a zombie */
                while (read(hold[0], &c, 1) < 0 && errno == EINTR)
                    ;
            _exit(0);
        }
    }
    close(hold[0]);
    kids a = { .n = 0 }, b = { .n = 0 };
    int na = wp__each_child(note_kid, &a);
    int nb = wp__each_child_by_stat(note_kid, &b);
    close(hold[1]);
    for (int i = 0; i < KIDS; i++)
        ck_assert_int_eq(waitpid(pids[i], NULL, 0), pids[i]);
    ck_assert_int_eq(na, KIDS);
    ck_assert_int_eq(nb, KIDS);
    ck_assert(same_pids(&a, pids, KIDS));
    ck_assert(same_pids(&b, pids, KIDS));
    kids none = { .n = 0 };
    ck_assert_int_eq(wp__each_child(note_kid, &none), 0);
    ck_assert_int_eq(wp__each_child_by_stat(note_kid, &none), 0);
}

/* ---------------------------------------------------------- its tests */

TU_PART(process_add_children_tests,
        TU_CASE("children_listed", children_listed))
