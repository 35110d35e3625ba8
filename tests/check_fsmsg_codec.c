/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg_codec.c — the pure decoder (check_fsmsg.c says how the
 * suite's tests work): a round trip, and input that is short, cut off,
 * malformed or unaligned, each refused with no descriptor taken.
 */
#define _GNU_SOURCE
#include <netinet/in.h>

#include "check_fsmsg.h"

/* The decoder's verdict in one number: its code, else what it found wrong
   with the descriptors (fds->error), negated. */
static int decode(const encoded *e, int flags, fs_msg *m, fs_msg_fds *fds)
{
    int rc = wp__fs_msg_decode(&e->msg, sizeof e->msg, flags, e->ctl.buf, e->controllen, m, fds);
    return rc < 0 ? rc : -fds->error;
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

/* ---------------------------------------------------------- its tests */

TU_PART(fsmsg_add_codec_tests,
        TU_CASE("codec", round_trip),
        TU_CASE("codec", data_part_not_a_message),
        TU_CASE("codec", descriptors_cut_off),
        TU_CASE("codec", count_not_what_it_says),
        TU_CASE("codec", wrong_record_length),
        TU_CASE("codec", wrong_control_length),
        TU_CASE("codec", not_scm_rights),
        TU_CASE("codec", negative_descriptor),
        TU_CASE("codec", unaligned_input))
