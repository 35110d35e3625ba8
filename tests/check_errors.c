/* SPDX-License-Identifier: MIT */
/*
 * check_errors.c — the error table (WP_ERRNO_MAP in include/workerpool.h)
 * and wp_strerror(): the codes are the contract (-1 .. -13, distinct,
 * negative, WP_EEXPIRED last), every one has words of its own, 0 reads as
 * success and anything else as a generic "unknown error".  Needs no pool.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "workerpool.h"

/* The table, expanded here the way a program may expand it. */
#define ROW(name, value, description) { WP_##name, value, "WP_" #name, description },
static const struct {
    int         code;
    int         value;
    const char *name;
    const char *description;
} table[] = { WP_ERRNO_MAP(ROW) };
#undef ROW
#define NCODES (sizeof table / sizeof table[0])

/* The codes the API promised before the table existed: names and values. */
static const int contract[] = {
    WP_EINVAL, WP_ENOMEM, WP_EAGAIN, WP_ETIMEDOUT, WP_ECANCELED, WP_ESHUTDOWN, WP_ECRASHED,
    WP_ETASK, WP_E2BIG, WP_EPROTO, WP_ESPAWN, WP_ENOFUNC, WP_EBUSY, WP_EEXPIRED,
};
#define NCONTRACT (sizeof contract / sizeof contract[0])

WP_TEST(codes_are_the_contract)
{
    ck_assert_uint_eq(NCODES, NCONTRACT);
    for (size_t i = 0; i < NCODES; i++) {
        /* In order, -1 downwards, with no gap: WP_EINVAL first, WP_EEXPIRED last. */
        ck_assert_int_eq(table[i].code, -(int)(i + 1));
        ck_assert_int_eq(table[i].code, table[i].value);
        ck_assert_int_eq(table[i].code, contract[i]);
    }
    ck_assert_int_eq(WP_EINVAL, -1);
    ck_assert_int_eq(WP_EBUSY, -13);
    ck_assert_int_eq(table[NCODES - 1].code, WP_EEXPIRED);
    ck_assert_int_eq(WP_EEXPIRED, -14);
    ck_assert_str_eq(table[NCODES - 1].name, "WP_EEXPIRED");
    ck_assert_str_eq(wp_strerror(WP_EEXPIRED), "expired before it started");
}

WP_TEST(codes_are_distinct_and_negative)
{
    for (size_t i = 0; i < NCODES; i++) {
        ck_assert_int_lt(table[i].code, 0);
        for (size_t j = i + 1; j < NCODES; j++)
            ck_assert_int_ne(table[i].code, table[j].code);
    }
}

WP_TEST(every_code_has_its_own_words)
{
    const char *unknown = wp_strerror(1);
    const char *success = wp_strerror(0);
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = wp_strerror(table[i].code);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(strlen(s) > 0, "%s has no words", table[i].name);
        ck_assert_str_eq(s, table[i].description); /* from the table, not written twice */
        ck_assert_str_ne(s, unknown);
        ck_assert_str_ne(s, success);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, wp_strerror(table[j].code)) != 0, "%s and %s read the same",
                          table[i].name, table[j].name);
    }
}

WP_TEST(success_and_unknown)
{
    ck_assert_str_eq(wp_strerror(0), "success");
    const int unknown[] = { 1, 42, -15, -100, WP_EEXPIRED - 1, (int)(-2147483647 - 1), 2147483647 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = wp_strerror(unknown[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, "unknown error");
    }
}

int main(void)
{
    /* Pure table checks: no pool. */
    const tu_suite suite = { .name = "errors", .timeout_s = 30 };
    const tu_test tests[] = {
        TU_CASE("table", codes_are_the_contract),
        TU_CASE("table", codes_are_distinct_and_negative),
        TU_CASE("table", every_code_has_its_own_words),
        TU_CASE("table", success_and_unknown),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
