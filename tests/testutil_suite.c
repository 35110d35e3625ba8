/* SPDX-License-Identifier: MIT */
/*
 * testutil_suite.c — writing and running a suite: what WP_TEST_BOTH does
 * first, a suite's table made into TCases (with their timeout and the
 * temporary-directory fixture) and run, seeds and iteration counts for
 * randomised tests, and the clock and sleeps tests poll with (testutil.h,
 * "writing and running tests").
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define US_PER_S     1000000L
#define US_PER_MS    1000u
#define NS_PER_US    1000L

int tu_method = WP_START_FORKSERVER;

void tu_begin(int method)
{
    tu_method = method;
    tu_tmp_begin_run();
}

static TCase *new_tcase(Suite *s, const tu_suite *def, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, def->timeout_s);
    tcase_add_unchecked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
    if (def->setup != NULL)
        tcase_add_checked_fixture(tc, def->setup, NULL);
    suite_add_tcase(s, tc);
    return tc;
}

void tu_add_tests(Suite *s, const tu_suite *def, const tu_test *tests, size_t n)
{
    /* The groups made so far (TU_CASE): the TCase of an entry's group is
       that of the first entry of the group. */
    TCase **made = calloc(n, sizeof *made);
    if (made == NULL) {
        fputs("tu_add_tests: out of memory\n", stderr);
        exit(EXIT_FAILURE);
    }
    for (size_t i = 0; i < n; i++) {
        if (tests[i].tcase == NULL) {
            if (def->fork_only)
                tcase_add_forked(new_tcase(s, def, tests[i].name), tests[i].fn);
            else
                tcase_add_both(new_tcase(s, def, tests[i].name), tests[i].fn);
            continue;
        }
        size_t first = 0;
        while (tests[first].tcase == NULL || strcmp(tests[first].tcase, tests[i].tcase) != 0)
            first++;
        if (made[first] == NULL)
            made[first] = new_tcase(s, def, tests[i].tcase);
        tcase_add_test(made[first], tests[i].fn);
    }
    free(made);
}

int tu_main(tu_suite def, const tu_test *tests, size_t n)
{
    Suite *s = suite_create(def.name);
    tu_add_tests(s, &def, tests, n);
    return tu_run_suite(s, def.fork);
}

int tu_main_parts(tu_suite def, tu_part_fn *const *parts, size_t n)
{
    Suite *s = suite_create(def.name);
    for (size_t i = 0; i < n; i++)
        parts[i](s, &def);
    return tu_run_suite(s, def.fork);
}

int tu_run_suite(Suite *s, enum fork_status fork_status)
{
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, fork_status);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

uint64_t tu_seed(void)
{
    const char *env = getenv("WP_TEST_SEED");
    if (env != NULL && *env != '\0')
        return strtoull(env, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

uint64_t tu_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t tu_rand_below(uint64_t *state, uint64_t n)
{
    return n == 0 ? 0 : tu_rand(state) % n;
}

unsigned tu_slowdown(void)
{
    return TU_ASAN ? TU_ASAN_SLOWDOWN : TU_TSAN ? TU_TSAN_SLOWDOWN : 1;
}

unsigned tu_scaled(unsigned n)
{
    uint64_t v = n / tu_slowdown();
    const char *env = getenv("WP_TEST_SCALE");
    if (env != NULL && *env != '\0')
        v = v * strtoull(env, NULL, 10) / 100;
    return v == 0 ? 1 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

int64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_us(uint64_t us)
{
    struct timespec ts = { .tv_sec = (time_t)(us / US_PER_S),
                           .tv_nsec = (long)(us % US_PER_S) * NS_PER_US };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void tu_sleep_ms(int64_t ms)
{
    tu_sleep_us(ms > 0 ? (uint64_t)ms * US_PER_MS : 0);
}

void tu_poll_pause(void)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
    nanosleep(&ts, NULL);
}
