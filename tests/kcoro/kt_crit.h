/* kt_crit.h: the subset of Criterion the kcoro tests use, for the one build
 * where Criterion cannot run: ThreadSanitizer. Criterion's sandbox (BoxFort)
 * maps its shared arena at random fixed addresses that fall in TSan's shadow
 * and protected ranges, so every Criterion binary built with -fsanitize=thread
 * aborts at start ("Could not initialize inheritable arena", Criterion issue
 * #274) or crashes in the re-executed child.
 *
 * Same test sources, same command line (--timeout N; other Criterion options
 * are accepted and ignored, --filter takes a glob on suite/name). Each test
 * runs in a forked child with an alarm at the timeout; the binary exits 1 if
 * any test failed, crashed or timed out. Selected by KT_NO_CRITERION.
 */
#ifndef FERRY_TESTS_KT_CRIT_H
#define FERRY_TESTS_KT_CRIT_H

#include <fnmatch.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*kt_test_fn)(void);

struct kt_test {
    const char *suite; /* first argument of Test()  */
    const char *name;  /* second argument of Test() */
    kt_test_fn fn;     /* body                       */
};

#define KT_MAX_TESTS 256
static struct kt_test kt_tests[KT_MAX_TESTS];
static int kt_ntests;

static void kt_register(const char *suite, const char *name, kt_test_fn fn)
{
    if (kt_ntests == KT_MAX_TESTS) {
        fprintf(stderr, "kt_crit: more than %d tests\n", KT_MAX_TESTS);
        abort();
    }
    kt_tests[kt_ntests++] = (struct kt_test){ suite, name, fn };
}

#define Test(suite, name, ...)                                                  \
    static void kt_t_##suite##_##name(void);                                    \
    __attribute__((constructor)) static void kt_r_##suite##_##name(void)        \
    {                                                                           \
        kt_register(#suite, #name, kt_t_##suite##_##name);                      \
    }                                                                           \
    static void kt_t_##suite##_##name(void)

/* Reports a failed assertion and ends the test (the forked child). */
static void kt_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fflush(stderr);
    _exit(1);
}

__attribute__((unused)) static void kt_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[LOG ] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The optional message is a string literal: "" glues onto it, or stands alone. */
#define cr_assert(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond))                                                            \
            kt_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                 \
    } while (0)
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_fail(...) kt_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) cr_assert(fabs((a) - (b)) <= (eps), __VA_ARGS__)
#define cr_log_info(...) kt_log(__VA_ARGS__)

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
    for (int i = 0; i < kt_ntests; i++) {
        const struct kt_test *t = &kt_tests[i];
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (filter && fnmatch(filter, full, 0) != 0)
            continue;
        run++;
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            alarm((unsigned)(timeout > 0 ? timeout : 60));
            t->fn();
            exit(0); /* exit, not _exit: sanitizers report from their exit hooks */
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0) {
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
            continue;
        }
        failed++;
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
            fprintf(stderr, "[FAIL] %s::%s: timed out after %ld s\n", t->suite, t->name, timeout);
        else if (WIFSIGNALED(st))
            fprintf(stderr, "[FAIL] %s::%s: CRASH (signal %d)\n", t->suite, t->name,
                    WTERMSIG(st));
        else
            fprintf(stderr, "[FAIL] %s::%s: exit status %d\n", t->suite, t->name,
                    WEXITSTATUS(st));
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", run,
            run - failed, failed);
    return failed ? 1 : 0;
}

#endif /* FERRY_TESTS_KT_CRIT_H */
