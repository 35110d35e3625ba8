/* SPDX-License-Identifier: MIT */
/*
 * fuzz_fsmsg.c — libFuzzer target for the fork-server message decoder
 * (lib/fsmsg.c).  The first byte picks one of two modes:
 *   raw:        msg_flags, the data and control lengths and a misalignment,
 *               then the data and control bytes, exactly as recvmsg() might
 *               hand them over (each in a buffer of exactly that size, so a
 *               read past either is caught);
 *   round trip: a message and up to FS_MAX_FDS descriptors are encoded,
 *               perhaps cut the way the kernel cuts them when it runs out of
 *               descriptors, and decoded.
 * The properties: the result says what the input was; a message decoded
 * whole carries exactly the descriptors it says it does; every descriptor
 * listed is a non-negative number that stands, in order, in the control
 * bytes; nothing else is listed; decoding is the same wherever the bytes
 * lie.
 */
#include "config.h"

#include <errno.h>

#include "fsmsg.h"
#include "fuzz.h"

/* Raw control buffers a little larger than any recvmsg() gives back. */
#define CONTROL_MAX (FS_MSG_CONTROL_SIZE + 2 * sizeof(int))
#define DATA_MAX    (sizeof(fs_msg) + 4)
#define MISALIGN_MAX 8

/* Copy n bytes into a fresh buffer of exactly n bytes, misalign bytes past
   a malloc'ed start (an empty buffer is still a valid pointer). */
static uint8_t *exact_copy(const uint8_t *src, size_t n, size_t misalign, uint8_t **block)
{
    *block = malloc(misalign + n + 1);
    FUZZ_CHECK(*block != NULL);
    memcpy(*block + misalign, src, n);
    return *block + misalign;
}

/* Each listed descriptor stands in the control bytes, in order, at an
   int-aligned place past a record header. */
static void check_listed(const fs_msg_fds *fds, const uint8_t *control, size_t controllen)
{
    FUZZ_CHECK(fds->n <= FS_MSG_FD_ROOM);
    size_t at = CMSG_LEN(0);
    for (unsigned i = 0; i < fds->n; i++) {
        FUZZ_CHECK(fds->fd[i] >= 0);
        int v = -1;
        for (; at + sizeof v <= controllen; at += sizeof v) {
            memcpy(&v, control + at, sizeof v);
            if (v == fds->fd[i])
                break;
        }
        FUZZ_CHECK(v == fds->fd[i] && at + sizeof v <= controllen);
        at += sizeof v;
    }
}

static bool same_fds(const fs_msg_fds *a, const fs_msg_fds *b)
{
    return a->n == b->n && memcmp(a->fd, b->fd, sizeof(int) * a->n) == 0;
}

