/* What only the kernel backend has: auto-detection of the device, the
 * module's own checks of raw ioctl arguments, the hrtimer sampler, the
 * debugfs files and the dmesg line, release on SIGKILL across processes, a
 * barrier of processes, and the device node's permissions (`group=`).
 * Runs where monster_sampler.ko is loaded and FERRY_MONSTER_BACKEND=kernel
 * (the qemu guest of tests/kmod); elsewhere every test is skipped with the
 * reason printed. */
#define _GNU_SOURCE
#include "monster_test.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define DEV "/dev/monster_sampler"
#define DBG "/sys/kernel/debug/monster_sampler"

static void kernel_only(void)
{
    if (!mt_kernel() || access(DEV, F_OK) != 0)
        cr_skip_test("kernel backend only: needs monster_sampler.ko and "
                     "FERRY_MONSTER_BACKEND=kernel (tests/kmod/run.sh runs it in qemu)");
}

static zkprologml_sample_t mk(uint32_t i)
{
    zkprologml_sample_t s;
    memset(&s, 0, sizeof(s));
    s.pid = i;
    s.tid = i * 7u;
    s.timestamp_ns = (uint64_t)i * 1000003u;
    snprintf(s.comm, sizeof(s.comm), "s%u", i);
    return s;
}

Test(kernel, auto_detect_and_env, .init = kernel_only)
{
    unsetenv("FERRY_MONSTER_BACKEND");
    zkprologml_ctx_t *ctx = NULL;
    int rc = zkprologml_open(&ctx, NULL);
    cr_assert_eq(rc, 0, "open %d %s", rc, zkprologml_last_error());
    cr_assert_str_eq(zkprologml_backend_name(ctx), "kernel", "the device is auto-detected");
    zkprologml_close(ctx);
    setenv("FERRY_MONSTER_BACKEND", "user", 1);
    cr_assert_eq(zkprologml_open(&ctx, NULL), 0);
    cr_assert_str_eq(zkprologml_backend_name(ctx), "user", "the env variable wins");
    zkprologml_close(ctx);
    zkprologml_unlink(NULL);
    setenv("FERRY_MONSTER_BACKEND", "kernel", 1);
    cr_assert_eq(zkprologml_open(&ctx, NULL), 0);
    cr_assert_str_eq(zkprologml_backend_name(ctx), "kernel");
    zkprologml_close(ctx);
}

/* The raw ioctls: the module checks every value itself. */
Test(kernel, bad_values_rejected, .init = kernel_only)
{
    int fd = open(DEV, O_RDWR);
    cr_assert_geq(fd, 0, "open %s", strerror(errno));
    int bad[] = {15, -1, 0x200, 0x10000, 15 | MONSTER_PIPE_PRODUCER};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &bad[i]) < 0 && errno == EINVAL, "ring %#x",
                  bad[i]);
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_OPEN, (void *)16) < 0 && errno == EFAULT, "bad pointer");
    struct process_sample s;
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_READ, &s) < 0 && errno == EBADF, "read without pipe");
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_CLOSE) < 0 && errno == EBADF, "close without pipe");
    cr_assert(ioctl(fd, MONSTER_IOC_SIGNAL_READY) < 0 && errno == EBADF, "ready without wait");
    cr_assert(ioctl(fd, _IO(MONSTER_IOC_MAGIC, 99)) < 0 && errno == ENOTTY, "unknown cmd");
    int ring = 7 | MONSTER_PIPE_PRODUCER;
    cr_assert_eq(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &ring), 0, "open 7");
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &ring) < 0 && errno == EBUSY, "second pipe on one fd");
    struct monster_xfer x = {.sample = 8, .timeout_ms = 0};
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_WRITE_T, &x) < 0 && errno == EFAULT, "bad sample pointer");
    x.reserved = 1;
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_WRITE_T, &x) < 0 && errno == EINVAL, "reserved");
    struct monster_barrier b = {.shard = 256, .n = 1};
    cr_assert(ioctl(fd, MONSTER_IOC_WAIT_READY, &b) < 0 && errno == EINVAL, "barrier shard 256");
    b = (struct monster_barrier){.shard = 1, .n = 257};
    cr_assert(ioctl(fd, MONSTER_IOC_WAIT_READY, &b) < 0 && errno == EINVAL, "barrier n 257");
    struct monster_buf mb = {.ptr = 8, .n = 15};
    cr_assert(ioctl(fd, MONSTER_IOC_PIPE_STATUS, &mb) < 0 && errno == EFAULT, "status bad ptr");
    mb = (struct monster_buf){.ptr = 8, .n = 4, .timeout_ms = -1};
    cr_assert(ioctl(fd, MONSTER_IOC_READ_SAMPLES, &mb) < 0 && errno == EFAULT, "samples bad ptr");
    uint8_t sh = 3;
    cr_assert_eq(ioctl(fd, MONSTER_IOC_WAIT_CREATE, &sh), 0, "wait create");
    cr_assert(ioctl(fd, MONSTER_IOC_WAIT_CREATE, &sh) < 0 && errno == EBUSY, "second wait on one fd");
    close(fd);
}

