/* SPDX-License-Identifier: MIT */
/*
 * thumbs_cli.h — the command-line odds and ends thumbnails and photogen
 * share: a strict number parser and the usage-error exit.
 */
#ifndef THUMBS_CLI_H
#define THUMBS_CLI_H

#include <stdbool.h>

enum { CLI_EXIT_USAGE = 2 };

/* A decimal number in [min, max], nothing before or after it (no sign, no
   spaces, no suffix). */
bool cli_number(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* "PROG: WHY" (unless why is NULL: getopt has said it), the usage text, a
   hint to try --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *usage, const char *why);

#endif
