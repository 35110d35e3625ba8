/* SPDX-License-Identifier: MIT */
/* cli.c — see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool cli_number(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] < '0' || s[0] > '9' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int cli_usage_error(const char *prog, const char *usage, const char *why)
{
    if (why != NULL)
        fprintf(stderr, "%s: %s\n", prog, why);
    fprintf(stderr, "%sTry '%s --help'.\n", usage, prog);
    return CLI_EXIT_USAGE;
}
