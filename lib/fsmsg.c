/* SPDX-License-Identifier: MIT */
/*
 * fsmsg.c — the fork server's socket messages (see fsmsg.h): a pure encoder
 * and decoder first, then the two socket calls that use them.  The decoder
 * is where a failed or short recvmsg() and descriptors cut off by EMFILE are
 * told apart from a good message, so it is written for a fuzzer: offsets
 * instead of the CMSG_NXTHDR pointer walk (which trusts the first record's
 * length), and memcpy for every field, so no byte outside the buffers is
 * read and no pointer is formed past them.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fsmsg.h"

/* ----------------------------------------------------------- pure parts */

size_t wp__fs_msg_encode(fs_msg *m, const int *fds, unsigned nfds, fs_msg_control *ctl)
{
    assert(nfds <= FS_MAX_FDS);
    m->nfds = nfds;
    if (nfds == 0)
        return 0;
    memset(ctl, 0, sizeof *ctl);
    struct msghdr mh = { .msg_control = ctl->buf, .msg_controllen = sizeof ctl->buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    return CMSG_SPACE(sizeof(int) * nfds);
}

/* List the descriptors of every well-formed SCM_RIGHTS record, in order,
   stopping at the first malformed one (false).  O(controllen). */
static bool collect_fds(const unsigned char *control, size_t controllen, fs_msg_fds *fds)
{
    fds->n = 0;
    if (controllen > FS_MSG_CONTROL_SIZE)
        return false; /* never what recvmsg() gives back for our buffer */
    size_t off = 0;
    while (off < controllen) {
        struct cmsghdr h;
        if (controllen - off < sizeof h)
            return false; /* a piece of a record */
        memcpy(&h, control + off, sizeof h);
        if (h.cmsg_len < CMSG_LEN(0) || h.cmsg_len > controllen - off)
            return false;
        if (h.cmsg_level != SOL_SOCKET || h.cmsg_type != SCM_RIGHTS)
            return false;
        if ((h.cmsg_len - CMSG_LEN(0)) % sizeof(int) != 0)
            return false;
        for (size_t at = off + CMSG_LEN(0); at < off + h.cmsg_len; at += sizeof(int)) {
            int fd;
            memcpy(&fd, control + at, sizeof fd);
            if (fd < 0)
                return false;
            /* Each record costs a header, so the buffer's size bounds the count. */
            assert(fds->n < FS_MSG_FD_ROOM);
            fds->fd[fds->n++] = fd;
        }
        /* The last record's padding may be cut off. */
        size_t step = CMSG_ALIGN(h.cmsg_len);
        off += step < controllen - off ? step : controllen - off;
    }
    return true;
}

int wp__fs_msg_decode(const void *data, size_t len, int msg_flags, const void *control,
                      size_t controllen, fs_msg *m, fs_msg_fds *fds)
{
    bool well_formed = collect_fds(control, controllen, fds);
    bool whole = len == sizeof *m && !(msg_flags & MSG_TRUNC);
    if (whole)
        memcpy(m, data, sizeof *m);
    else
        memset(m, 0, sizeof *m);
    if (msg_flags & MSG_CTRUNC)
        fds->error = EMFILE;
    else if (!well_formed || m->nfds > FS_MAX_FDS || fds->n != m->nfds)
        fds->error = EPROTO;
    else
        fds->error = 0;
    return whole ? 0 : WP_EPROTO;
}

/* ---------------------------------------------------------- socket calls */

int wp__fs_msg_send(int sock, const fs_msg *m, const int *fds, int nfds, int flags, int *os_error)
{
    assert(nfds >= 0 && nfds <= FS_MAX_FDS);
    fs_msg out = *m;
    fs_msg_control ctl;
    size_t controllen = wp__fs_msg_encode(&out, fds, (unsigned)nfds, &ctl);
    struct iovec iov = { .iov_base = &out, .iov_len = sizeof out };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = controllen > 0 ? ctl.buf : NULL,
                         .msg_controllen = controllen };
    ssize_t n;
    do
        n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof out)
        return 0;
    int err = n >= 0 ? EMSGSIZE : errno; /* a datagram socket sends all or nothing */
    if (os_error != NULL)
        *os_error = err;
    return err == EAGAIN || err == EWOULDBLOCK ? WP_EAGAIN : WP_ESHUTDOWN;
}

static void close_fds(const fs_msg_fds *fds)
{
    for (unsigned i = 0; i < fds->n; i++)
        close(fds->fd[i]);
}

int wp__fs_msg_recv(int sock, fs_msg *m, int *fds, int *nfds, int *fd_error, int flags)
{
    unsigned char data[sizeof *m];
    fs_msg_control ctl;
    struct iovec iov = { .iov_base = data, .iov_len = sizeof data };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    *nfds = 0;
    if (fd_error != NULL)
        *fd_error = 0;
    ssize_t n;
    do
        n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) /* nothing was received: there is nothing to look at */
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : WP_ESHUTDOWN;

    fs_msg_fds got;
    int rc = wp__fs_msg_decode(data, (size_t)n, mh.msg_flags, ctl.buf, mh.msg_controllen, m, &got);
    if (rc < 0) { /* end of file (n == 0) or not one of ours */
        close_fds(&got);
        return n == 0 ? WP_ESHUTDOWN : rc;
    }
    if (got.error != 0) {
        close_fds(&got);
        if (fd_error != NULL)
            *fd_error = got.error;
        return 1;
    }
    assert(got.n <= FS_MAX_FDS);
    memcpy(fds, got.fd, sizeof(int) * got.n);
    *nfds = (int)got.n;
    return 1;
}
