/* SPDX-License-Identifier: MIT */
/*
 * check_future_api.c — the futures' API edges (check_future.c says how the
 * suite's tests work): every function given NULL, and wp_strerror for
 * every code and for unknown ones.
 */
#define _GNU_SOURCE
#include <limits.h>

#include "check_future.h"

/* ---------------------------------------------------------- NULL and codes */

static void cb_never(wp_future *f, void *ctx)
{
    (void)f;
    (void)ctx;
    ck_abort_msg("callback must not run");
}

WP_TEST(null_arguments)
{
    size_t len = 5;
    ck_assert_int_eq(wp_future_state(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, 0), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, -1), WP_EINVAL);
    ck_assert_int_eq(wp_future_wait(NULL, 100), WP_EINVAL);
    ck_assert_int_eq(wp_future_error(NULL), WP_EINVAL);
    ck_assert_ptr_null(wp_future_result(NULL, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(wp_future_result(NULL, NULL));
    ck_assert_int_eq(wp_future_code(NULL), 0);
    ck_assert_ptr_nonnull(wp_future_message(NULL));
    ck_assert_str_eq(wp_future_message(NULL), "");
    ck_assert_int_eq(wp_future_cancel(NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_on_done(NULL, cb_never, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_future_on_done(NULL, NULL, NULL), WP_EINVAL);
    wp_future_retain(NULL);
    wp_future_release(NULL);
    size_t idx = 3;
    ck_assert_int_eq(wp_wait_any(NULL, 0, 0, NULL), WP_EINVAL);
    ck_assert_int_eq(wp_wait_any(NULL, 1, -1, &idx), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(NULL, 0, 0), WP_EINVAL);
    ck_assert_int_eq(wp_wait_all(NULL, 1, -1), WP_EINVAL);

    wp_future *f = new_future();
    ck_assert_int_eq(wp_future_on_done(f, NULL, NULL), WP_EINVAL);
    ck_assert_int_eq(settle_ok(f, NULL), WP_SUCCEEDED); /* no callback registered */
    ck_assert_int_eq(wp_future_on_done(f, NULL, NULL), WP_EINVAL);
    wp_future_release(f);
    ck_assert_int_eq(atomic_load(&g_frees), 1);
}

WP_TEST(strerror_codes)
{
    static const int codes[] = { 0, WP_EINVAL, WP_ENOMEM, WP_EAGAIN, WP_ETIMEDOUT,
                                 WP_ECANCELED, WP_ESHUTDOWN, WP_ECRASHED, WP_ETASK,
                                 WP_E2BIG, WP_EPROTO, WP_ESPAWN, WP_ENOFUNC, WP_EBUSY,
                                 WP_EEXPIRED };
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = wp_strerror(codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != '\0', "wp_strerror(%d) is empty", codes[i]);
        ck_assert_msg(strcmp(s, "unknown error") != 0, "wp_strerror(%d) unknown", codes[i]);
        for (size_t j = 0; j < i; j++) {
            ck_assert_int_ne(codes[i], codes[j]); /* codes are distinct */
            ck_assert_msg(strcmp(s, wp_strerror(codes[j])) != 0,
                          "wp_strerror(%d) == wp_strerror(%d) == \"%s\"", codes[i], codes[j], s);
        }
    }
    static const int unknown[] = { 1, 2, 100, -15, -100, INT_MIN, INT_MAX, -1000000 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(wp_strerror(unknown[i]), "unknown error");
}

/* ---------------------------------------------------------- its tests */

TU_PART(future_add_api_tests,
        TU_CASE("api", null_arguments),
        TU_CASE("api", strerror_codes))
