/* A stand-in for the part of Criterion our tests use, for the one build
 * where Criterion cannot run: ThreadSanitizer. Criterion's sandbox maps its
 * shared arena at fixed addresses inside TSan's shadow ranges, so every
 * Criterion binary built with -fsanitize=thread aborts at start ("Could not
 * initialize inheritable arena", Criterion issue #274).
 *
 * cmake/FerryTest.cmake puts this folder first on the include path in TSan
 * builds, so test sources keep `#include <criterion/criterion.h>` and build
 * unchanged. Kept: every test runs in its own forked child with a timeout
 * (Test's .timeout, else --timeout N, else 60 s, enforced by alarm());
 * .init/.fini/.disabled; cr_assert_* ends the test, cr_expect_* records and
 * continues; cr_skip_test ends it as skipped; --filter takes a glob on
 * "suite/name"; other options are accepted and ignored. One line per test
 * on stderr: "[PASS] suite::name", "[SKIP] suite::name: why" or
 * "[FAIL] suite::name: why" (after the failed assertions' "[----]" lines).
 * Exit status 1 if any test failed, crashed or timed out. Assertion
 * messages start with a string literal (as all of ours do).
 *
 * The qemu test of the kernel module (tests/kmod) uses it too: linked
 * statically, the Monster suites start at once in the guest, where
 * Criterion re-executes its binary with ~20 shared libraries for every
 * test (about 2 s each under emulation).
 */
#ifndef FERRY_TSAN_CRITERION_H
#define FERRY_TSAN_CRITERION_H

#include <fnmatch.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The Test() options we honour, named as Criterion names them. */
struct ft_opts {
    void (*init)(void);      /* runs before the body, in the child */
    void (*fini)(void);      /* runs after a body that returned    */
    bool disabled;           /* skipped                            */
    double timeout;          /* seconds; 0 = the --timeout default */
    const char *description; /* ignored                            */
    int exit_code;           /* expected exit status of the child  */
    int signal;              /* expected terminating signal        */
};

struct ft_test {
    const char *suite;           /* Test() first argument  */
    const char *name;            /* Test() second argument */
    void (*fn)(void);            /* the body               */
    const struct ft_opts *opts;  /* the options            */
};

#define FT_MAX_TESTS 512
static struct ft_test ft_tests[FT_MAX_TESTS];
static int ft_ntests;
static bool ft_expect_failed; /* a cr_expect failed in this child */
static const struct ft_test *ft_current; /* the test this child runs */
#define FT_SKIP_EXIT 77          /* a child's exit status: skipped */

static void ft_register(const char *suite, const char *name, void (*fn)(void),
                        const struct ft_opts *opts)
{
    if (ft_ntests == FT_MAX_TESTS) {
        fprintf(stderr, "tsan criterion: more than %d tests\n", FT_MAX_TESTS);
        abort();
    }
    ft_tests[ft_ntests++] = (struct ft_test){suite, name, fn, opts};
}

