/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg.c — the fork server's socket messages (lib/fsmsg.c): the pure
 * decoder on good, short, truncated and malformed input; the socket calls
 * when recvmsg() fails, meets end-of-file or runs out of descriptors; and a
 * pool that loses its fork-server socket or cannot take in a new worker's
 * descriptors, which must fail cleanly instead of crashing.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fsmsg.h"
#include "testutil.h"


/* ---------------------------------------------------------------- helpers */

static const fs_msg sample = { .op = 3, .slot = 7, .pid = 4242, .value = -5 };
static const int sample_fds[FS_MAX_FDS] = { 10, 11, 12 };

static bool same_msg(const fs_msg *a, const fs_msg *b)
{
    return a->op == b->op && a->slot == b->slot && a->pid == b->pid && a->value == b->value &&
           a->nfds == b->nfds;
}

/* sample with nfds of sample_fds, encoded. */
typedef struct encoded {
    fs_msg         msg;
    fs_msg_control ctl;
    size_t         controllen;
} encoded;

static encoded encode_sample(unsigned nfds)
{
    encoded e = { .msg = sample };
    e.controllen = wp__fs_msg_encode(&e.msg, sample_fds, nfds, &e.ctl);
    return e;
}

/* e's control record. */
static struct cmsghdr *record(encoded *e)
{
    struct msghdr mh = { .msg_control = e->ctl.buf, .msg_controllen = sizeof e->ctl.buf };
    return CMSG_FIRSTHDR(&mh);
}

/* The decoder's verdict in one number: its code, else what it found wrong
   with the descriptors (fds->error), negated. */
static int decode(const encoded *e, int flags, fs_msg *m, fs_msg_fds *fds)
{
    int rc = wp__fs_msg_decode(&e->msg, sizeof e->msg, flags, e->ctl.buf, e->controllen, m, fds);
    return rc < 0 ? rc : -fds->error;
}

/* Is fd open? */
static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

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

/* ------------------------------------------------------------------ codec */

WP_TEST(round_trip)
{
    for (unsigned k = 0; k <= FS_MAX_FDS; k++) {
        encoded e = encode_sample(k);
        ck_assert_uint_eq(e.msg.nfds, k);
        ck_assert_uint_eq(e.controllen, k ? CMSG_SPACE(sizeof(int) * k) : 0);
        fs_msg m;
        fs_msg_fds fds;
        ck_assert_int_eq(decode(&e, 0, &m, &fds), 0);
        ck_assert(same_msg(&m, &e.msg));
        ck_assert_uint_eq(fds.n, k);
        for (unsigned i = 0; i < k; i++)
            ck_assert_int_eq(fds.fd[i], sample_fds[i]);
    }
}

WP_TEST(data_part_not_a_message)
{
    encoded e = encode_sample(2);
    const size_t lens[] = { 0, 1, sizeof(fs_msg) - 1, sizeof(fs_msg) + 1 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        fs_msg m;
        fs_msg_fds fds;
        memset(&m, 0xAB, sizeof m);
        unsigned char data[sizeof(fs_msg) + 1] = { 0 };
        memcpy(data, &e.msg, sizeof e.msg);
        ck_assert_int_eq(wp__fs_msg_decode(data, lens[i], 0, e.ctl.buf, e.controllen, &m, &fds),
                         WP_EPROTO);
        ck_assert_uint_eq(m.op, 0);
        ck_assert_uint_eq(m.nfds, 0);
        /* What came with it is listed, for closing. */
        ck_assert_uint_eq(fds.n, 2);
        ck_assert_int_eq(fds.fd[1], sample_fds[1]);
    }
    fs_msg m;
    fs_msg_fds fds;
    ck_assert_int_eq(decode(&e, MSG_TRUNC, &m, &fds), WP_EPROTO);
    ck_assert_uint_eq(fds.n, 2);
}

WP_TEST(descriptors_cut_off)
{
    /* Three sent, one installed before EMFILE: the kernel shortens the
       record and sets MSG_CTRUNC. */
    encoded e = encode_sample(3);
    record(&e)->cmsg_len = CMSG_LEN(sizeof(int));
    e.controllen = CMSG_SPACE(sizeof(int));
    fs_msg m;
    fs_msg_fds fds;
    ck_assert_int_eq(decode(&e, MSG_CTRUNC, &m, &fds), -EMFILE);
    ck_assert(same_msg(&m, &e.msg)); /* the caller still learns the slot */
    ck_assert_uint_eq(fds.n, 1);
    ck_assert_int_eq(fds.fd[0], sample_fds[0]);

    /* None installed: no record at all. */
    e.controllen = 0;
    ck_assert_int_eq(decode(&e, MSG_CTRUNC, &m, &fds), -EMFILE);
    ck_assert_uint_eq(fds.n, 0);
}

