/* SPDX-License-Identifier: MIT */
/* thumbs_cli.c — see thumbs_cli.h. */
#include "thumbs_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool cli_number(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max)
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
