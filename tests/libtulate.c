/* SPDX-License-Identifier: MIT */
/*
 * libtulate.c — a task function in a shared object of its own, built by
 * `make check` for check_worker.c, which loads it with dlopen() only after
 * a pool exists: its code is then in no worker image forked before, and the
 * fork server never has it.  wp_buf_append comes from the test program.
 */
#include <string.h>

#include "workerpool.h"

int tulate_triple(const void *arg, size_t len, wp_buf *out);

/* result = 3 * the int argument */
int tulate_triple(const void *arg, size_t len, wp_buf *out)
{
    int v = 0;
    if (len >= sizeof v)
        memcpy(&v, arg, sizeof v);
    v *= 3;
    return wp_buf_append(out, &v, sizeof v);
}
