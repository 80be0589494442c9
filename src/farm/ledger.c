/* ferry farm: the employer's ledger in SQLite. Tuned for a night's batch of
 * 10^3..10^5 tasks with a few state changes each: prepared statements, one
 * autocommit transaction per change (WAL makes each a cheap append), and a
 * reader (`employer status`) never blocks the writer. */
#include "farm_internal.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  Q_GET, Q_PUT, Q_TOUCH, Q_ASSIGN, Q_SENT, Q_DONE, Q_RETRY, Q_FAIL, Q_RESUME, Q_COUNTS,
  Q_EACH, Q_EACH_STATE, Q_N
};

static const char *const SQL[Q_N] = {
  [Q_GET] = "SELECT task_id, chunk_file, size, mtime_ns, hash, employee_id, employee_ip,"
            " assigned_time, is_sent, is_completed, completed_time, retry_count, attempts,"
            " state, last_error FROM tasks WHERE task_id = ?1",
  [Q_PUT] = "INSERT INTO tasks(task_id, chunk_file, size, mtime_ns, hash) VALUES(?1,?2,?3,?4,?5)"
            " ON CONFLICT(task_id) DO UPDATE SET chunk_file=?2, size=?3, mtime_ns=?4, hash=?5,"
            " employee_id='', employee_ip='', assigned_time=0, is_sent=0, is_completed=0,"
            " completed_time=0, retry_count=0, attempts=0, state=0, last_error=''",
  [Q_TOUCH] = "UPDATE tasks SET mtime_ns=?2 WHERE task_id=?1",
  [Q_ASSIGN] = "UPDATE tasks SET state=1, employee_id=?2, employee_ip=?3, assigned_time=?4,"
               " is_sent=0, attempts=attempts+1 WHERE task_id=?1",
  [Q_SENT] = "UPDATE tasks SET is_sent=1 WHERE task_id=?1",
  [Q_DONE] = "UPDATE tasks SET state=2, is_completed=1, completed_time=?2, last_error=''"
             " WHERE task_id=?1",
  [Q_RETRY] = "UPDATE tasks SET state=0, retry_count=retry_count+1, last_error=?2"
              " WHERE task_id=?1 AND state<>2",
  [Q_FAIL] = "UPDATE tasks SET state=3, last_error=?2 WHERE task_id=?1 AND state<>2",
  [Q_RESUME] = "UPDATE tasks SET state=0, is_sent=0 WHERE state=1",
  [Q_COUNTS] = "SELECT state, count(*) FROM tasks GROUP BY state",
  [Q_EACH] = "SELECT task_id FROM tasks ORDER BY task_id",
  [Q_EACH_STATE] = "SELECT task_id FROM tasks WHERE state=?1 ORDER BY task_id",
};

struct ffarm_ledger {
  sqlite3 *db;               /* the connection */
  sqlite3_stmt *q[Q_N];      /* prepared statements */
};

const char *ffarm_state_name(ffarm_state_t s) {
  switch (s) {
  case FFARM_S_PENDING: return "pending";
  case FFARM_S_ASSIGNED: return "assigned";
  case FFARM_S_DONE: return "done";
  case FFARM_S_FAILED: return "failed";
  default: return "?";
  }
}

static int db_err(ffarm_ledger_t *l, const char *what) {
  fprintf(stderr, "ledger: %s: %s\n", what, sqlite3_errmsg(l->db));
  return -EIO;
}

int ffarm_ledger_open(ffarm_ledger_t **out, const char *path) {
  ffarm_ledger_t *l = calloc(1, sizeof(*l));
  if (!l) return -ENOMEM;
  if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
    fprintf(stderr, "ledger: open %s: %s\n", path, l->db ? sqlite3_errmsg(l->db) : "no memory");
    ffarm_ledger_close(l);
    return -EIO;
  }
  sqlite3_busy_timeout(l->db, 5000);
  const char *schema =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS tasks("
      " task_id TEXT PRIMARY KEY, chunk_file TEXT NOT NULL, size INTEGER NOT NULL,"
      " mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,"
      " employee_id TEXT NOT NULL DEFAULT '', employee_ip TEXT NOT NULL DEFAULT '',"
      " assigned_time INTEGER NOT NULL DEFAULT 0, is_sent INTEGER NOT NULL DEFAULT 0,"
      " is_completed INTEGER NOT NULL DEFAULT 0, completed_time INTEGER NOT NULL DEFAULT 0,"
      " retry_count INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
      " state INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '');";
  if (sqlite3_exec(l->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
    db_err(l, "schema");
    ffarm_ledger_close(l);
    return -EIO;
  }
  for (int i = 0; i < Q_N; i++) {
    if (sqlite3_prepare_v3(l->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &l->q[i], NULL) !=
        SQLITE_OK) {
      db_err(l, SQL[i]);
      ffarm_ledger_close(l);
      return -EIO;
    }
  }
  *out = l;
  return 0;
}

void ffarm_ledger_close(ffarm_ledger_t *l) {
  if (!l) return;
  for (int i = 0; i < Q_N; i++) sqlite3_finalize(l->q[i]);
  sqlite3_close(l->db);
  free(l);
}

static void copy_col(sqlite3_stmt *s, int col, char *dst, size_t cap) {
  const unsigned char *t = sqlite3_column_text(s, col);
  snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int ffarm_ledger_get(ffarm_ledger_t *l, const char *id, ffarm_task_row_t *r) {
  sqlite3_stmt *s = l->q[Q_GET];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    memset(r, 0, sizeof(*r));
    copy_col(s, 0, r->task_id, sizeof(r->task_id));
    copy_col(s, 1, r->chunk_file, sizeof(r->chunk_file));
    r->size = (uint64_t)sqlite3_column_int64(s, 2);
    r->mtime_ns = sqlite3_column_int64(s, 3);
    copy_col(s, 4, r->hash, sizeof(r->hash));
    copy_col(s, 5, r->employee_id, sizeof(r->employee_id));
    copy_col(s, 6, r->employee_ip, sizeof(r->employee_ip));
    r->assigned_time = sqlite3_column_int64(s, 7);
    r->is_sent = sqlite3_column_int(s, 8) != 0;
    r->is_completed = sqlite3_column_int(s, 9) != 0;
    r->completed_time = sqlite3_column_int64(s, 10);
    r->retry_count = (uint32_t)sqlite3_column_int(s, 11);
    r->attempts = (uint32_t)sqlite3_column_int(s, 12);
    r->state = (ffarm_state_t)sqlite3_column_int(s, 13);
    copy_col(s, 14, r->last_error, sizeof(r->last_error));
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (rc == SQLITE_ROW) return 0;
  if (rc == SQLITE_DONE) return -ENOENT;
  return db_err(l, "get");
}

/* Runs a prepared update; -ENOENT when it changed no row. */
static int run_update(ffarm_ledger_t *l, sqlite3_stmt *s, const char *what) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (rc != SQLITE_DONE) return db_err(l, what);
  return sqlite3_changes(l->db) > 0 ? 0 : -ENOENT;
}

int ffarm_ledger_put(ffarm_ledger_t *l, const char *id, const char *chunk_file, uint64_t size,
                     int64_t mtime_ns, const char *hash) {
  if (!ffarm_id_valid(id, strlen(id))) return -EINVAL;
  sqlite3_stmt *s = l->q[Q_PUT];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, chunk_file, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, (sqlite3_int64)size);
  sqlite3_bind_int64(s, 4, mtime_ns);
  sqlite3_bind_text(s, 5, hash, -1, SQLITE_STATIC);
  return run_update(l, s, "put");
}

