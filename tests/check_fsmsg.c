/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg.c — the fork server's socket messages (lib/fsmsg.c): the pure
 * decoder on good, short, truncated and malformed input; the socket calls
 * when recvmsg() fails, meets end-of-file or runs out of descriptors; and a
 * pool that loses its fork-server socket or cannot take in a new worker's
 * descriptors, which must fail cleanly instead of crashing.
 *
 * This file holds what the suite's files share (check_fsmsg.h: a sample
 * message, encoded) and its main; the tests are in one file per concern,
 * run in this order:
 *   check_fsmsg_codec.c   the pure decoder;
 *   check_fsmsg_socket.c  the socket calls;
 *   check_fsmsg_pool.c    a pool losing its socket or out of descriptors.
 */
#define _GNU_SOURCE
#include "check_fsmsg.h"

/* ---------------------------------------------------------------- helpers */

const fs_msg sample = { .op = 3, .slot = 7, .pid = 4242, .value = -5 };
const int sample_fds[FS_MAX_FDS] = { 10, 11, 12 };

bool same_msg(const fs_msg *a, const fs_msg *b)
{
    return a->op == b->op && a->slot == b->slot && a->pid == b->pid && a->value == b->value &&
           a->nfds == b->nfds;
}

encoded encode_sample(unsigned nfds)
{
    encoded e = { .msg = sample };
    e.controllen = wp__fs_msg_encode(&e.msg, sample_fds, nfds, &e.ctl);
    return e;
}

/* e's control record. */
struct cmsghdr *record(encoded *e)
{
    struct msghdr mh = { .msg_control = e->ctl.buf, .msg_controllen = sizeof e->ctl.buf };
    return CMSG_FIRSTHDR(&mh);
}

/* Is fd open? */
bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        fsmsg_add_codec_tests, fsmsg_add_socket_tests, fsmsg_add_pool_tests,
    };
    const tu_suite suite = { .name = "fsmsg", .timeout_s = 60 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
