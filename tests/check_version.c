/* SPDX-License-Identifier: MIT */
/*
 * check_version.c — lib/version.c and the ABI promises of the header:
 * the version a program runs against, the pinned layout of every public
 * struct (its size and each field's offset may never change within a
 * SONAME: a change here is an ABI break and needs a new SONAME, NEWS and
 * this table updated together), the values of the public constants, and
 * the reserved words that let structs grow (header "Conventions"): set
 * ones are refused with WP_EINVAL, stats write them as zeros.
 */
#include "config.h"

#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "workerpool.h"

WP_TEST(version_matches_header)
{
    ck_assert_uint_eq(wp_version(), WP_VERSION_HEX);
    ck_assert_uint_eq(WP_VERSION_HEX >> 16, WP_VERSION_MAJOR);
    ck_assert_uint_eq((WP_VERSION_HEX >> 8) & 0xff, WP_VERSION_MINOR);
    ck_assert_uint_eq(WP_VERSION_HEX & 0xff, WP_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", WP_VERSION_MAJOR, WP_VERSION_MINOR, WP_VERSION_PATCH);
    ck_assert_str_eq(wp_version_string(), want);
    ck_assert_str_eq(wp_version_string(), PACKAGE_VERSION); /* configure read the same header */
    ck_assert_ptr_eq(wp_version_string(), wp_version_string()); /* static storage */
}

/* The 0.2 layout (x86-64 / LP64), pinned. */
typedef struct layout {
    const char *what;
    size_t      got, want;
} layout;
#define SIZE(T, n)     { "sizeof(" #T ")", sizeof(T), n }
#define FIELD(T, m, n) { "offsetof(" #T ", " #m ")", offsetof(T, m), n }

static const layout layouts[] = {
    SIZE(wp_pool_options, 128),
    FIELD(wp_pool_options, workers, 0),
    FIELD(wp_pool_options, queue_capacity, 4),
    FIELD(wp_pool_options, max_tasks_per_worker, 8),
    FIELD(wp_pool_options, max_message, 16),
    FIELD(wp_pool_options, worker_memory_limit, 24),
    FIELD(wp_pool_options, start_method, 32),
    FIELD(wp_pool_options, worker_init, 40),
    FIELD(wp_pool_options, worker_init_ctx, 48),
    FIELD(wp_pool_options, start_timeout_ms, 56),
    FIELD(wp_pool_options, worker_rss_limit, 64),
    FIELD(wp_pool_options, reserved, 72),
    SIZE(wp_pool_stats, 144),
    FIELD(wp_pool_stats, submitted, 0),
    FIELD(wp_pool_stats, succeeded, 8),
    FIELD(wp_pool_stats, failed, 16),
    FIELD(wp_pool_stats, cancelled, 24),
    FIELD(wp_pool_stats, timed_out, 32),
    FIELD(wp_pool_stats, crashed, 40),
    FIELD(wp_pool_stats, retried, 48),
    FIELD(wp_pool_stats, workers_started, 56),
    FIELD(wp_pool_stats, queued, 64),
    FIELD(wp_pool_stats, running, 68),
    FIELD(wp_pool_stats, workers_alive, 72),
    FIELD(wp_pool_stats, expired, 80),
    FIELD(wp_pool_stats, workers_recycled, 88),
    FIELD(wp_pool_stats, reserved, 96),
    SIZE(wp_task_options, 56),
    FIELD(wp_task_options, timeout_ms, 0),
    FIELD(wp_task_options, retries, 8),
    FIELD(wp_task_options, retry_delay_ms, 12),
    FIELD(wp_task_options, flags, 16),
    FIELD(wp_task_options, queue_timeout_ms, 24),
    FIELD(wp_task_options, priority, 32),
    FIELD(wp_task_options, reserved_pad, 36),
    FIELD(wp_task_options, reserved, 40),
    SIZE(wp_item, 16),
    FIELD(wp_item, data, 0),
    FIELD(wp_item, len, 8),
    SIZE(wp_batcher_options, 120),
    FIELD(wp_batcher_options, max_batch_size, 0),
    FIELD(wp_batcher_options, max_wait_ms, 8),
    FIELD(wp_batcher_options, max_in_flight, 16),
    FIELD(wp_batcher_options, max_pending, 24),
    FIELD(wp_batcher_options, task, 32),
    FIELD(wp_batcher_options, isolate, 88),
    FIELD(wp_batcher_options, reserved_pad, 92),
    FIELD(wp_batcher_options, reserved, 96),
    SIZE(wp_batcher_stats, 128),
    FIELD(wp_batcher_stats, items, 0),
    FIELD(wp_batcher_stats, batches, 8),
    FIELD(wp_batcher_stats, items_batched, 16),
    FIELD(wp_batcher_stats, mean_batch_size, 24),
    FIELD(wp_batcher_stats, wait_us_total, 32),
    FIELD(wp_batcher_stats, wait_us_max, 40),
    FIELD(wp_batcher_stats, mean_wait_us, 48),
    FIELD(wp_batcher_stats, pending, 56),
    FIELD(wp_batcher_stats, in_flight, 60),
    FIELD(wp_batcher_stats, isolated, 64),
    FIELD(wp_batcher_stats, reserved, 72),
};

WP_TEST(struct_layouts_are_pinned)
{
    if (sizeof(void *) != 8 || sizeof(long) != 8)
        return; /* the table is for LP64 */
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        ck_assert_msg(layouts[i].got == layouts[i].want,
                      "ABI change: %s is %zu, was %zu in this SONAME", layouts[i].what,
                      layouts[i].got, layouts[i].want);
}

WP_TEST(constants_are_pinned)
{
    ck_assert_int_eq(WP_START_FORKSERVER, 0);
    ck_assert_int_eq(WP_START_FORK, 1);
    ck_assert_int_eq(WP_START_EXEC, 2); /* since 0.4 */
    ck_assert_int_eq(WP_TASK_NOWAIT, 1);
    ck_assert_int_eq(WP_TASK_SHIELD, 2);
    ck_assert_int_eq(WP_PENDING, 0);
    ck_assert_int_eq(WP_RUNNING, 1);
    ck_assert_int_eq(WP_SUCCEEDED, 2);
    ck_assert_int_eq(WP_FAILED, 3);
    ck_assert_int_eq(WP_CANCELLED, 4);
}

/* Each reserved word set alone is refused; all zero is accepted. */
WP_TEST(pool_options_reserved_must_be_zero)
{
    wp_pool_options o = { .workers = 1 };
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++) {
        wp_pool *p = (wp_pool *)&o; /* anything but NULL: must become NULL */
        o.reserved[i] = 1;
        ck_assert_int_eq(wp_pool_create(&p, &o), WP_EINVAL);
        ck_assert_ptr_null(p);
        o.reserved[i] = 0;
    }
    wp_pool *p = tu_pool_create(o);
    wp_pool_destroy(p);
}

