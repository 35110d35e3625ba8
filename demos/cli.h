/* SPDX-License-Identifier: MIT */
/*
 * cli.h — the command-line helpers that batch_insert and checksums share:
 * reading a number option strictly and the usage error every demo ends a
 * bad command line with.
 */
#ifndef DEMO_CLI_H
#define DEMO_CLI_H

#include <stdbool.h>

#if defined(__GNUC__) || defined(__clang__)
#define DEMO_PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DEMO_PRINTF_LIKE(fmt, args)
#endif

/* The exit status of a usage error, in every demo. */
enum { CLI_EXIT_USAGE = 2 };

/* A decimal number from min to max, all of s and nothing else (no sign,
   no spaces): true and *out set, or false. */
bool cli_number(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* "PROG: WHY" (if why is not NULL), the usage text and "Try 'PROG --help'."
   on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *usage, const char *why);

#endif
