/* SPDX-License-Identifier: MIT */
/*
 * fsmsg.h — the messages on the fork server's socket: one fixed record per
 * SOCK_SEQPACKET datagram, plus up to FS_MAX_FDS descriptors (a worker's
 * pipe ends and pidfd) in one SCM_RIGHTS control message.
 *
 * Encoding and decoding are pure functions over bytes, kept apart from the
 * socket calls so a fuzzer or a unit test can hand the decoder anything.
 * The decoder trusts nothing: it reads only the bytes the kernel said it
 * delivered, lists every descriptor that really arrived (so the caller can
 * close them all when the message is unusable) and never reports a number
 * that was not in a well-formed SCM_RIGHTS record.
 */
#ifndef WP_FSMSG_H
#define WP_FSMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

/* Host byte order: both ends are the same binary.  What op and the other
   fields mean is the fork server's business; this layer carries them. */
typedef struct fs_msg {
    uint32_t op;
    uint32_t slot;
    int32_t  pid;
    int32_t  value;   /* errno or wait status */
    uint32_t nfds;    /* descriptors sent with it; set by the encoder */
} fs_msg;

/* Most descriptors one message carries: task pipe, result pipe, pidfd. */
#define FS_MAX_FDS 3

/* Room for the control message of FS_MAX_FDS descriptors, aligned for a
   struct cmsghdr. */
#define FS_MSG_CONTROL_SIZE CMSG_SPACE(sizeof(int) * FS_MAX_FDS)
typedef struct fs_msg_control {
    _Alignas(struct cmsghdr) unsigned char buf[FS_MSG_CONTROL_SIZE];
} fs_msg_control;

/* Most descriptors a control buffer of that size can bring (alignment
   padding leaves room for more than FS_MAX_FDS). */
#define FS_MSG_FD_ROOM ((FS_MSG_CONTROL_SIZE - CMSG_LEN(0)) / sizeof(int))

/* The descriptors that arrived with a message, in order, and whether they
   can be used. */
typedef struct fs_msg_fds {
    int      fd[FS_MSG_FD_ROOM];
    unsigned n;
    int      error;  /* 0, or an errno value: EMFILE (some were cut off), EPROTO
                        (malformed, or not the count the message gives) */
} fs_msg_fds;

/*
 * Build a message: sets m->nfds = nfds (at most FS_MAX_FDS) and writes the
 * SCM_RIGHTS record for fds into ctl.  Returns the control length to send,
 * 0 when there are no descriptors.
 */
size_t wp__fs_msg_encode(fs_msg *m, const int *fds, unsigned nfds, fs_msg_control *ctl) WP_INTERNAL;

/*
 * Decode what recvmsg() delivered: len data bytes at data, msg_flags, and
 * controllen control bytes at control (which need not be aligned).  Returns
 *   0          the data part is one whole message: *m is filled;
 *   WP_EPROTO  it is not (wrong size, MSG_TRUNC): *m is zeroed.
 * Whatever the result, fds lists every descriptor that arrived in a
 * well-formed record, and nothing else, and fds->error says whether they
 * are the message's own (fds->n == m->nfds) or unusable:
 *   0          usable;
 *   EMFILE     some were cut off (MSG_CTRUNC: the receiver ran out of
 *              descriptors, or the sender sent more than fit);
 *   EPROTO     the control data is malformed (a bad length, a record that
 *              is not SCM_RIGHTS, a negative number) or its count is not
 *              m->nfds.
 * The caller closes exactly the listed ones when it cannot use them.
 */
int wp__fs_msg_decode(const void *data, size_t len, int msg_flags, const void *control,
                      size_t controllen, fs_msg *m, fs_msg_fds *fds) WP_INTERNAL;

/* Send m with nfds descriptors (m->nfds is set on the copy sent); flags
   are added to MSG_NOSIGNAL.  0; WP_EAGAIN, the socket is full (with
   MSG_DONTWAIT); or WP_ESHUTDOWN, it failed (the other end is gone, the
   descriptor is not a socket), *os_error (may be NULL) saying how. */
int wp__fs_msg_send(int sock, const fs_msg *m, const int *fds, int nfds, int flags,
                    int *os_error) WP_INTERNAL;

/*
 * Receive one message (flags are added to MSG_CMSG_CLOEXEC).  Returns
 *   1             a message: *m, and *nfds descriptors in fds (at most
 *                 FS_MAX_FDS), or, when those that came with it were
 *                 unusable, none: they were closed and *fd_error says why
 *                 (fs_msg_fds.error: EMFILE, EPROTO; else 0; fd_error may
 *                 be NULL);
 *   0             none now (EAGAIN);
 *   WP_ESHUTDOWN  the socket failed, or the other end closed it;
 *   WP_EPROTO     what came was not one message.
 * On a negative result nothing is left open.
 */
int wp__fs_msg_recv(int sock, fs_msg *m, int *fds, int *nfds, int *fd_error,
                    int flags) WP_INTERNAL;

#endif