WP_TEST(count_not_what_it_says)
{
    fs_msg m;
    fs_msg_fds fds;
    /* Says three, two came (and no MSG_CTRUNC). */
    encoded e = encode_sample(3);
    record(&e)->cmsg_len = CMSG_LEN(2 * sizeof(int));
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
    ck_assert_uint_eq(fds.n, 2);

    /* Says none, one came. */
    e = encode_sample(1);
    e.msg.nfds = 0;
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
    ck_assert_uint_eq(fds.n, 1);

    /* As many as the buffer holds, more than a message may carry. */
    e = encode_sample(FS_MAX_FDS);
    int extra = 13;
    record(&e)->cmsg_len = CMSG_LEN(sizeof(int) * FS_MSG_FD_ROOM);
    ck_assert_uint_le(record(&e)->cmsg_len, sizeof e.ctl.buf);
    e.controllen = sizeof e.ctl.buf;
    memcpy(CMSG_DATA(record(&e)) + sizeof(int) * FS_MAX_FDS, &extra, sizeof extra);
    e.msg.nfds = (uint32_t)FS_MSG_FD_ROOM;
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
    ck_assert_uint_eq(fds.n, FS_MSG_FD_ROOM);
    ck_assert_int_eq(fds.fd[FS_MAX_FDS], extra);
}

WP_TEST(wrong_record_length)
{
    const size_t lens[] = { 0, CMSG_LEN(0) - 1, CMSG_LEN(2 * sizeof(int)) + 1,
                            CMSG_SPACE(3 * sizeof(int)) + 1, SIZE_MAX };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        encoded e = encode_sample(3);
        record(&e)->cmsg_len = lens[i];
        fs_msg m;
        fs_msg_fds fds;
        ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
        ck_assert_uint_eq(fds.n, 0); /* nothing from a record it cannot trust */
    }
}

WP_TEST(wrong_control_length)
{
    fs_msg m;
    fs_msg_fds fds;
    /* Less than a record header, and more than any buffer recv uses. */
    encoded e = encode_sample(3);
    e.controllen = sizeof(struct cmsghdr) - 1;
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
    ck_assert_uint_eq(fds.n, 0);

    unsigned char big[FS_MSG_CONTROL_SIZE + 8];
    memset(big, 0, sizeof big);
    memcpy(big, e.ctl.buf, sizeof e.ctl.buf);
    ck_assert_int_eq(wp__fs_msg_decode(&e.msg, sizeof e.msg, 0, big, sizeof big, &m, &fds), 0);
    ck_assert_int_eq(fds.error, EPROTO);
    ck_assert_uint_eq(fds.n, 0);

    /* A record, then a piece of one. */
    e = encode_sample(1);
    e.controllen = CMSG_SPACE(sizeof(int)) + sizeof(int);
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
}

WP_TEST(not_scm_rights)
{
    const int kinds[][2] = { { SOL_SOCKET, SCM_CREDENTIALS }, { IPPROTO_IP, SCM_RIGHTS } };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        encoded e = encode_sample(2);
        record(&e)->cmsg_level = kinds[i][0];
        record(&e)->cmsg_type = kinds[i][1];
        fs_msg m;
        fs_msg_fds fds;
        ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
        ck_assert_uint_eq(fds.n, 0); /* its data are not descriptors */
    }
}

WP_TEST(negative_descriptor)
{
    encoded e = encode_sample(3);
    int bad = -1;
    memcpy(CMSG_DATA(record(&e)) + sizeof(int), &bad, sizeof bad);
    fs_msg m;
    fs_msg_fds fds;
    ck_assert_int_eq(decode(&e, 0, &m, &fds), -EPROTO);
    ck_assert_uint_eq(fds.n, 1);
    ck_assert_int_eq(fds.fd[0], sample_fds[0]);
}

WP_TEST(unaligned_input)
{
    encoded e = encode_sample(3);
    unsigned char data[1 + sizeof e.msg], control[1 + sizeof e.ctl.buf];
    memcpy(data + 1, &e.msg, sizeof e.msg);
    memcpy(control + 1, e.ctl.buf, e.controllen);
    fs_msg m;
    fs_msg_fds fds;
    ck_assert_int_eq(wp__fs_msg_decode(data + 1, sizeof e.msg, 0, control + 1, e.controllen, &m, &fds), 0);
    ck_assert(same_msg(&m, &e.msg));
    ck_assert_uint_eq(fds.n, 3);
    ck_assert_int_eq(fds.fd[2], sample_fds[2]);
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

/* ----------------------------------------------------------- with a pool */

/* Descriptors >= 3 whose /proc/self/fd link starts with prefix. */
static unsigned fds_like(const char *prefix, int *out, unsigned max)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        char path[300], link[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d) || len <= 0)
            continue;
        link[len] = '\0';
        if (strncmp(link, prefix, strlen(prefix)) == 0 && n < max)
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

