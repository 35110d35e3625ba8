/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg_socket.c — the socket calls (check_fsmsg.c says how the
 * suite's tests work): a recvmsg() that fails reads nothing (not even stale
 * stack contents), a round trip over a socket pair, running out of
 * descriptors cuts them off cleanly, and a foreign datagram is refused.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <unistd.h>

#include "check_fsmsg.h"

/* The number the next new descriptor would get. */
static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return fd;
}

/* A connected SOCK_SEQPACKET pair, like the pool's and its fork server's,
   and a pipe whose ends make descriptors to pass. */
typedef struct endpoints {
    int sock[2];
    int pipe[2];
} endpoints;

static endpoints endpoints_open(void)
{
    endpoints e;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, e.sock), 0);
    ck_assert_int_eq(pipe2(e.pipe, O_CLOEXEC), 0);
    return e;
}

static void endpoints_close(endpoints *e)
{
    for (int i = 0; i < 2; i++) {
        if (e->sock[i] >= 0)
            close(e->sock[i]);
        close(e->pipe[i]);
    }
}

/* ---------------------------------------------------------------- socket */

/*
 * Stale stack contents that look like a control message naming fd
 * STALE_FD: a 16-byte record {cmsg_len = CMSG_LEN(sizeof(int)), SOL_SOCKET,
 * SCM_RIGHTS} at every 16 bytes, so whichever 16-aligned place a control
 * buffer below the caller gets, it starts with such a record, whose one
 * descriptor (the first bytes of the next record) reads as STALE_FD.  A
 * receiver that parses a buffer recvmsg() never filled "receives" it.
 * Not instrumented, so that no sanitizer redzone keeps the array away from
 * the top of the frame.
 */
#define STALE_FD ((int)CMSG_LEN(sizeof(int)))
#define STALE_BYTES 16384
static __attribute__((noinline, no_sanitize_address)) void leave_stale_records(void)
{
    volatile unsigned char stack[STALE_BYTES];
    struct cmsghdr rec;
    memset(&rec, 0, sizeof rec);
    rec.cmsg_len = CMSG_LEN(sizeof(int));
    rec.cmsg_level = SOL_SOCKET;
    rec.cmsg_type = SCM_RIGHTS;
    const unsigned char *bytes = (const unsigned char *)&rec;
    for (size_t off = 0; off + sizeof rec <= sizeof stack; off += sizeof rec)
        for (size_t i = 0; i < sizeof rec; i++)
            stack[off + i] = bytes[i];
}

/* recv on sock right after leaving stale records; the canary (a pipe end
   at STALE_FD) must survive. */
static void recv_fails_cleanly(int sock)
{
    fs_msg m;
    int fds[FS_MAX_FDS] = { -1, -1, -1 }, nfds = -1, fd_error = -1;
    leave_stale_records();
    ck_assert_int_eq(wp__fs_msg_recv(sock, &m, fds, &nfds, &fd_error, MSG_DONTWAIT), WP_ESHUTDOWN);
    ck_assert_int_eq(nfds, 0);
    ck_assert_msg(fd_open(STALE_FD), "descriptor %d, never received, was closed", STALE_FD);
}

WP_TEST(failed_recv_reads_nothing)
{
    ck_assert_uint_eq(sizeof(struct cmsghdr), 16); /* the layout leave_stale_records assumes */
    endpoints e = endpoints_open();
    ck_assert(!fd_open(STALE_FD));
    ck_assert_int_eq(dup3(e.pipe[0], STALE_FD, O_CLOEXEC), STALE_FD);

    recv_fails_cleanly(lowest_free_fd()); /* EBADF: what the owner closing fds >= 3 causes */
    recv_fails_cleanly(e.pipe[1]);        /* ENOTSOCK */
    close(e.sock[0]);
    e.sock[0] = -1;
    recv_fails_cleanly(e.sock[1]);        /* end of file */
    close(STALE_FD);
    endpoints_close(&e);
}

