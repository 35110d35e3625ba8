/* SPDX-License-Identifier: MIT */
/*
 * make_seeds.c — writes the small seed corpus of the fuzz targets into
 * DIR/frame, DIR/fsmsg and DIR/image (`make fuzz-seeds` runs it on
 * fuzz/corpus): a few valid frame streams, messages and image descriptions
 * (one of them this program's own, by wp__image_describe), and one of each
 * kind of refusal, so that the fuzzers start from inputs that reach every
 * branch of interest.
 */
#include "config.h"

#include <errno.h>
#include <sys/stat.h>

#include "frame.h"
#include "fsmsg.h"
#include "fuzz.h"
#include "image.h"

#define SEED_MAX 8192 /* room for this program's own image description */

typedef struct seed {
    uint8_t bytes[SEED_MAX];
    size_t  len;
} seed;

static void put(seed *s, const void *p, size_t n)
{
    if (s->len + n > sizeof s->bytes) {
        fprintf(stderr, "make_seeds: seed too big\n");
        exit(1);
    }
    memcpy(s->bytes + s->len, p, n);
    s->len += n;
}

static void put_byte(seed *s, uint8_t b)
{
    put(s, &b, 1);
}

static void put_frame(seed *s, enum frame_type type, uint64_t id, const char *payload)
{
    frame_header h;
    size_t n = payload != NULL ? strlen(payload) : 0;
    wp__frame_header(&h, type, id, n);
    if (type == FRAME_TASK)
        h.fn = 0x401000u;
    put(s, &h, sizeof h);
    put(s, payload, n);
}

static void write_seed(const char *dir, const char *sub, const char *name, const seed *s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(s->bytes, 1, s->len, f) != s->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static seed frame_seed(unsigned types, uint32_t max_message, uint64_t task_id, uint64_t chunks)
{
    seed s = { .len = 0 };
    frame_fuzz_config c = { .types = types, .max_message = max_message, .task_id = task_id,
                            .seed = chunks };
    put(&s, &c, sizeof c);
    return s;
}

static void frame_seeds(const char *dir)
{
    seed s = frame_seed(FRAME_FROM_WORKER, 4096, 7, 1);
    put_frame(&s, FRAME_READY, 0, NULL);
    put_frame(&s, FRAME_RESULT, 7, "hello");
    put_frame(&s, FRAME_FAILURE, 7, "cannot open input");
    write_seed(dir, "frame", "from_worker", &s);

    s = frame_seed(FRAME_TO_WORKER, 1024, 0, 2);
    put_frame(&s, FRAME_TASK, 5, "payload");
    put_frame(&s, FRAME_TASK, 6, NULL);
    write_seed(dir, "frame", "to_worker", &s);

    /* Over the limit, then a task id it was not given, then bad magic. */
    s = frame_seed(FRAME_FROM_WORKER, 4, 7, 3);
    put_frame(&s, FRAME_RESULT, 7, "too long");
    put_frame(&s, FRAME_RESULT, 8, NULL);
    frame_header h;
    wp__frame_header(&h, FRAME_READY, 0, 0);
    h.magic ^= 1u;
    put(&s, &h, sizeof h);
    write_seed(dir, "frame", "refused", &s);
}

static seed fsmsg_raw(uint8_t flags, const fs_msg *m, const fs_msg_control *ctl, size_t controllen)
{
    seed s = { .len = 0 };
    put_byte(&s, FSMSG_FUZZ_RAW);
    put_byte(&s, flags);
    put_byte(&s, (uint8_t)sizeof *m);
    put_byte(&s, (uint8_t)controllen);
    put_byte(&s, 0);
    put(&s, m, sizeof *m);
    put(&s, ctl->buf, controllen);
    return s;
}

static void fsmsg_seeds(const char *dir)
{
    static const int fds[FS_MAX_FDS] = { 5, 6, 7 };
    fs_msg m = { .op = 3, .slot = 1, .pid = 1234 };
    fs_msg_control ctl;
    size_t controllen = wp__fs_msg_encode(&m, fds, FS_MAX_FDS, &ctl);
    seed s = fsmsg_raw(0, &m, &ctl, controllen);
    write_seed(dir, "fsmsg", "raw_three_fds", &s);

    /* Cut off after one descriptor, as EMFILE leaves it. */
    struct msghdr mh = { .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int));
    s = fsmsg_raw(FSMSG_FUZZ_CTRUNC, &m, &ctl, CMSG_SPACE(sizeof(int)));
    write_seed(dir, "fsmsg", "raw_cut", &s);

    fs_msg exited = { .op = 5, .pid = 1234, .value = 9 };
    controllen = wp__fs_msg_encode(&exited, NULL, 0, &ctl);
    s = fsmsg_raw(0, &exited, &ctl, controllen);
    write_seed(dir, "fsmsg", "raw_no_fds", &s);

    s.len = 0;
    put_byte(&s, FSMSG_FUZZ_ROUND_TRIP);
    put(&s, &m, sizeof m);
    put_byte(&s, FS_MAX_FDS);
    put(&s, fds, sizeof fds);
    put_byte(&s, 1u | (2u << 1)); /* cut to two */
    write_seed(dir, "fsmsg", "round_trip_cut", &s);
}

/* fuzz_image: the misalignment byte, then the description. */
static seed image_seed(const void *bytes, size_t len)
{
    seed s = { .len = 0 };
    put_byte(&s, 3);
    put(&s, bytes, len);
    return s;
}

/* A description of two objects, the second's span starting at second_lo. */
static seed image_pair(uint64_t second_lo)
{
    static const char *const names[] = { "", "/usr/lib/libexample.so.1" };
    static const unsigned char build_id[] = { 0xde, 0xad, 0xbe, 0xef };
    const uint64_t lo[] = { 0x400000u, second_lo };
    const size_t span = 0x10000u;
    uint8_t buf[SEED_MAX / 2] = { 0 };
    size_t at = sizeof(image_header);
    for (unsigned i = 0; i < 2; i++) {
        image_record r = { .base = lo[i], .lo = lo[i], .hi = lo[i] + span,
                           .name_len = (uint32_t)strlen(names[i]),
                           .build_id_len = sizeof build_id };
        memcpy(buf + at, &r, sizeof r);
        memcpy(buf + at + sizeof r, names[i], r.name_len);
        memcpy(buf + at + sizeof r + r.name_len, build_id, sizeof build_id);
        at += (sizeof r + r.name_len + sizeof build_id + 7u) & ~(size_t)7u;
    }
    image_header h = { .magic = IMAGE_MAGIC, .version = IMAGE_VERSION, .count = 2, .bytes = at };
    memcpy(buf, &h, sizeof h);
    return image_seed(buf, at);
}

static void image_seeds(const char *dir)
{
    void *own;
    size_t len;
    if (wp__image_describe(&own, &len) < 0) {
        fprintf(stderr, "make_seeds: wp__image_describe failed\n");
        exit(1);
    }
    seed s = image_seed(own, len);
    free(own);
    write_seed(dir, "image", "described", &s);

    s = image_pair(0x7f0000000000u);
    write_seed(dir, "image", "two_objects", &s);

    s = image_pair(0x408000u); /* inside the first one's span */
    write_seed(dir, "image", "overlapping", &s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    frame_seeds(argv[1]);
    fsmsg_seeds(argv[1]);
    image_seeds(argv[1]);
    return 0;
}
