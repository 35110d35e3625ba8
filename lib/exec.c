/* SPDX-License-Identifier: MIT */
/*
 * exec.c — WP_START_EXEC (exec.h says how it works; docs/ARCHITECTURE.md,
 * "Exec start"): the pool's preparation, each worker's posix_spawn, and
 * the constructor that turns a new image into a worker before main.
 *
 * Why posix_spawn: the dispatcher lives in a program with threads, and a
 * forked copy of such a program may find a lock (malloc's, stdio's, the
 * program's own) held forever.  glibc's posix_spawn starts the child with
 * clone(CLONE_VM | CLONE_VFORK): the child shares the parent's memory
 * until it execs and runs nothing of the program's, so nothing can be held.
 * The cost is an exec and a load of the program per worker (measured in
 * README, "Measured figures").
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"

extern char **environ;

#define EXEC_SELF      "/proc/self/exe"
#define EXEC_CMDLINE   "/proc/self/cmdline"
#define EXEC_ROLE_MAX  64 /* bytes of "WORKERPOOL_EXEC_WORKER=<slot>:<pid>" past the name */

/* ------------------------------------------------------------- pool side */

static int memfd_of(const char *name, const void *bytes, size_t len)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return WP_ESPAWN;
    /* Above the descriptors the worker's are moved to, so no move of one
       overwrites another (wp__exec_spawn). */
    int high = fcntl(fd, F_DUPFD_CLOEXEC, EXEC_FD_FIRST_FREE);
    close(fd);
    if (high < 0)
        return WP_ESPAWN;
    size_t done = 0;
    while (bytes != NULL && done < len) {
        ssize_t n = write(high, (const char *)bytes + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(high);
            return WP_ESPAWN;
        }
        done += (size_t)n;
    }
    if (bytes == NULL && ftruncate(high, (off_t)len) < 0) {
        close(high);
        return WP_ENOMEM;
    }
    return high;
}

/* The program's argv[0] (what ps shows for its workers), or "workerpool". */
static void program_name(char *out, size_t size)
{
    snprintf(out, size, "workerpool");
    int fd = open(EXEC_CMDLINE, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && buf[0] != '\0') {
        buf[n] = '\0';
        snprintf(out, size, "%s", buf);
    }
}

int wp__exec_prepare(exec_start *x, const worker_config *cfg, void **shared, size_t shared_bytes)
{
    *x = (exec_start){ .shared_fd = -1, .config_fd = -1 };
    *shared = NULL;
    void *init;
    memcpy(&init, &cfg->init, sizeof init);
    if ((init != NULL && !wp__image_holds(init, true)) ||
        (cfg->init_ctx != NULL && !wp__image_holds(cfg->init_ctx, false)))
        return WP_EINVAL;
    void *desc;
    size_t desc_len;
    int rc = wp__image_describe(&desc, &desc_len);
    if (rc < 0)
        return rc == WP_E2BIG ? WP_ESPAWN : rc;
    exec_config c = { .magic = EXEC_CONFIG_MAGIC, .version = EXEC_CONFIG_VERSION,
                      .max_message = cfg->max_message, .memory_limit = cfg->memory_limit,
                      .rss_limit = cfg->rss_limit, .max_tasks = cfg->max_tasks,
                      .slots = cfg->slots, .init_ctx = (uint64_t)(uintptr_t)cfg->init_ctx,
                      .shared_bytes = shared_bytes };
    c.init = (uint64_t)(uintptr_t)init;
    char *bytes = malloc(sizeof c + desc_len);
    if (bytes == NULL) {
        free(desc);
        return WP_ENOMEM;
    }
    memcpy(bytes, &c, sizeof c);
    memcpy(bytes + sizeof c, desc, desc_len);
    free(desc);
    x->config_fd = memfd_of("workerpool-config", bytes, sizeof c + desc_len);
    free(bytes);
    x->shared_fd = memfd_of("workerpool-claims", NULL, shared_bytes);
    if (x->config_fd < 0 || x->shared_fd < 0) {
        rc = x->config_fd < 0 ? x->config_fd : x->shared_fd;
        wp__exec_release(x);
        return rc;
    }
    void *m = mmap(NULL, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, x->shared_fd, 0);
    if (m == MAP_FAILED) {
        wp__exec_release(x);
        return WP_ENOMEM;
    }
    *shared = m;
    program_name(x->argv0, sizeof x->argv0);
    return 0;
}

