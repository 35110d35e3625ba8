/* SPDX-License-Identifier: MIT */
/*
 * check_process.c — the pool's processes against what a host program does
 * to them: its SIGCHLD disposition (ignored, handled with and without
 * SA_RESTART, SA_NOCLDWAIT, a thread reaping every child) and the rest of
 * its signal set-up, children it forks without exec that keep the pool's
 * descriptors, pools created on threads that exit, and tasks that leave
 * processes behind (a child, a setsid'ed child with a child of its own, a
 * double-forked daemon) on deadline, cancel, recycling, shutdown and the
 * owner's death.
 *
 * Every test runs under each start method, WP_START_FORKSERVER,
 * WP_START_FORK and WP_START_EXEC (WP_TEST_BOTH).  Check runs each test in a process of its own, so a test
 * may change its signal dispositions, or install a seccomp filter that
 * makes the kernel look older (no pidfd; no exit status kept in a pidfd) to
 * reach the library's fallbacks.  No test sleeps to let things happen, and
 * every process a test causes is gone when it ends, even when it fails.
 *
 * This file holds what the suite's files share (check_process.h: pidfds,
 * making the kernel look older, checking a crash's report) and its main;
 * the tests are in one file per concern, run in this order:
 *   check_process_host.c      what the host program does: its SIGCHLD
 *                             disposition and signal set-up, children it
 *                             forks, pools made on threads that exit;
 *   check_process_trees.c     processes tasks leave behind, on every ending
 *                             and on the owner's death;
 *   check_process_children.c  listing one's children (wp__each_child).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_process.h"

int pidfd_of(int pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* ------------------------------------------------------ an older kernel */

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LOW_WORD(i) (offsetof(struct seccomp_data, args[i]))
#else
#define ARG_LOW_WORD(i) (offsetof(struct seccomp_data, args[i]) + sizeof(uint32_t))
#endif

#define PIDFD_IOCTL_TYPE   0xFF /* pidfs ioctls: _IOC_TYPE */
#define PIDFD_GET_INFO_NR  11   /* PIDFD_GET_INFO (Linux 6.13): _IOC_NR */
#define IOCTL_TYPE_NR_MASK 0xFFFFu

/*
 * From now on, in this process and every process it forks, syscall nr
 * fails with err — only for ioctl requests of this type and number if
 * ioctl_type_nr is not 0 (so whatever struct size the library passes).
 * False where no filter can be installed: the caller skips its test.
 */
static bool fail_syscall(long nr, uint32_t ioctl_type_nr, int err)
{
#ifdef AUDIT_ARCH_HERE
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW_WORD(1)),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ioctl_type_nr != 0 ? IOCTL_TYPE_NR_MASK : 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ioctl_type_nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
#else
    (void)nr; (void)ioctl_type_nr; (void)err;
    return false;
#endif
}

/* As on Linux before 5.3: no pidfd at all. */
bool kernel_without_pidfd(void)
{
    return fail_syscall(SYS_pidfd_open, 0, ENOSYS);
}

/* As on Linux before 5.9: no close_range (descriptors closed one by one). */
bool kernel_without_close_range(void)
{
#ifdef SYS_close_range
    return fail_syscall(SYS_close_range, 0, ENOSYS);
#else
    return false;
#endif
}

/* As on Linux before 6.15 (or 6.13): a pidfd keeps no exit status. */
bool kernel_without_pidfd_info(void)
{
    return fail_syscall(SYS_ioctl, (PIDFD_IOCTL_TYPE << 8) | PIDFD_GET_INFO_NR, ENOTTY);
}

/* Does this kernel tell a pidfd's holder the exit status of a child that
   someone else reaped (PIDFD_INFO_EXIT, Linux 6.15)?  Then WP_START_FORK
   keeps statuses whatever the program does with SIGCHLD. */
bool kernel_keeps_exit_status(void)
{
    struct {
        uint64_t mask, cgroupid;
        uint32_t ids[11];
        int32_t  exit_code;
    } info;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(3);
    int fd = pidfd_of(pid);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    if (fd < 0)
        return false;
    memset(&info, 0, sizeof info);
    info.mask = 1u << 3; /* PIDFD_INFO_EXIT */
    bool kept = ioctl(fd, _IOWR(PIDFD_IOCTL_TYPE, PIDFD_GET_INFO_NR, info), &info) == 0 &&
                (info.mask & (1u << 3)) != 0 && info.exit_code == st;
    close(fd);
    return kept;
}

/* ------------------------------------------------------- a crash report */

/*
 * Run fn (which kills its worker) and check the outcome: WP_ECRASHED with
 * code and text in the message — or, where may_lose, the status may have
 * been lost (WP_START_FORK, a program that reaps its children or has the
 * kernel do it): then code 0 and a message that says so and what to do.
 * Returns whether it was lost.
 */
bool expect_crash(wp_pool *p, wp_task_fn fn, int arg, int code, const char *text,
                         bool may_lose, uint64_t started)
{
    int pid = tu_worker_pid(p);
    wp_future *f = tu_run_crash(p, fn, &arg, sizeof arg, NULL, 1, started + 1); /* + a new one */
    ck_assert_int_eq(wp_future_error(f), WP_ECRASHED);
    const char *msg = wp_future_message(f);
    ck_assert_msg(tu_has_number(msg, pid), "message \"%s\" lacks the worker's pid %d", msg, pid);
    bool lost = may_lose && wp_future_code(f) == 0;
    if (lost) {
        ck_assert_msg(strstr(msg, "exit status was lost") != NULL &&
                      strstr(msg, "WP_START_FORKSERVER") != NULL,
                      "message \"%s\" does not say the status was lost and what to do", msg);
    } else {
        ck_assert_int_eq(wp_future_code(f), code);
        ck_assert_msg(strstr(msg, text) != NULL, "message \"%s\" lacks \"%s\"", msg, text);
    }
    wp_future_release(f);
    return lost;
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static tu_part_fn *const parts[] = {
        process_add_host_tests, process_add_trees_tests, process_add_children_tests,
    };
    const tu_suite suite = { .name = "process", .timeout_s = 60 };
    return tu_main_parts(suite, parts, TU_COUNT(parts));
}
