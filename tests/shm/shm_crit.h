/* shm_crit.h: a stand-in for the part of Criterion the shm tests use, for
 * the ThreadSanitizer build only. Criterion's sandbox maps its arena at
 * fixed addresses that collide with TSan's shadow memory, so a Criterion
 * binary built with -fsanitize=thread aborts before the first test
 * (Criterion issue #274). With SHM_NO_CRITERION the same test sources build
 * against this header instead.
 *
 * Behaviour kept: each test runs in its own forked child with a timeout
 * (--timeout N, default 60 s, enforced with alarm()); cr_assert_* ends the
 * test, cr_expect_* records and continues; --filter takes a glob on
 * "suite/name"; other Criterion options are accepted and ignored. The
 * binary exits 1 if any test failed, crashed or timed out. Assertion
 * messages must start with a string literal (as all of ours do). */
#ifndef FERRY_TESTS_SHM_CRIT_H
#define FERRY_TESTS_SHM_CRIT_H

#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct shm_crit_test {
    const char *suite; /* Test() first argument */
    const char *name;  /* Test() second argument */
    void (*fn)(void);  /* the body */
} shm_crit_test_t;

static shm_crit_test_t shm_crit_tests[128];
static int shm_crit_count;
static bool shm_crit_failed; /* an expectation failed in this (child) run */

static void shm_crit_add(const char *suite, const char *name, void (*fn)(void))
{
    if (shm_crit_count == (int)(sizeof(shm_crit_tests) / sizeof(shm_crit_tests[0])))
        abort();
    shm_crit_tests[shm_crit_count++] = (shm_crit_test_t){suite, name, fn};
}

#define Test(suite, name, ...)                                                  \
    static void shm_crit_body_##suite##_##name(void);                           \
    __attribute__((constructor)) static void shm_crit_reg_##suite##_##name(void) \
    {                                                                           \
        shm_crit_add(#suite, #name, shm_crit_body_##suite##_##name);            \
    }                                                                           \
    static void shm_crit_body_##suite##_##name(void)

/* No format attribute: an assertion without a message passes "". */
static void shm_crit_report(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: %s failed: %s\n", file, line, fatal ? "assertion" : "expectation",
            expr);
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    shm_crit_failed = true;
    if (fatal)
        _exit(1);
}

#define SHM_CRIT_CHECK(fatal, cond, expr, ...)                                  \
    do {                                                                        \
        if (!(cond))                                                            \
            shm_crit_report(fatal, __FILE__, __LINE__, expr, "" __VA_ARGS__);   \
    } while (0)

static inline bool shm_crit_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

#define cr_assert(c, ...) SHM_CRIT_CHECK(true, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...) SHM_CRIT_CHECK(false, (c), #c, __VA_ARGS__)
#define cr_expect_not(c, ...) SHM_CRIT_CHECK(false, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) SHM_CRIT_CHECK(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) SHM_CRIT_CHECK(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) SHM_CRIT_CHECK(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) SHM_CRIT_CHECK(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) SHM_CRIT_CHECK(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) SHM_CRIT_CHECK(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) SHM_CRIT_CHECK(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) SHM_CRIT_CHECK(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_not_null(p, ...) SHM_CRIT_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) SHM_CRIT_CHECK(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)                                             \
    SHM_CRIT_CHECK(false, shm_crit_streq((a), (b)), #a " == " #b, __VA_ARGS__)

static int shm_crit_run(const shm_crit_test_t *t, unsigned timeout)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        alarm(timeout); /* default SIGALRM action ends the child: a timeout */
        t->fn();
        fflush(NULL);
        _exit(shm_crit_failed ? 1 : 0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("[PASS] %s::%s\n", t->suite, t->name);
        return 0;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        printf("[FAIL] %s::%s: timed out after %u s\n", t->suite, t->name, timeout);
    else if (WIFSIGNALED(st))
        printf("[FAIL] %s::%s: crashed (signal %d)\n", t->suite, t->name, WTERMSIG(st));
    else
        printf("[FAIL] %s::%s\n", t->suite, t->name);
    return 1;
}

int main(int argc, char **argv)
{
    unsigned timeout = 60;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            i++; /* ignored: tests run one at a time */
    }
    int failed = 0, ran = 0;
    for (int i = 0; i < shm_crit_count; i++) {
        char full[256];
        snprintf(full, sizeof(full), "%s/%s", shm_crit_tests[i].suite, shm_crit_tests[i].name);
        if (filter && fnmatch(filter, full, 0) != 0)
            continue;
        ran++;
        failed += shm_crit_run(&shm_crit_tests[i], timeout) != 0;
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", ran, ran - failed, failed);
    return failed ? 1 : 0;
}

#endif
