/* SPDX-License-Identifier: MIT */
/*
 * check_fsmsg.h — what the files of the fsmsg suite share: a sample
 * message, encoded (check_fsmsg.c; it says how the suite's tests work),
 * and each file's part of the table.
 */
#ifndef WP_CHECK_FSMSG_H
#define WP_CHECK_FSMSG_H

/* What most of the suite's files use, besides what testutil.h includes. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "fsmsg.h"
#include "testutil.h"

/* A message with every field set, and descriptor numbers to pass. */
extern const fs_msg sample;
extern const int    sample_fds[FS_MAX_FDS];
/* Do a and b carry the same fields and descriptor count? */
bool same_msg(const fs_msg *a, const fs_msg *b);

/* sample with nfds of sample_fds, encoded. */
typedef struct encoded {
    fs_msg         msg;
    fs_msg_control ctl;
    size_t         controllen;
} encoded;
encoded encode_sample(unsigned nfds);
/* e's control record. */
struct cmsghdr *record(encoded *e);

/* Is fd open? */
bool fd_open(int fd);

/* Each file's part of the table (TU_PART), in the order main runs them. */
tu_part_fn fsmsg_add_codec_tests, fsmsg_add_socket_tests, fsmsg_add_pool_tests;

#endif
