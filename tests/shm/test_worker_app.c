/* The worker program (build/worker) against an in-test server: the built-in
 * handler's answer, bad input, a handler plugin, flags and environment, and
 * clean exits on SIGTERM and on server close. */
#define _GNU_SOURCE
#include "shm_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

static fshm_server_t *open_srv(char *name, size_t size, const char *tag)
{
    fshm_config_t cfg;
    fshm_config_default(&cfg);
    cfg.name = shm_test_name(name, size, tag);
    cfg.ring_slots = 16;
    cfg.payload_max = 4096;
    cfg.heartbeat_ms = 100;
    fshm_server_t *srv;
    cr_assert_eq(fshm_server_open(&srv, &cfg), 0, "%s", fshm_last_error());
    return srv;
}

/* Starts build/worker with args (NULL-terminated, after argv[0]); env_name
 * non-NULL sets FERRY_SHM_NAME. */
static pid_t run_worker(const char *const *args, const char *env_name)
{
    char *argv[16] = {(char *)FERRY_WORKER_BIN};
    int n = 1;
    for (; args && args[n - 1] && n < 15; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    char **envp = environ;
    char *env2[64];
    char envbuf[80];
    if (env_name) {
        int k = 0;
        for (char **e = environ; *e && k < 62; e++)
            if (strncmp(*e, "FERRY_SHM_NAME=", 15) != 0)
                env2[k++] = *e;
        snprintf(envbuf, sizeof(envbuf), "FERRY_SHM_NAME=%s", env_name);
        env2[k++] = envbuf;
        env2[k] = NULL;
        envp = env2;
    }
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, FERRY_WORKER_BIN, NULL, NULL, argv, envp), 0);
    return pid;
}

static void wait_live(fshm_server_t *srv, uint32_t n)
{
    fshm_stats_t st;
    for (;;) {
        fshm_server_stats(srv, &st);
        if (st.workers_live >= n)
            return;
        fshm_server_wait(srv, 50);
        fshm_server_check_workers(srv);
    }
}

static shm_done_t ask(fshm_server_t *srv, const char *req)
{
    uint64_t id;
    cr_assert_eq(fshm_server_submit(srv, req, strlen(req), &id), 0);
    shm_sink_t sink = {0};
    shm_sink_wait(srv, &sink, 1);
    cr_assert_eq(sink.items[0].task_id, id);
    return sink.items[0];
}

static int exit_status(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "worker did not exit normally (signal %d)",
              WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no log at %s", path);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(worker_app, default_handler_reverses_and_rejects_bad_input, .timeout = 30)
{
    char name[40], log[96];
    fshm_server_t *srv = open_srv(name, sizeof(name), "def");
    snprintf(log, sizeof(log), "/tmp/ferry-test-%s.log", name);
    unlink(log);
    const char *args[] = {"--name", name, "--log", log, NULL};
    pid_t pid = run_worker(args, NULL);
    wait_live(srv, 1);

    shm_done_t d = ask(srv, "{\"message\":\"hello\"}");
    cr_expect_eq(d.status, 0);
    json_t *v = json_loads(d.resp, 0, NULL);
    cr_assert_not_null(v, "answer is JSON: %s", d.resp);
    cr_expect_str_eq(json_string_value(json_object_get(v, "result")), "olleh");
    cr_expect_eq(json_integer_value(json_object_get(v, "worker")), pid);
    json_decref(v);

    d = ask(srv, "{\"message\":\"h\\u00e9llo \\u2192\"}"); /* "héllo →" */
    v = json_loads(d.resp, 0, NULL);
    cr_assert_not_null(v);
    cr_expect_str_eq(json_string_value(json_object_get(v, "result")), "\xe2\x86\x92 oll\xc3\xa9h",
                     "reversed by code point, still valid UTF-8");
    json_decref(v);

    d = ask(srv, "{\"message\": tru");
    cr_expect_eq(d.status, -EINVAL);
    v = json_loads(d.resp, 0, NULL);
    cr_assert_not_null(v, "error text is JSON: %s", d.resp);
    cr_expect(strstr(json_string_value(json_object_get(v, "error")), "invalid JSON") != NULL);
    json_decref(v);

    d = ask(srv, "{\"text\":\"x\"}");
    cr_expect_eq(d.status, -EINVAL);
    cr_expect(strstr(d.resp, "missing \\\"message\\\"") != NULL, "%s", d.resp);
    d = ask(srv, "{\"message\":42}");
    cr_expect_eq(d.status, -EINVAL);
    cr_expect(strstr(d.resp, "must be a string") != NULL, "%s", d.resp);

    kill(pid, SIGTERM);
    cr_expect_eq(exit_status(pid), 0, "SIGTERM is a clean exit");
    const char *text = slurp(log);
    cr_expect(strstr(text, "attach name=") != NULL, "%s", text);
    cr_expect(strstr(text, "status=0") != NULL);
    cr_expect(strstr(text, "status=-22") != NULL);
    cr_expect(strstr(text, "stop reason=signal sig=15") != NULL, "%s", text);
    cr_expect(strstr(text, "exit code=0") != NULL);
    fshm_stats_t st;
    fshm_server_check_workers(srv);
    fshm_server_stats(srv, &st);
    cr_expect_eq(st.workers_live, 0, "detached on exit");
    unlink(log);
    fshm_server_close(srv);
}

Test(worker_app, handler_plugin_and_env_name, .timeout = 30)
{
    char name[40];
    fshm_server_t *srv = open_srv(name, sizeof(name), "plug");
    const char *args[] = {"--handler", FERRY_EXAMPLE_HANDLER, NULL};
    pid_t pid = run_worker(args, name); /* name from FERRY_SHM_NAME */
    wait_live(srv, 1);
    shm_done_t d = ask(srv, "{\"message\":\"Hello, ferry\"}");
    cr_expect_eq(d.status, 0);
    cr_expect_str_eq(d.resp, "{\"result\":\"HELLO, FERRY\",\"handler\":\"example\"}");
    d = ask(srv, "[]");
    cr_expect_eq(d.status, -EINVAL);
    /* Closing the server stops the worker cleanly. */
    fshm_server_close(srv);
    cr_expect_eq(exit_status(pid), 0);
}

Test(worker_app, flags_and_startup_errors, .timeout = 30)
{
    const char *help[] = {"--help", NULL};
    cr_expect_eq(exit_status(run_worker(help, NULL)), 0);
    const char *bad[] = {"--bogus", NULL};
    cr_expect_eq(exit_status(run_worker(bad, NULL)), 2);
    char name[40];
    const char *none[] = {"--name", shm_test_name(name, sizeof(name), "none"), NULL};
    cr_expect_eq(exit_status(run_worker(none, NULL)), 1, "no server: exit 1");
    const char *badname[] = {"--name", "no/slash", NULL};
    cr_expect_eq(exit_status(run_worker(badname, NULL)), 1);
    fshm_server_t *srv = open_srv(name, sizeof(name), "lib");
    const char *nolib[] = {"--name", name, "--handler", "/nonexistent/lib.so", NULL};
    cr_expect_eq(exit_status(run_worker(nolib, NULL)), 1, "bad plugin: exit 1");
    fshm_server_close(srv);
}
