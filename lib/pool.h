/* SPDX-License-Identifier: MIT */
/*
 * pool.h — what the batcher needs to know of the pool beyond the public
 * API: the worker count, and whether the calling thread is the pool's
 * dispatcher (where blocking calls would deadlock).
 */
#ifndef WP_POOL_H
#define WP_POOL_H

#include <stdbool.h>

#include "util.h"

/* The worker count asked last (at create, or by wp_pool_resize). */
unsigned wp__pool_workers(wp_pool *p) WP_INTERNAL;
size_t   wp__pool_max_message(const wp_pool *p) WP_INTERNAL;
/* wp_pool_shutdown has begun. */
bool     wp__pool_closing(wp_pool *p) WP_INTERNAL;
/* True on this pool's dispatcher thread (in a done-callback) or in a
   worker process: places where waiting for the pool would deadlock. */
bool     wp__pool_must_not_wait(const wp_pool *p) WP_INTERNAL;
/* 0 or WP_EINVAL: the checks wp_submit makes of its options. */
int      wp__task_options_check(const wp_task_options *o) WP_INTERNAL;
/* True on any pool's dispatcher thread: submits there never block. */
bool     wp__on_dispatcher(void) WP_INTERNAL;

#endif
