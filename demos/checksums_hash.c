/* SPDX-License-Identifier: MIT */
/*
 * checksums_hash.c — the checksums demo's task (see checksums_hash.h): what
 * runs in a worker process for each file.  Errors go back through
 * wp_buf_fail() with errno as the code, so the main process can name the
 * cause without parsing text; a task stuck in open() or read() is the
 * pool's to kill at its deadline, so nothing here needs a timeout.
 */
#define _POSIX_C_SOURCE 200809L

#include "checksums_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

enum {
    READ_CHUNK = 64 * 1024, /* bytes per read() */
    TEXT_MAX = 256
};

/* Report errno's error as this task's failure: the code is the errno value,
   so the main process can tell causes apart without parsing text. */
static int fail_errno(wp_buf *out, const char *what)
{
    int code = errno;
    char text[TEXT_MAX];
    snprintf(text, sizeof text, "%s: %s", what, strerror(code));
    return wp_buf_fail(out, code, text);
}

/* Read fd to its end into the digest. */
static int hash_fd(int fd, EVP_MD_CTX *md, wp_buf *out, uint64_t *bytes)
{
    static unsigned char buf[READ_CHUNK]; /* one per worker process */
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got == 0)
            return 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return fail_errno(out, "read");
        if (EVP_DigestUpdate(md, buf, (size_t)got) != 1)
            return wp_buf_fail(out, CODE_DIGEST, "SHA-256 failed (libcrypto)");
        *bytes += (uint64_t)got;
    }
}

/*
 * The task: the SHA-256 of whatever the path names, read as sha256sum
 * reads it, so a FIFO with no writer blocks in open() until the deadline
 * and a directory fails in read() with EISDIR.  The argument is the path
 * with its NUL.  Cost: a digest context per file (EVP_sha256() is looked
 * up again each time in OpenSSL 3: microseconds, beside an open and reads).
 */
int hash_file(const void *arg, size_t len, wp_buf *out)
{
    const char *path = arg;
    if (len == 0 || path[len - 1] != '\0')
        return wp_buf_fail(out, CODE_BAD_ARGUMENT, "malformed path bytes");
    int fd = open(path, O_RDONLY | O_NOCTTY);
    if (fd < 0)
        return fail_errno(out, "open");
    struct hash_result res = { .bytes = 0 };
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = 0;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        rc = wp_buf_fail(out, CODE_DIGEST, "cannot start SHA-256 (libcrypto)");
    if (rc == 0)
        rc = hash_fd(fd, md, out, &res.bytes);
    if (rc == 0 && EVP_DigestFinal_ex(md, res.digest, NULL) != 1)
        rc = wp_buf_fail(out, CODE_DIGEST, "SHA-256 failed (libcrypto)");
    if (rc == 0)
        rc = wp_buf_append(out, &res, sizeof res);
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}