#define Test(suite, name, ...)                                                          \
    static void ft_t_##suite##_##name(void);                                            \
    static const struct ft_opts ft_o_##suite##_##name = {__VA_ARGS__};                  \
    __attribute__((constructor)) static void ft_r_##suite##_##name(void)                \
    {                                                                                   \
        ft_register(#suite, #name, ft_t_##suite##_##name, &ft_o_##suite##_##name);      \
    }                                                                                   \
    static void ft_t_##suite##_##name(void)

static void ft_report(const char *file, int line, const char *expr, const char *fmt,
                      va_list ap)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
    if (fmt && *fmt) {
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    fflush(stderr);
}

__attribute__((unused)) static void ft_fail(bool fatal, const char *file, int line,
                                            const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ft_report(file, line, expr, fmt, ap);
    va_end(ap);
    if (fatal)
        exit(1); /* exit, not _exit: sanitizers report from their exit hooks */
    ft_expect_failed = true;
}

__attribute__((unused)) static void ft_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[LOG ] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The optional message is a string literal: "" glues onto it, or stands alone. */
#define FT_CHECK(fatal, cond, ...)                                                      \
    do {                                                                                \
        if (!(cond))                                                                    \
            ft_fail(fatal, __FILE__, __LINE__, #cond, "" __VA_ARGS__);                  \
    } while (0)

#define cr_assert(cond, ...) FT_CHECK(true, cond, __VA_ARGS__)
#define cr_expect(cond, ...) FT_CHECK(false, cond, __VA_ARGS__)
#define cr_assert_fail(...) ft_fail(true, __FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_expect_fail(...) ft_fail(false, __FILE__, __LINE__, "cr_expect_fail", "" __VA_ARGS__)
#define cr_log_info(...) ft_log(__VA_ARGS__)
#define cr_log_warn(...) ft_log(__VA_ARGS__)
/* Ends the test as skipped, the reason on its result line. */
#define cr_skip_test(...)                                                               \
    do {                                                                                \
        fprintf(stderr, "[SKIP] %s::%s: ", ft_current->suite, ft_current->name);        \
        fprintf(stderr, __VA_ARGS__);                                                   \
        fputc('\n', stderr);                                                            \
        exit(FT_SKIP_EXIT);                                                             \
    } while (0)

#define cr_assert_not(c, ...) cr_assert(!(c), __VA_ARGS__)
#define cr_expect_not(c, ...) cr_expect(!(c), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_expect((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_expect_neq(a, b, ...) cr_expect((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_expect_lt(a, b, ...) cr_expect((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_expect_leq(a, b, ...) cr_expect((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...) cr_expect((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) cr_expect((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_expect_null(p, ...) cr_expect((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_expect_not_null(p, ...) cr_expect((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_expect(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) cr_expect(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) cr_assert(memcmp((a), (b), (n)) == 0, __VA_ARGS__)
#define cr_expect_arr_eq(a, b, n, ...) cr_expect(memcmp((a), (b), (n)) == 0, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) cr_assert(fabs((a) - (b)) <= (eps), __VA_ARGS__)
#define cr_expect_float_eq(a, b, eps, ...) cr_expect(fabs((a) - (b)) <= (eps), __VA_ARGS__)

/* Runs one test in a child: 0 passed, 1 failed, 2 skipped (the child said why). */
static int ft_run(const struct ft_test *t, long default_timeout)
{
    double tmo = t->opts->timeout > 0 ? t->opts->timeout : (double)default_timeout;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        ft_current = t;
        alarm((unsigned)(tmo > 1 ? tmo + 0.5 : 1));
        if (t->opts->init)
            t->opts->init();
        t->fn();
        if (t->opts->fini)
            t->opts->fini();
        exit(ft_expect_failed ? 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
    }
    int want_sig = t->opts->signal, want_code = t->opts->exit_code;
    if (want_sig && WIFSIGNALED(st) && WTERMSIG(st) == want_sig)
        return 0;
    if (!want_sig && WIFEXITED(st) && WEXITSTATUS(st) == want_code)
        return 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == FT_SKIP_EXIT)
        return 2;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        fprintf(stderr, "[FAIL] %s::%s: timed out after %.0f s\n", t->suite, t->name, tmo);
    else if (WIFSIGNALED(st))
        fprintf(stderr, "[FAIL] %s::%s: CRASH (signal %d)\n", t->suite, t->name, WTERMSIG(st));
    else
        fprintf(stderr, "[FAIL] %s::%s: exit status %d\n", t->suite, t->name, WEXITSTATUS(st));
    return 1;
}

int main(int argc, char **argv)
{
    long timeout = 60;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = atol(argv[++i]);
        else if (strncmp(argv[i], "--timeout=", 10) == 0)
            timeout = atol(argv[i] + 10);
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
    }
    int run = 0, failed = 0;
    for (int i = 0; i < ft_ntests; i++) {
        const struct ft_test *t = &ft_tests[i];
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (t->opts->disabled || (filter && fnmatch(filter, full, 0) != 0))
            continue;
        run++;
        int r = ft_run(t, timeout);
        if (r == 0)
            fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
        else if (r == 1)
            failed++;
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", run,
            run - failed, failed);
    return failed ? 1 : 0;
}

#endif /* FERRY_TSAN_CRITERION_H */