/* The hrtimer sampler finds a busy child running in user mode. */
Test(kernel, sampler_hrtimer_samples, .init = kernel_only)
{
    pid_t busy = fork();
    cr_assert_geq(busy, 0);
    if (busy == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "mt_busy");
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    zkprologml_ctx_t *ctx = mt_open(8);
    static zkprologml_sample_t s[1024];
    int found = 0, total = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* Bounded by the test's timeout: the child runs until it is found. */
    while (!found) {
        size_t n = 0;
        cr_assert_eq(zkprologml_read_samples(ctx, s, 1024, &n), 0);
        for (size_t i = 0; i < n; i++) {
            total++;
            cr_assert(s[i].tid != 0 && s[i].cpu < (uint32_t)ncpu && s[i].timestamp_ns != 0 &&
                          (s[i].flags & (MONSTER_SAMPLE_USER | MONSTER_SAMPLE_KERNEL)) &&
                          memchr(s[i].comm, 0, sizeof(s[i].comm)),
                      "bad sample tid %u cpu %u", s[i].tid, s[i].cpu);
            if (s[i].pid == (uint32_t)busy && (s[i].flags & MONSTER_SAMPLE_USER) &&
                s[i].utime_delta_ns > 0 && strcmp(s[i].comm, "mt_busy") == 0)
                found = 1;
        }
    }
    kill(busy, SIGKILL);
    waitpid(busy, NULL, 0);
    zkprologml_close(ctx);
}

Test(kernel, debugfs_formats_and_dmesg, .init = kernel_only)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 0, true);
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 5);
    cr_assert(p && w, "open");
    cr_assert_eq(zkprologml_signal_ready(w), 0);
    static char buf[65536];
    cr_assert(mt_slurp(DBG "/pipes", buf, sizeof(buf)), "read pipes");
    int lines = 0;
    for (char *save, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int id, pr, co, rd, wr, cl, end = 0;
        cr_assert(sscanf(l, "Pipe %d: producer=%d, consumer=%d, readers=%d, writers=%d, closed=%d%n",
                         &id, &pr, &co, &rd, &wr, &cl, &end) == 6 &&
                      l[end] == 0 && id == lines,
                  "line '%s'", l);
        if (id == 0)
            cr_assert(pr == getpid() && co == 0 && rd == 0 && wr == 1 && cl == 0, "pipe 0 '%s'", l);
        lines++;
    }
    cr_assert_eq(lines, 15);
    cr_assert(mt_slurp(DBG "/wait_states", buf, sizeof(buf)), "read wait_states");
    char want[128];
    snprintf(want, sizeof(want), "Wait %d: pid=%d, shard=5, sequence=%llu, ready=1\n",
             zkprologml_wait_id(w), getpid(), (unsigned long long)zkprologml_wait_sequence(w));
    cr_assert_not_null(strstr(buf, want), "want '%.100s' in '%.200s'", want, buf);
    zkprologml_wait_t *w2 = zkprologml_wait_create(ctx, 5);
    zkprologml_wait_t *w3 = zkprologml_wait_create(ctx, 5);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 5), 3);
    static char klog[1 << 17];
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);
    cr_assert_gt(n, 0, "klogctl %s", strerror(errno));
    klog[n] = 0;
    cr_assert_not_null(strstr(klog, "Coordinated 3 apps on shard 5\n"), "the dmesg line");
    zkprologml_wait_free(w2);
    zkprologml_wait_free(w3);
    zkprologml_close(ctx);
    cr_assert(mt_slurp(DBG "/wait_states", buf, sizeof(buf)), "read");
    cr_assert_null(strstr(buf, want), "wait state still listed after close");
}

/* A child tells the parent it is set up through a pipe(2). */
static void child_ready(int fd)
{
    char c = 1;
    if (write(fd, &c, 1) != 1)
        _exit(3);
}

static zkprologml_ctx_t *child_open(void)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.backend = ZKPROLOGML_BACKEND_KERNEL;
    zkprologml_ctx_t *ctx = NULL;
    if (zkprologml_open(&ctx, &cfg) < 0)
        _exit(2);
    return ctx;
}

/* A consumer with a wait state is SIGKILLed: its registration and wait
 * state go at once, and the producer blocked on the full ring gets EPIPE. */
