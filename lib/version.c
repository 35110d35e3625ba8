/* SPDX-License-Identifier: MIT */
/*
 * version.c — the running library's version (include/workerpool.h,
 * "version").  The figures come from the header this file was compiled
 * with, and configure takes the package version from the same header, so
 * the three can never disagree.
 */
#include "config.h"

#include "util.h"

/* "0.2.0" from the three numbers, at compile time. */
#define WP_STR_(x) #x
#define WP_STR(x)  WP_STR_(x)
#define WP_VERSION_STRING \
    WP_STR(WP_VERSION_MAJOR) "." WP_STR(WP_VERSION_MINOR) "." WP_STR(WP_VERSION_PATCH)

unsigned wp_version(void)
{
    return WP_VERSION_HEX;
}

const char *wp_version_string(void)
{
    return WP_VERSION_STRING;
}
