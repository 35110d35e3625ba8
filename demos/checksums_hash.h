/* SPDX-License-Identifier: MIT */
/*
 * checksums_hash.h — the checksums demo's task, which runs in the worker
 * processes: the SHA-256 of one file.
 */
#ifndef DEMO_CHECKSUMS_HASH_H
#define DEMO_CHECKSUMS_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "workerpool.h"

enum {
    SHA256_BYTES = 32,
    /* Failure codes of the task that are not errno values (which are > 0). */
    CODE_BAD_ARGUMENT = -1,
    CODE_DIGEST = -2
};

/* The task's result: fixed size, no pointers. */
struct hash_result {
    unsigned char digest[SHA256_BYTES];
    uint64_t bytes; /* read, which may differ from the size at load time */
};

/*
 * The task (a wp_task_fn): arg is a path with its NUL.  On success the
 * result is one struct hash_result.  On failure it calls
 * wp_buf_fail(result, code, text) with the errno value as the code (or a
 * CODE_* above) and "open: Permission denied"-like text.
 */
int hash_file(const void *arg, size_t len, wp_buf *result);

#endif