void wp__exec_release(exec_start *x)
{
    if (x->shared_fd >= 0)
        close(x->shared_fd);
    if (x->config_fd >= 0)
        close(x->config_fd);
    x->shared_fd = x->config_fd = -1;
}

/* fd, moved above the worker's fixed descriptors if it is among them. */
static int above_fixed(int fd)
{
    if (fd >= EXEC_FD_FIRST_FREE)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, EXEC_FD_FIRST_FREE);
    close(fd);
    return high;
}

/* The program's environment with the role added (any stale role left
   out).  O(environment), one allocation. */
static char **worker_env(char *role)
{
    size_t n = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], EXEC_ROLE_ENV "=", sizeof EXEC_ROLE_ENV) != 0)
            env[k++] = environ[i];
    env[k++] = role;
    env[k] = NULL;
    return env;
}

static int spawn_attrs(posix_spawnattr_t *a)
{
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    int rc = posix_spawnattr_init(a);
    if (rc == 0 && (rc = posix_spawnattr_setflags(a, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                         POSIX_SPAWN_SETSIGMASK)) == 0 &&
        (rc = posix_spawnattr_setpgroup(a, 0)) == 0 &&
        (rc = posix_spawnattr_setsigdefault(a, &all)) == 0)
        rc = posix_spawnattr_setsigmask(a, &none);
    return rc;
}

static int spawn_files(posix_spawn_file_actions_t *f, const exec_start *x, int task_fd, int result_fd)
{
    int rc = posix_spawn_file_actions_init(f);
    if (rc == 0 && (rc = posix_spawn_file_actions_adddup2(f, task_fd, EXEC_FD_TASK)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(f, result_fd, EXEC_FD_RESULT)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(f, x->shared_fd, EXEC_FD_SHARED)) == 0)
        rc = posix_spawn_file_actions_adddup2(f, x->config_fd, EXEC_FD_CONFIG);
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    if (rc == 0) /* nothing else of the program's, not even what it left open */
        rc = posix_spawn_file_actions_addclosefrom_np(f, EXEC_FD_FIRST_FREE);
#endif
    return rc;
}

int wp__exec_spawn(const exec_start *x, unsigned slot, worker_handle *out, int *os_error)
{
    int to_worker[2], from_worker[2];
    if (wp__worker_pipes(to_worker, from_worker, os_error) < 0)
        return WP_ESPAWN;
    int task_fd = above_fixed(to_worker[0]), result_fd = above_fixed(from_worker[1]);
    char role[sizeof EXEC_ROLE_ENV + EXEC_ROLE_MAX];
    snprintf(role, sizeof role, "%s=%u:%ld", EXEC_ROLE_ENV, slot, (long)wp__getpid());
    char *argv[] = { (char *)x->argv0, NULL };
    char **env = task_fd >= 0 && result_fd >= 0 ? worker_env(role) : NULL;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t files;
    pid_t pid = 0;
    int rc = env == NULL ? ENOMEM : spawn_attrs(&attr);
    if (env != NULL && rc == 0 && (rc = spawn_files(&files, x, task_fd, result_fd)) == 0) {
        rc = posix_spawn(&pid, EXEC_SELF, &files, &attr, argv, env);
        posix_spawn_file_actions_destroy(&files);
    }
    if (env != NULL)
        posix_spawnattr_destroy(&attr);
    free(env);
    if (task_fd >= 0)
        close(task_fd);
    if (result_fd >= 0)
        close(result_fd);
    if (rc != 0 || task_fd < 0 || result_fd < 0) {
        close(to_worker[1]);
        close(from_worker[0]);
        *os_error = rc != 0 ? rc : EMFILE;
        return WP_ESPAWN;
    }
    wp__worker_handle_of(out, pid, to_worker[1], from_worker[0]);
    return 0;
}

/* ----------------------------------------------------------- worker side */