int ffarm_ledger_touch(ffarm_ledger_t *l, const char *id, int64_t mtime_ns) {
  sqlite3_stmt *s = l->q[Q_TOUCH];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, mtime_ns);
  return run_update(l, s, "touch");
}

int ffarm_ledger_assign(ffarm_ledger_t *l, const char *id, const char *employee_id,
                        const char *employee_ip, int64_t now_ms) {
  sqlite3_stmt *s = l->q[Q_ASSIGN];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, employee_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 3, employee_ip, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 4, now_ms);
  return run_update(l, s, "assign");
}

int ffarm_ledger_sent(ffarm_ledger_t *l, const char *id) {
  sqlite3_stmt *s = l->q[Q_SENT];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  return run_update(l, s, "sent");
}

int ffarm_ledger_done(ffarm_ledger_t *l, const char *id, int64_t now_ms) {
  sqlite3_stmt *s = l->q[Q_DONE];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, now_ms);
  return run_update(l, s, "done");
}

static int with_error(ffarm_ledger_t *l, int q, const char *id, const char *error,
                      const char *what) {
  sqlite3_stmt *s = l->q[q];
  sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, error ? error : "", -1, SQLITE_STATIC);
  return run_update(l, s, what);
}

int ffarm_ledger_retry(ffarm_ledger_t *l, const char *id, const char *error) {
  return with_error(l, Q_RETRY, id, error, "retry");
}

int ffarm_ledger_fail(ffarm_ledger_t *l, const char *id, const char *error) {
  return with_error(l, Q_FAIL, id, error, "fail");
}

int ffarm_ledger_resume(ffarm_ledger_t *l) {
  int rc = run_update(l, l->q[Q_RESUME], "resume");
  if (rc == -ENOENT) return 0;
  if (rc < 0) return rc;
  return sqlite3_changes(l->db);
}

int ffarm_ledger_counts(ffarm_ledger_t *l, uint64_t counts[FFARM_S_COUNT]) {
  memset(counts, 0, sizeof(uint64_t) * FFARM_S_COUNT);
  sqlite3_stmt *s = l->q[Q_COUNTS];
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    int st = sqlite3_column_int(s, 0);
    if (st >= 0 && st < FFARM_S_COUNT) counts[st] = (uint64_t)sqlite3_column_int64(s, 1);
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : db_err(l, "counts");
}

int ffarm_ledger_each(ffarm_ledger_t *l, int state,
                      int (*fn)(const ffarm_task_row_t *row, void *arg), void *arg) {
  /* ids first (a separate statement), then one get per row: fn may change
   * the ledger while we iterate */
  sqlite3_stmt *s = state < 0 ? l->q[Q_EACH] : l->q[Q_EACH_STATE];
  if (state >= 0) sqlite3_bind_int(s, 1, state);
  size_t n = 0, cap = 0;
  char (*ids)[FFARM_ID_MAX + 1] = NULL;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      void *p = realloc(ids, ncap * sizeof(*ids));
      if (!p) {
        sqlite3_reset(s);
        free(ids);
        return -ENOMEM;
      }
      ids = p;
      cap = ncap;
    }
    copy_col(s, 0, ids[n], sizeof(ids[n]));
    n++;
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (rc != SQLITE_DONE) {
    free(ids);
    return db_err(l, "each");
  }
  int ret = 0;
  ffarm_task_row_t *row = malloc(sizeof(*row));
  if (!row) {
    free(ids);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n && ret == 0; i++) {
    if (ffarm_ledger_get(l, ids[i], row) == 0) ret = fn(row, arg);
  }
  free(row);
  free(ids);
  return ret;
}