WP_TEST(socket_round_trip)
{
    endpoints e = endpoints_open();
    fs_msg m;
    int fds[FS_MAX_FDS], nfds, fd_error;
    ck_assert_int_eq(wp__fs_msg_recv(e.sock[1], &m, fds, &nfds, &fd_error, MSG_DONTWAIT), 0);

    int send[FS_MAX_FDS] = { e.pipe[0], e.pipe[1], e.pipe[1] };
    ck_assert_int_eq(wp__fs_msg_send(e.sock[0], &sample, send, FS_MAX_FDS, 0, NULL), 0);
    ck_assert_int_eq(wp__fs_msg_send(e.sock[0], &sample, NULL, 0, 0, NULL), 0);
    ck_assert_int_eq(wp__fs_msg_recv(e.sock[1], &m, fds, &nfds, &fd_error, 0), 1);
    ck_assert_int_eq(fd_error, 0);
    ck_assert_int_eq(nfds, FS_MAX_FDS);
    ck_assert_uint_eq(m.nfds, FS_MAX_FDS);
    ck_assert_uint_eq(m.slot, sample.slot);
    ck_assert_int_eq(write(fds[2], "y", 1), 1); /* a working copy of the write end */
    char c;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    ck_assert_int_eq(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    ck_assert_int_eq(wp__fs_msg_recv(e.sock[1], &m, fds, &nfds, NULL, 0), 1);
    ck_assert_int_eq(nfds, 0);
    ck_assert_uint_eq(m.nfds, 0);
    endpoints_close(&e);
}

/* Receive a 3-descriptor message with room for only one more descriptor. */
WP_TEST(emfile_cuts_descriptors)
{
    endpoints e = endpoints_open();
    int send[FS_MAX_FDS] = { e.pipe[0], e.pipe[1], e.pipe[0] };
    ck_assert_int_eq(wp__fs_msg_send(e.sock[0], &sample, send, FS_MAX_FDS, 0, NULL), 0);

    int low = lowest_free_fd();
    struct rlimit old, tight;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    tight = old;
    tight.rlim_cur = (rlim_t)low + 1;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    fs_msg m;
    int fds[FS_MAX_FDS] = { -1, -1, -1 }, nfds = -1, fd_error = -1;
    int got = wp__fs_msg_recv(e.sock[1], &m, fds, &nfds, &fd_error, MSG_DONTWAIT);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);

    ck_assert_int_eq(got, 1);
    ck_assert_int_eq(fd_error, EMFILE);
    ck_assert_int_eq(nfds, 0);
    ck_assert_uint_eq(m.slot, sample.slot);
    ck_assert_msg(!fd_open(low), "descriptor %d arrived and was left open", low);
    endpoints_close(&e);
}

/* A datagram that is not a message, with a descriptor: both are dropped. */
WP_TEST(foreign_datagram)
{
    endpoints e = endpoints_open();
    int low = lowest_free_fd();
    fs_msg_control ctl;
    fs_msg dummy;
    int one = e.pipe[0];
    size_t controllen = wp__fs_msg_encode(&dummy, &one, 1, &ctl);
    struct iovec iov = { .iov_base = "abc", .iov_len = 3 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                         .msg_controllen = controllen };
    ck_assert_int_eq(sendmsg(e.sock[0], &mh, MSG_NOSIGNAL), 3);
    fs_msg m;
    int fds[FS_MAX_FDS], nfds;
    ck_assert_int_eq(wp__fs_msg_recv(e.sock[1], &m, fds, &nfds, NULL, 0), WP_EPROTO);
    ck_assert_int_eq(nfds, 0);
    ck_assert_int_eq(lowest_free_fd(), low);
    endpoints_close(&e);
}

/* ---------------------------------------------------------- its tests */

TU_PART(fsmsg_add_socket_tests,
        TU_CASE("socket", failed_recv_reads_nothing),
        TU_CASE("socket", socket_round_trip),
        TU_CASE("socket", emfile_cuts_descriptors),
        TU_CASE("socket", foreign_datagram))
