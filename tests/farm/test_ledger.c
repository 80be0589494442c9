/* farm ledger: state changes, resume after a crash (a child killed with
 * SIGKILL mid-run), a changed chunk becomes a new task, WAL mode. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferry/farm.h"

static char path[128];

static void setup(void) {
  snprintf(path, sizeof(path), "/tmp/ffarm-ledger-%d.db", (int)getpid());
  unlink(path);
}
static void teardown(void) {
  char p[160];
  unlink(path);
  snprintf(p, sizeof(p), "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof(p), "%s-shm", path);
  unlink(p);
}

static const char H1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char H2[] = "2222222222222222222222222222222222222222222222222222222222222222";

Test(ledger, lifecycle, .init = setup, .fini = teardown) {
  ffarm_ledger_t *l;
  cr_assert_eq(ffarm_ledger_open(&l, path), 0);
  ffarm_task_row_t r;
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), -ENOENT);
  cr_assert_eq(ffarm_ledger_put(l, "a.json", "/d/a.json", 10, 5, H1), 0);
  cr_assert_eq(ffarm_ledger_put(l, "b.json", "/d/b.json", 20, 6, H2), 0);
  cr_assert_eq(ffarm_ledger_put(l, "../x", "/d/x", 1, 1, H1), -EINVAL);
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_PENDING);
  cr_assert_eq(r.size, 10);
  cr_assert_str_eq(r.hash, H1);
  cr_assert_eq(ffarm_ledger_assign(l, "a.json", "emp1", "10.0.0.2", 1000), 0);
  cr_assert_eq(ffarm_ledger_sent(l, "a.json"), 0);
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_ASSIGNED);
  cr_assert(r.is_sent);
  cr_assert_eq(r.attempts, 1);
  cr_assert_str_eq(r.employee_id, "emp1");
  cr_assert_str_eq(r.employee_ip, "10.0.0.2");
  cr_assert_eq(r.assigned_time, 1000);
  cr_assert_eq(ffarm_ledger_retry(l, "a.json", "employee lost"), 0);
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_PENDING);
  cr_assert_eq(r.retry_count, 1);
  cr_assert_str_eq(r.last_error, "employee lost");
  cr_assert_eq(ffarm_ledger_assign(l, "a.json", "emp2", "10.0.0.3", 2000), 0);
  cr_assert_eq(ffarm_ledger_done(l, "a.json", 3000), 0);
  /* a late failure report never undoes a done task */
  cr_assert_eq(ffarm_ledger_fail(l, "a.json", "late"), -ENOENT);
  cr_assert_eq(ffarm_ledger_retry(l, "a.json", "late"), -ENOENT);
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_DONE);
  cr_assert(r.is_completed);
  cr_assert_eq(r.completed_time, 3000);
  cr_assert_eq(r.attempts, 2);
  cr_assert_eq(ffarm_ledger_fail(l, "b.json", "time limit (10 s)"), 0);
  uint64_t c[FFARM_S_COUNT];
  cr_assert_eq(ffarm_ledger_counts(l, c), 0);
  cr_assert_eq(c[FFARM_S_DONE], 1);
  cr_assert_eq(c[FFARM_S_FAILED], 1);
  cr_assert_eq(c[FFARM_S_PENDING], 0);
  cr_assert_eq(ffarm_ledger_assign(l, "nope", "e", "ip", 1), -ENOENT);
  ffarm_ledger_close(l);
  ffarm_ledger_close(NULL);
}

Test(ledger, changed_chunk_is_new_task, .init = setup, .fini = teardown) {
  ffarm_ledger_t *l;
  cr_assert_eq(ffarm_ledger_open(&l, path), 0);
  cr_assert_eq(ffarm_ledger_put(l, "a.json", "/d/a.json", 10, 5, H1), 0);
  cr_assert_eq(ffarm_ledger_assign(l, "a.json", "e", "ip", 1), 0);
  cr_assert_eq(ffarm_ledger_done(l, "a.json", 2), 0);
  cr_assert_eq(ffarm_ledger_touch(l, "a.json", 9), 0);
  ffarm_task_row_t r;
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_DONE);
  cr_assert_eq(r.mtime_ns, 9);
  cr_assert_eq(ffarm_ledger_put(l, "a.json", "/d/a.json", 11, 10, H2), 0);
  cr_assert_eq(ffarm_ledger_get(l, "a.json", &r), 0);
  cr_assert_eq(r.state, FFARM_S_PENDING);
  cr_assert_eq(r.attempts, 0);
  cr_assert_not(r.is_completed);
  cr_assert_str_eq(r.hash, H2);
  ffarm_ledger_close(l);
}

static int collect(const ffarm_task_row_t *row, void *arg) {
  char *s = arg;
  strcat(s, row->task_id);
  strcat(s, ",");
  return 0;
}

Test(ledger, resume_after_kill, .init = setup, .fini = teardown) {
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    ffarm_ledger_t *l;
    if (ffarm_ledger_open(&l, path) != 0) _exit(2);
    char id[32];
    for (int i = 0; i < 20; i++) {
      snprintf(id, sizeof(id), "t%02d.json", i);
      ffarm_ledger_put(l, id, id, 1, 1, H1);
    }
    for (int i = 0; i < 10; i++) {
      snprintf(id, sizeof(id), "t%02d.json", i);
      ffarm_ledger_assign(l, id, "e", "ip", 1);
      if (i < 6) ffarm_ledger_done(l, id, 2);
    }
    raise(SIGKILL);  /* no close, no checkpoint */
    _exit(3);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  ffarm_ledger_t *l;
  cr_assert_eq(ffarm_ledger_open(&l, path), 0);
  uint64_t c[FFARM_S_COUNT];
  ffarm_ledger_counts(l, c);
  cr_assert_eq(c[FFARM_S_DONE], 6);
  cr_assert_eq(c[FFARM_S_ASSIGNED], 4);
  cr_assert_eq(c[FFARM_S_PENDING], 10);
  cr_assert_eq(ffarm_ledger_resume(l), 4);
  ffarm_ledger_counts(l, c);
  cr_assert_eq(c[FFARM_S_DONE], 6);
  cr_assert_eq(c[FFARM_S_ASSIGNED], 0);
  cr_assert_eq(c[FFARM_S_PENDING], 14);
  char *s = calloc(1, 4096);
  cr_assert_eq(ffarm_ledger_each(l, FFARM_S_DONE, collect, s), 0);
  cr_assert_str_eq(s, "t00.json,t01.json,t02.json,t03.json,t04.json,t05.json,");
  s[0] = 0;
  ffarm_ledger_each(l, -1, collect, s);
  cr_assert_eq(strlen(s), 20 * 9);
  free(s);
  ffarm_ledger_close(l);
  /* the journal is WAL */
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *q;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
  cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
  cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "wal");
  sqlite3_finalize(q);
  sqlite3_close(db);
}

Test(ledger, open_failure, .init = setup, .fini = teardown) {
  ffarm_ledger_t *l = NULL;
  cr_assert_eq(ffarm_ledger_open(&l, "/nonexistent-dir/x/ledger.db"), -EIO);
  cr_assert_null(l);
}