int wp__exec_config_parse(const void *bytes, size_t len, exec_config *cfg, image *im)
{
    if (len < sizeof *cfg || len > EXEC_CONFIG_MAX)
        return WP_EPROTO;
    memcpy(cfg, bytes, sizeof *cfg);
    if (cfg->magic != EXEC_CONFIG_MAGIC || cfg->version != EXEC_CONFIG_VERSION ||
        cfg->slots == 0 || cfg->slots > WORKER_SLOTS_MAX ||
        cfg->shared_bytes != (uint64_t)cfg->slots * sizeof(worker_shared) ||
        cfg->max_message == 0 || cfg->max_message > SIZE_MAX)
        return WP_EPROTO;
    return wp__image_parse(im, (const char *)bytes + sizeof *cfg, len - sizeof *cfg);
}

/* The whole configuration memfd, or NULL. */
static void *read_config(size_t *len)
{
    struct stat st;
    if (fstat(EXEC_FD_CONFIG, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size > EXEC_CONFIG_MAX)
        return NULL;
    char *b = malloc((size_t)st.st_size);
    size_t done = 0;
    while (b != NULL && done < (size_t)st.st_size) {
        ssize_t n = pread(EXEC_FD_CONFIG, b + done, (size_t)st.st_size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(b);
            return NULL;
        }
        done += (size_t)n;
    }
    *len = done;
    return b;
}

/* The configuration, its image, the claim words and the two functions of
   the pool's, in this image: the worker's whole set-up.  Exits on failure. */
static void become_exec_worker(unsigned slot, pid_t parent)
{
    static image im; /* the worker's for its whole life: translate tasks' functions */
    static worker_config cfg;
    size_t len = 0;
    void *bytes = read_config(&len);
    exec_config c;
    if (bytes == NULL || wp__exec_config_parse(bytes, len, &c, &im) < 0 || slot >= c.slots)
        _exit(WORKER_EXIT_SETUP);
    free(bytes);
    void *shared = mmap(NULL, (size_t)c.shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                        EXEC_FD_SHARED, 0);
    if (shared == MAP_FAILED)
        _exit(WORKER_EXIT_SETUP);
    close(EXEC_FD_SHARED);
    close(EXEC_FD_CONFIG);
    cfg = (worker_config){ .shared = shared, .slots = c.slots, .max_message = (size_t)c.max_message,
                           .max_tasks = c.max_tasks, .memory_limit = (size_t)c.memory_limit,
                           .rss_limit = (size_t)c.rss_limit, .image = &im };
    if (c.init != 0) {
        void *init = wp__image_translate(&im, c.init, true, NULL);
        if (init == NULL)
            _exit(WORKER_EXIT_INIT_FAILED);
        memcpy(&cfg.init, &init, sizeof init);
    }
    if (c.init_ctx != 0 && (cfg.init_ctx = wp__image_translate(&im, c.init_ctx, false, NULL)) == NULL)
        _exit(WORKER_EXIT_INIT_FAILED);
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    bool close_others = false; /* the spawn did: what is open now is this image's own */
#else
    bool close_others = true;
#endif
    wp__worker_become(&cfg, slot, parent, EXEC_FD_TASK, EXEC_FD_RESULT, close_others);
}

/*
 * Every start of a program that links the library passes here, before
 * main: one getenv when it is no worker.  With the role set, main never
 * runs: a worker whose pool died before this point (it was orphaned
 * between its spawn and now, and PR_SET_PDEATHSIG is not set yet) must
 * not go on as a second copy of the program — which would start pools,
 * and workers, of its own.  So a role that is not well formed, or names a
 * pid that is not this process's parent, exits at once (WORKER_EXIT_SETUP);
 * the variable is the library's (README, "Exec start").
 */
__attribute__((constructor)) static void exec_worker_role(void)
{
    const char *role = getenv(EXEC_ROLE_ENV);
    if (role == NULL)
        return;
    unsigned slot;
    long parent;
    char end;
    bool ours = sscanf(role, "%u:%ld%c", &slot, &parent, &end) == 2 && parent == (long)getppid();
    unsetenv(EXEC_ROLE_ENV); /* nothing the worker's tasks start inherits it */
    if (!ours)
        _exit(WORKER_EXIT_SETUP);
    become_exec_worker(slot, (pid_t)parent);
}