static void fuzz_raw(fuzz_input *in)
{
    int flags = 0;
    uint8_t f = fuzz_byte(in);
    if (f & FSMSG_FUZZ_CTRUNC)
        flags |= MSG_CTRUNC;
    if (f & FSMSG_FUZZ_TRUNC)
        flags |= MSG_TRUNC;
    if (f & FSMSG_FUZZ_EOR)
        flags |= MSG_EOR;
    size_t len = fuzz_byte(in) % (DATA_MAX + 1);
    size_t controllen = fuzz_byte(in) % (CONTROL_MAX + 1);
    size_t misalign = fuzz_byte(in) % MISALIGN_MAX;
    uint8_t raw_data[DATA_MAX], raw_control[CONTROL_MAX];
    fuzz_take(in, raw_data, len);
    fuzz_take(in, raw_control, controllen);

    uint8_t *dblock, *cblock;
    const uint8_t *data = exact_copy(raw_data, len, misalign, &dblock);
    const uint8_t *control = exact_copy(raw_control, controllen, misalign, &cblock);
    fs_msg m;
    fs_msg_fds fds;
    int rc = wp__fs_msg_decode(data, len, flags, control, controllen, &m, &fds);

    FUZZ_CHECK(rc == 0 || rc == WP_EPROTO);
    FUZZ_CHECK(fds.error == 0 || fds.error == EMFILE || fds.error == EPROTO);
    check_listed(&fds, control, controllen);
    bool whole_data = len == sizeof m && !(flags & MSG_TRUNC);
    FUZZ_CHECK((rc == WP_EPROTO) == !whole_data);
    if (rc == WP_EPROTO) {
        fs_msg zero;
        memset(&zero, 0, sizeof zero);
        FUZZ_CHECK(memcmp(&m, &zero, sizeof m) == 0);
    } else {
        FUZZ_CHECK(memcmp(&m, data, sizeof m) == 0);
    }
    FUZZ_CHECK((fds.error == EMFILE) == ((flags & MSG_CTRUNC) != 0));
    if (rc == 0 && fds.error == 0) {
        FUZZ_CHECK(m.nfds <= FS_MAX_FDS && fds.n == m.nfds);
        FUZZ_CHECK(controllen <= FS_MSG_CONTROL_SIZE);
        FUZZ_CHECK(fds.n == 0 || controllen >= CMSG_LEN(sizeof(int) * fds.n));
    }
    /* The same bytes, aligned: the same answer. */
    fs_msg_control aligned;
    memset(&aligned, 0, sizeof aligned);
    if (controllen <= sizeof aligned.buf) {
        memcpy(aligned.buf, control, controllen);
        fs_msg m2;
        fs_msg_fds fds2;
        FUZZ_CHECK(wp__fs_msg_decode(data, len, flags, aligned.buf, controllen, &m2, &fds2) == rc);
        FUZZ_CHECK(memcmp(&m, &m2, sizeof m) == 0 && same_fds(&fds, &fds2) && fds.error == fds2.error);
    }
    free(dblock);
    free(cblock);
}

static void fuzz_round_trip(fuzz_input *in)
{
    fs_msg sent;
    fuzz_take(in, &sent, sizeof sent);
    unsigned k = fuzz_byte(in) % (FS_MAX_FDS + 1);
    int fds_in[FS_MAX_FDS];
    fuzz_take(in, fds_in, sizeof fds_in);
    for (unsigned i = 0; i < FS_MAX_FDS; i++)
        fds_in[i] &= INT32_MAX; /* descriptors are never negative */
    uint8_t cut = fuzz_byte(in);

    fs_msg_control ctl;
    size_t controllen = wp__fs_msg_encode(&sent, fds_in, k, &ctl);
    FUZZ_CHECK(sent.nfds == k);
    FUZZ_CHECK(controllen == (k ? CMSG_SPACE(sizeof(int) * k) : 0));
    int flags = 0;
    unsigned arrived = k;
    if ((cut & 1u) && k > 0) {
        /* As the kernel does on EMFILE: fewer installed, the record
           shortened (or gone), MSG_CTRUNC set. */
        arrived = (unsigned)(cut >> 1) % k;
        struct msghdr mh = { .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
        CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int) * arrived);
        controllen = arrived ? CMSG_SPACE(sizeof(int) * arrived) : 0;
        flags = MSG_CTRUNC;
    }
    fs_msg got;
    fs_msg_fds fds;
    int rc = wp__fs_msg_decode(&sent, sizeof sent, flags, ctl.buf, controllen, &got, &fds);
    FUZZ_CHECK(rc == 0 && fds.error == (flags ? EMFILE : 0));
    FUZZ_CHECK(memcmp(&got, &sent, sizeof got) == 0);
    FUZZ_CHECK(got.nfds == k);
    FUZZ_CHECK(fds.n == arrived);
    FUZZ_CHECK(memcmp(fds.fd, fds_in, sizeof(int) * arrived) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = { data, size };
    if (fuzz_byte(&in) % FSMSG_FUZZ_MODES == FSMSG_FUZZ_RAW)
        fuzz_raw(&in);
    else
        fuzz_round_trip(&in);
    return 0;
}