WP_TEST(task_options_reserved_must_be_zero)
{
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 1 });
    wp_task_options t = { 0 };
    int v = 7;
    wp_item item = { &v, sizeof v };
    for (size_t i = 0; i < sizeof t.reserved / sizeof t.reserved[0]; i++) {
        t.reserved[i] = UINT64_MAX;
        wp_future *f = NULL;
        size_t accepted = 1;
        ck_assert_int_eq(wp_submit(p, tu_echo, &v, sizeof v, &t, &f), WP_EINVAL);
        ck_assert_ptr_null(f);
        ck_assert_int_eq(wp_submit_many(p, tu_echo, &item, 1, &t, &f, &accepted), WP_EINVAL);
        ck_assert_uint_eq(accepted, 0);
        t.reserved[i] = 0;
    }
    t.reserved_pad = 1; /* the word beside priority too */
    ck_assert_int_eq(wp_submit(p, tu_echo, &v, sizeof v, &t, NULL), WP_EINVAL);
    t.reserved_pad = 0;
    wp_future *f = tu_run(p, tu_echo, &v, sizeof v, &t);
    ck_assert_int_eq(wp_future_error(f), 0);
    wp_future_release(f);
    wp_pool_stats st = tu_pool_stats(p);
    ck_assert_uint_eq(st.submitted, 1); /* the refused ones never counted */
    wp_pool_destroy(p);
}

static int batch_echo(const wp_item *items, size_t n, wp_buf *const *results)
{
    for (size_t i = 0; i < n; i++) {
        int rc = wp_buf_append(results[i], items[i].data, items[i].len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

WP_TEST(batcher_options_reserved_must_be_zero)
{
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 1 });
    wp_batcher_options o = { .max_batch_size = 4 };
    wp_batcher *b = NULL;
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++) {
        o.reserved[i] = 1;
        ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, &o), WP_EINVAL);
        ck_assert_ptr_null(b);
        o.reserved[i] = 0;
    }
    for (size_t i = 0; i < sizeof o.task.reserved / sizeof o.task.reserved[0]; i++) {
        o.task.reserved[i] = 1; /* the batches' task options are checked at create */
        ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, &o), WP_EINVAL);
        ck_assert_ptr_null(b);
        o.task.reserved[i] = 0;
    }
    o.reserved_pad = 1;
    ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, &o), WP_EINVAL);
    o.reserved_pad = 0;
    o.task.reserved_pad = 1;
    ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, &o), WP_EINVAL);
    o.task.reserved_pad = 0;
    ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, &o), 0);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

/* Whatever the caller's struct held before, the reserved words come back
   zero (a later release's counters read 0 from this library). */
WP_TEST(stats_reserved_written_as_zero)
{
    wp_pool *p = tu_pool_started((wp_pool_options){ .workers = 1 });
    wp_pool_stats ps;
    memset(&ps, 0xa5, sizeof ps);
    ck_assert_int_eq(wp_pool_get_stats(p, &ps), 0);
    for (size_t i = 0; i < sizeof ps.reserved / sizeof ps.reserved[0]; i++)
        ck_assert_uint_eq(ps.reserved[i], 0);
    wp_batcher *b = NULL;
    ck_assert_int_eq(wp_batcher_create(&b, p, batch_echo, NULL), 0);
    wp_batcher_stats bs;
    memset(&bs, 0xa5, sizeof bs);
    ck_assert_int_eq(wp_batcher_get_stats(b, &bs), 0);
    for (size_t i = 0; i < sizeof bs.reserved / sizeof bs.reserved[0]; i++)
        ck_assert_uint_eq(bs.reserved[i], 0);
    wp_batcher_destroy(b);
    wp_pool_destroy(p);
}

int main(void)
{
    const tu_suite suite = { .name = "version", .timeout_s = 60 };
    const tu_test tests[] = {
        TU_CASE("version", version_matches_header),
        TU_CASE("abi", struct_layouts_are_pinned),
        TU_CASE("abi", constants_are_pinned),
        TU_CASE("reserved", pool_options_reserved_must_be_zero),
        TU_CASE("reserved", task_options_reserved_must_be_zero),
        TU_CASE("reserved", batcher_options_reserved_must_be_zero),
        TU_CASE("reserved", stats_reserved_written_as_zero),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
