/* The segment: mode 0600 under a per-user name, bad names refused, a
 * versioned header that a mismatched binary refuses (-EPROTO) rather than
 * misreads, another user's or a too-open file refused, a creator that died
 * half-way recovered, capacities configurable, backends chosen at open. */
#include "monster_test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>


static int try_open(zkprologml_ctx_t **ctx, const char *name)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = name;
    cfg.backend = ZKPROLOGML_BACKEND_USER;
    return zkprologml_open(ctx, &cfg);
}

Test(segment, mode_0600_and_per_user_name, .fini = mt_cleanup)
{
    mt_user_only("the segment file");
    zkprologml_ctx_t *ctx = mt_open(8);
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm/ferry-%u-monster-%s", (unsigned)getuid(), mt_seg_name());
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s exists", path);
    cr_assert_eq(st.st_mode & 0777, 0600u);
    cr_assert_eq(st.st_uid, getuid());
    cr_assert_str_eq(zkprologml_backend_name(ctx), "user");
    zkprologml_close(ctx);
}

Test(segment, bad_names_are_einval, .fini = mt_cleanup)
{
    mt_user_only("segment names (the kernel ignores cfg.name)");
    zkprologml_ctx_t *ctx = NULL;
    cr_assert_eq(try_open(&ctx, ""), -EINVAL);
    cr_assert_eq(try_open(&ctx, "../etc"), -EINVAL);
    cr_assert_eq(try_open(&ctx, "a/b"), -EINVAL);
    cr_assert_eq(try_open(&ctx, "0123456789012345678901234567890123"), -EINVAL);
    cr_assert_null(ctx);
    cr_assert_eq(zkprologml_open(NULL, NULL), -EINVAL);
}

Test(segment, mismatched_header_is_eproto, .fini = mt_cleanup)
{
    mt_user_only("the segment's header");
    zkprologml_ctx_t *ctx = mt_open(8), *other = NULL;
    fmon_header_t *h = mt_seg(ctx)->hdr;
    h->version = 99;
    cr_assert_eq(try_open(&other, mt_seg_name()), -EPROTO);
    cr_assert(strstr(zkprologml_last_error(), "version"), "%s", zkprologml_last_error());
    h->version = FMON_LAYOUT_VERSION;
    h->capacity[3] = ZKPROLOGML_MAX_CAPACITY + 1;
    cr_assert_eq(try_open(&other, mt_seg_name()), -EPROTO);
    h->capacity[3] = 8;
    h->pipe_size++;
    cr_assert_eq(try_open(&other, mt_seg_name()), -EPROTO);
    h->pipe_size--;
    atomic_store(&h->magic, 0x1234);
    cr_assert_eq(try_open(&other, mt_seg_name()), -EPROTO);
    atomic_store(&h->magic, FMON_MAGIC);
    cr_assert_eq(try_open(&other, mt_seg_name()), 0, "restored header attaches");
    zkprologml_close(other);
    zkprologml_close(ctx);
}

Test(segment, too_open_file_is_refused, .fini = mt_cleanup)
{
    mt_user_only("the segment file's mode");
    zkprologml_ctx_t *ctx = mt_open(8), *other = NULL;
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm/ferry-%u-monster-%s", (unsigned)getuid(), mt_seg_name());
    cr_assert_eq(chmod(path, 0644), 0);
    cr_assert_eq(try_open(&other, mt_seg_name()), -EACCES);
    zkprologml_close(ctx);
}

Test(segment, half_made_segment_is_recreated, .fini = mt_cleanup)
{
    mt_user_only("a half-made segment file");
    /* A creator that died before storing the magic leaves a file of some
     * size with zeroes where the magic goes. */
    char path[96];
    snprintf(path, sizeof(path), "/ferry-%u-monster-%s", (unsigned)getuid(), mt_seg_name());
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 12345), 0);
    close(fd);
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    cr_assert_eq(st[0].capacity, 8u);
    zkprologml_close(ctx);
}

Test(segment, capacities_are_configurable_by_the_creator, .fini = mt_cleanup)
{
    mt_user_only("per-pipe capacities (the kernel's is a module parameter)");
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = mt_seg_name();
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        cfg.capacity[i] = (uint32_t)(i + 1);
    zkprologml_ctx_t *ctx, *other;
    cr_assert_eq(zkprologml_open(&ctx, &cfg), 0);
    cfg.capacity[6] = 500; /* an attacher's wish does not change the segment */
    cr_assert_eq(zkprologml_open(&other, &cfg), 0);
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(other, st), 0);
    const uint32_t primes[] = MONSTER_PRIMES_INIT;
    for (int i = 0; i < ZKPROLOGML_PIPES; i++) {
        cr_assert_eq(st[i].capacity, (uint32_t)(i + 1));
        cr_assert_eq(st[i].prime, primes[i]);
    }
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 6, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(other, 6, false);
    zkprologml_sample_t s = mt_sample(6, 6);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(zkprologml_pipe_write(w, &s, 0), 0);
    cr_assert_eq(zkprologml_pipe_write(w, &s, 0), -EAGAIN, "capacity 7");
    (void)r;
    cfg.capacity[0] = ZKPROLOGML_MAX_CAPACITY + 1;
    zkprologml_ctx_t *bad = NULL;
    cr_assert_eq(zkprologml_open(&bad, &cfg), -EINVAL);
    cfg.capacity[0] = 1;
    cfg.sample_hz = ZKPROLOGML_MAX_HZ + 1;
    cr_assert_eq(zkprologml_open(&bad, &cfg), -EINVAL);
    zkprologml_close(other);
    zkprologml_close(ctx);
}

Test(segment, backend_choice, .fini = mt_cleanup)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = mt_seg_name();
    cfg.backend = ZKPROLOGML_BACKEND_KERNEL;
    zkprologml_ctx_t *ctx = NULL;
    /* The kernel backend opens where the module is loaded (the qemu guest),
     * and is -ENOTSUP where the device does not exist. */
    bool dev = access("/dev/monster_sampler", R_OK | W_OK) == 0;
    cr_assert_eq(zkprologml_open(&ctx, &cfg), dev ? 0 : -ENOTSUP);
    if (dev)
        cr_assert_str_eq(zkprologml_backend_name(ctx), "kernel");
    zkprologml_close(ctx);
    ctx = NULL;
    cfg.backend = ZKPROLOGML_BACKEND_AUTO;
    unsetenv("FERRY_MONSTER_BACKEND"); /* auto-detection */
    cr_assert_eq(zkprologml_open(&ctx, &cfg), 0);
    cr_assert_str_eq(zkprologml_backend_name(ctx), dev ? "kernel" : "user");
    zkprologml_close(ctx);
    ctx = NULL;
    setenv("FERRY_MONSTER_BACKEND", "bogus", 1);
    cr_assert_eq(zkprologml_open(&ctx, &cfg), -EINVAL);
    setenv("FERRY_MONSTER_BACKEND", "user", 1);
    cr_assert_eq(zkprologml_open(&ctx, &cfg), 0);
    cr_assert_str_eq(zkprologml_backend_name(ctx), "user");
    zkprologml_close(ctx);
    zkprologml_close(NULL);
}
