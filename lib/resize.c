/* SPDX-License-Identifier: MIT */
/*
 * resize.c — wp_pool_resize: changing the number of workers of a running
 * pool (docs/ARCHITECTURE.md, "Resizing").  Not written yet: this step of
 * the work only declares the function.
 */
#include "config.h"

#include "pool_impl.h"

int wp_pool_resize(wp_pool *pool, unsigned workers)
{
    (void)workers;
    return pool == NULL ? WP_EINVAL : WP_ESHUTDOWN;
}