Test(kernel, sigkill_releases_and_wakes, .init = kernel_only)
{
    int sync[2], bres[2];
    cr_assert_eq(pipe(sync), 0);
    cr_assert_eq(pipe(bres), 0);
    pid_t a = fork();
    if (a == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        zkprologml_ctx_t *ctx = child_open();
        if (!zkprologml_pipe_open(ctx, 9, false) || !zkprologml_wait_create(ctx, 9))
            _exit(2);
        child_ready(sync[1]);
        for (;;)
            pause();
    }
    char ch;
    cr_assert_eq(read(sync[0], &ch, 1), 1, "child A setup");
    pid_t b = fork();
    if (b == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        zkprologml_ctx_t *ctx = child_open();
        zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 9, true);
        zkprologml_sample_t s = mk(1);
        while (zkprologml_pipe_write(p, &s, 0) == 0)
            ;
        child_ready(sync[1]);
        int rc = zkprologml_pipe_write(p, &s, -1); /* blocks: full */
        if (write(bres[1], &rc, sizeof(rc)) != sizeof(rc))
            _exit(3);
        _exit(0);
    }
    cr_assert_eq(read(sync[0], &ch, 1), 1, "child B setup");
    zkprologml_ctx_t *ctx = mt_open(8);
    zkprologml_pipe_status_t ps[ZKPROLOGML_PIPES];
    static zkprologml_wait_status_t ws[ZKPROLOGML_WAIT_STATES];
    cr_assert_eq(zkprologml_pipe_status(ctx, ps), 0);
    cr_assert(ps[9].readers == 1 && ps[9].writers == 1 && ps[9].consumer_pid == a &&
                  ps[9].producer_pid == b,
              "before: r %u w %u", ps[9].readers, ps[9].writers);
    zkprologml_wait_t *mine = zkprologml_wait_create(ctx, 9);
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 9), 2, "A and us on shard 9");
    mt_wait_device_sleepers(1); /* B asleep on the full ring */
    kill(a, SIGKILL);
    int st;
    cr_assert(waitpid(a, &st, 0) == a && WIFSIGNALED(st), "A killed");
    int brc = 0;
    cr_assert_eq(read(bres[0], &brc, sizeof(brc)), (ssize_t)sizeof(brc), "B result");
    cr_assert_eq(brc, -EPIPE, "B got %d, want -EPIPE", brc);
    cr_assert(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "B exit");
    cr_assert_eq(zkprologml_pipe_status(ctx, ps), 0);
    cr_assert(ps[9].readers == 0 && ps[9].writers == 0 && ps[9].count == 0,
              "after: r %u w %u count %u", ps[9].readers, ps[9].writers, ps[9].count);
    cr_assert_geq(zkprologml_wait_status(ctx, ws), 1, "ours is there");
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
        cr_assert(!ws[i].in_use || ws[i].pid != a, "A's wait state still there");
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 9), 1, "only ours counted");
    zkprologml_wait_free(mine);
    zkprologml_close(ctx);
}

/* Eight processes meet at a barrier and are coordinated together. */
Test(kernel, multiprocess_coordinate, .init = kernel_only)
{
    enum { N = 8 };
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        cr_assert_geq(kids[i], 0);
        if (kids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            zkprologml_ctx_t *ctx = child_open();
            zkprologml_wait_t *w = zkprologml_wait_create(ctx, 11);
            if (!w || zkprologml_signal_ready(w) != 0)
                _exit(2);
            int rc = zkprologml_wait_for_coord(w, -1);
            zkprologml_close(ctx);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    zkprologml_ctx_t *ctx = mt_open(8);
    cr_assert_eq(zkprologml_wait_ready(ctx, 11, N, -1), N, "barrier");
    cr_assert_eq(zkprologml_coordinate_shard(ctx, 11), N);
    for (int i = 0; i < N; i++) {
        int st;
        cr_assert(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "child %d", i);
    }
    zkprologml_close(ctx);
}

/* Opens the device as uid/gid with the supplementary groups given; the
 * child's exit status is 0 (opened) or the errno. */
static int open_as(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setgroups(ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            _exit(100);
        int fd = open(DEV, O_RDWR);
        if (fd < 0)
            _exit(errno);
        uint32_t abi = 0;
        _exit(ioctl(fd, MONSTER_IOC_ABI_VERSION, &abi) == 0 && abi == MONSTER_ABI_VERSION ? 0 : 101);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "child died");
    return WEXITSTATUS(st);
}

/* By default the node is 0600 root:root and only root opens it; loaded
 * with group=G it is 0660 root:G, a non-root member of G opens it and a
 * non-root user outside G cannot. The qemu guest runs this test once per
 * load. */
Test(kernel, device_permissions, .init = kernel_only)
{
    char buf[32];
    cr_assert(mt_slurp("/sys/module/monster_sampler/parameters/group", buf, sizeof(buf)),
              "the group parameter");
    int group = atoi(buf);
    struct stat st;
    cr_assert_eq(stat(DEV, &st), 0);
    cr_assert(S_ISCHR(st.st_mode));
    cr_assert_eq(st.st_uid, 0u);
    const gid_t outsider_gid = 4242, none[] = {4242};
    if (group < 0) {
        cr_assert_eq(st.st_mode & 07777, 0600u, "default mode %o", st.st_mode & 07777);
        cr_assert_eq(st.st_gid, 0u);
        cr_assert_eq(open_as(4242, outsider_gid, none, 1), EACCES, "non-root refused");
    } else {
        const gid_t member[] = {(gid_t)group};
        cr_assert_eq(st.st_mode & 07777, 0660u, "mode %o with group=", st.st_mode & 07777);
        cr_assert_eq(st.st_gid, (gid_t)group);
        cr_assert_eq(open_as(4343, 4343, member, 1), 0, "a member of group %d opens it", group);
        cr_assert_eq(open_as(4242, outsider_gid, none, 1), EACCES, "a non-member is refused");
    }
    cr_assert_eq(open_as(0, 0, NULL, 0), 0, "root opens it");
}