#define MAX_SEEN 64

/* The owner closes descriptors it thinks are its own, the fork-server
   socket among them: the pool must notice, settle what it cannot run and
   touch no descriptor it does not have. */
WP_TEST_BOTH(pool_loses_its_socket)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int canary[2];
    ck_assert_int_eq(pipe2(canary, O_CLOEXEC), 0);
    int socks[MAX_SEEN];
    unsigned n = fds_like("socket:", socks, MAX_SEEN);
    if (tu_method == WP_START_FORKSERVER)
        ck_assert_uint_ge(n, 1);
    for (unsigned i = 0; i < n; i++)
        close(socks[i]);

    wp_future *f = NULL;
    ck_assert_int_eq(wp_submit(p, tu_echo, "x", 1, NULL, &f), 0);
    ck_assert_int_eq(wp_future_wait(f, TU_DEADLINE_MS), 0);
    if (tu_method == WP_START_FORK) /* it has no socket to lose */
        ck_assert_int_eq(wp_future_error(f), 0);
    ck_assert(fd_open(canary[0]) && fd_open(canary[1]));
    wp_future_release(f);
    wp_pool_destroy(p);
    ck_assert(fd_open(canary[0]) && fd_open(canary[1]));
    close(canary[0]);
    close(canary[1]);
}

/* The owner is out of descriptors when a replacement worker's pipe ends
   arrive (fork server) or are made (fork): a failed start that says so,
   and the pool recovers once descriptors are free again. */
WP_TEST_BOTH(pool_out_of_descriptors)
{
    wp_pool *p = tu_make_pool((wp_pool_options){ .workers = 1 });
    int pid = tu_worker_pid(p);

    /* No new descriptor below the worker's lowest one, so closing its
       pipes frees nothing the replacement's could use. */
    int seen[MAX_SEEN];
    unsigned n = fds_like("pipe:", seen, MAX_SEEN);
    n += fds_like("anon_inode:[pidfd]", seen + n, MAX_SEEN - n);
    ck_assert_uint_ge(n, 2);
    int limit = seen[0];
    for (unsigned i = 1; i < n; i++)
        limit = seen[i] < limit ? seen[i] : limit;
    tu_start_symbolizer();
    struct rlimit old, tight;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    tight = old;
    tight.rlim_cur = (rlim_t)limit;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    int fill[MAX_SEEN];
    unsigned nfill = 0;
    while (nfill < MAX_SEEN && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;

    /* Once the pool has seen it die, the task below waits for a replacement. */
    kill(pid, SIGKILL);
    int64_t deadline = tu_now_ms() + TU_DEADLINE_MS;
    wp_pool_stats st;
    while (wp_pool_get_stats(p, &st) == 0 && st.workers_alive > 0 && tu_now_ms() < deadline)
        tu_poll_pause();
    wp_future *g = NULL;
    int rc = wp_submit(p, tu_echo, "x", 1, NULL, &g);
    int waited = rc == 0 ? wp_future_wait(g, TU_DEADLINE_MS) : rc;
    for (unsigned i = 0; i < nfill; i++)
        close(fill[i]);
    int restored = setrlimit(RLIMIT_NOFILE, &old);
    /* The replacement may be forking now: no allocation (see TU_ASAN). */
    tu_wait_workers(p, 1, 2);

    ck_assert_int_eq(restored, 0);
    ck_assert_uint_lt(nfill, MAX_SEEN);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(waited, 0);
    ck_assert_int_eq(wp_future_error(g), WP_ESPAWN);
    ck_assert_msg(strstr(wp_future_message(g), strerror(EMFILE)) != NULL, "message: %s",
                  wp_future_message(g));
    wp_future_release(g);
    g = tu_run(p, tu_echo, "ok", 2, NULL);
    ck_assert_int_eq(wp_future_error(g), 0);
    wp_future_release(g);
    wp_pool_destroy(p);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const tu_suite suite = { .name = "fsmsg", .timeout_s = 60 };
    const tu_test tests[] = {
        TU_CASE("codec", round_trip),
        TU_CASE("codec", data_part_not_a_message),
        TU_CASE("codec", descriptors_cut_off),
        TU_CASE("codec", count_not_what_it_says),
        TU_CASE("codec", wrong_record_length),
        TU_CASE("codec", wrong_control_length),
        TU_CASE("codec", not_scm_rights),
        TU_CASE("codec", negative_descriptor),
        TU_CASE("codec", unaligned_input),
        TU_CASE("socket", failed_recv_reads_nothing),
        TU_CASE("socket", socket_round_trip),
        TU_CASE("socket", emfile_cuts_descriptors),
        TU_CASE("socket", foreign_datagram),
        TU_TEST(pool_loses_its_socket),
        TU_TEST(pool_out_of_descriptors),
    };
    return tu_main(suite, tests, TU_COUNT(tests));
}
