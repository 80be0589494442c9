/* employee: the VolCom worker. Announces itself by authenticated UDP
 * broadcast, accepts employer connections on TCP (authenticated), buffers
 * tasks, runs the employer's script on each chunk in a child process with a
 * wall-time, memory (RLIMIT_AS) and output (RLIMIT_FSIZE) limit, and keeps
 * each result on disk until the employer acknowledges it, re-sending it
 * after a reconnect. Files live in the workdir (0700) under names made from
 * a counter, never from the wire. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/farm.h"

#define TAIL_MAX 4096

typedef enum { T_RECEIVING, T_QUEUED, T_RUNNING, T_HELD } tstate_t;

typedef struct task {
  struct task *next;              /* all tasks (list) */
  tstate_t state;                 /* progress */
  char id[FFARM_ID_MAX + 1];      /* task id (validated) */
  char hash[2 * FFARM_HASH_LEN + 1]; /* chunk hash (the task's identity with id) */
  char script[2 * FFARM_HASH_LEN + 1]; /* script hash */
  bool py;                        /* run with python3 */
  uint64_t seq;                   /* file name counter */
  char in_path[600];              /* workdir/in_<seq> */
  char out_path[600];             /* workdir/out_<seq> */
  uint64_t timeout_ms;            /* wall-time limit */
  uint64_t mem_bytes;             /* RLIMIT_AS */
  uint64_t out_bytes;             /* RLIMIT_FSIZE and result size cap */
  int in_fd;                      /* chunk being received (-1 none) */
  uv_process_t proc;              /* running child */
  uv_pipe_t err_pipe;             /* its stdout+stderr */
  uv_timer_t timer;               /* wall-time limit */
  int handles;                    /* child handles still open */
  bool timed_out;                 /* killed by the timer */
  bool cancelled;                 /* CANCEL received */
  char tail[TAIL_MAX];            /* last output bytes */
  size_t tail_len;                /* bytes in tail */
  uint64_t start_ms;              /* start time */
  /* result */
  bool ok;                        /* script succeeded */
  int64_t exit_status;            /* exit code (-1 none) */
  int term_signal;                /* signal (0 none) */
  char reason[200];               /* failure reason */
  uint64_t runtime_ms;            /* run time */
  bool sending;                   /* result queued on the current conn */
} task_t;

static struct {
  uv_loop_t *loop;
  ffarm_key_t key;
  char id[64];
  int port, udp_port;
  char bind[64], bcast[64];
  char workdir[512];
  uint32_t slots;
  uint64_t def_timeout_ms, def_mem, def_out;
  uint32_t announce_ms;
  char self[1024];
  uv_tcp_t server;
  uv_udp_t udp;
  uv_timer_t ann_timer;
  uv_signal_t sigint, sigterm;
  ffarm_conn_t *cur;              /* the employer connection results go to */
  task_t *tasks;
  uint32_t running;
  uint64_t seq;
  uint64_t runs;                  /* scripts started */
  /* incoming script */
  char script_tmp[600];
  char script_hash[2 * FFARM_HASH_LEN + 1];
  int script_fd;                  /* its temp file (-1 none) */
  bool script_in;                 /* the incoming file is a script */
  task_t *receiving;              /* task whose chunk is arriving */
} E;

static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1200];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  fprintf(stderr, "employee %s: %s\n", E.id, buf);
}

static uint64_t now_ms(void) { return uv_now(E.loop); }

static void usage(FILE *f) {
  fprintf(f,
          "usage: employee [options]\n"
          "Runs the employer's script on task chunks sent over an authenticated TCP link.\n"
          "  --port N          TCP port to listen on (default 12345; env FERRY_EMPLOYEE_PORT)\n"
          "  --bind ADDR       address to listen on (default 0.0.0.0)\n"
          "  --udp-port N      UDP port of the announces (default 9876; env FERRY_FARM_UDP_PORT)\n"
          "  --broadcast ADDR  where announces go (default 255.255.255.255; 'none' to stop)\n"
          "  --announce-ms N   announce period (default 1000)\n"
          "  --workdir DIR     files and results, created 0700 (default ./employee-work;\n"
          "                    env FERRY_EMPLOYEE_WORKDIR)\n"
          "  --slots N         tasks run at once (default 3; env FERRY_EMPLOYEE_SLOTS)\n"
          "  --id NAME         employee id (default host-pid)\n"
          "  --time-limit S    wall-time per run unless the employer sets one (default 3600)\n"
          "  --mem-limit MB    RLIMIT_AS per run unless the employer sets one (default 1024)\n"
          "  --out-limit MB    result size limit unless the employer sets one (default 1024)\n"
          "  --secret-file F   shared secret (env FERRY_FARM_SECRET_FILE); required unless\n"
          "  --insecure        everyone with the well-known key may connect (tests only)\n"
          "  --encrypt-data    encrypt file bytes too (default: authenticated, in clear;\n"
          "                    env FERRY_FARM_ENCRYPT_DATA=1; either side asking is enough)\n"
          "  --help\n");
}

/* ---- task list ---------------------------------------------------------------- */

static task_t *find(const char *id, const char *hash) {
  for (task_t *t = E.tasks; t; t = t->next)
    if (strcmp(t->id, id) == 0 && (!hash || strcmp(t->hash, hash) == 0)) return t;
  return NULL;
}

static bool hex64(const char *s);

static void res_path(const task_t *t, char *out, size_t cap) {
  snprintf(out, cap, "%s/res_%llu.json", E.workdir, (unsigned long long)t->seq);
}

static void unlink_task(task_t *t) {
  if (t->in_fd >= 0) close(t->in_fd);
  task_t **pp = &E.tasks;
  while (*pp && *pp != t) pp = &(*pp)->next;
  if (*pp) *pp = t->next;
  char rp[700];
  res_path(t, rp, sizeof(rp));
  unlink(rp);
  unlink(t->in_path);
  unlink(t->out_path);
  free(t);
}

/* A held result survives a restart of the employee: its metadata goes to
 * res_<seq>.json (temp + fsync + rename) next to out_<seq>. */
static void persist_result(task_t *t) {
  char rp[700], tmp[720];
  res_path(t, rp, sizeof(rp));
  snprintf(tmp, sizeof(tmp), "%s.tmp", rp);
  json_t *j = json_pack("{s:s,s:s,s:b,s:I,s:i,s:s,s:I}", "task", t->id, "hash", t->hash, "ok",
                        t->ok, "exit", (json_int_t)t->exit_status, "signal", t->term_signal,
                        "reason", t->reason, "runtime_ms", (json_int_t)t->runtime_ms);
  int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  bool good = fd >= 0 && json_dumpfd(j, fd, JSON_COMPACT) == 0 && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  json_decref(j);
  if (!good || rename(tmp, rp) < 0) {
    unlink(tmp);
    logf_("task %s: result kept in memory only (cannot write %s)", t->id, rp);
  }
}

/* At start: results held before a restart come back; files of runs that
 * never finished are removed (the employer re-offers those tasks). */
static void load_held(void) {
  DIR *d = opendir(E.workdir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    unsigned long long seq;
    char tail[8];
    if (sscanf(de->d_name, "res_%llu.json%7s", &seq, tail) != 1) continue;
    char rp[700];
    snprintf(rp, sizeof(rp), "%s/res_%llu.json", E.workdir, seq);
    json_t *j = json_load_file(rp, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "task"));
    const char *hash = json_string_value(json_object_get(j, "hash"));
    const char *reason = json_string_value(json_object_get(j, "reason"));
    task_t *t = calloc(1, sizeof(*t));
    if (!t || !id || !hex64(hash) || !ffarm_id_valid(id, strlen(id)) || find(id, hash)) {
      free(t);
      json_decref(j);
      unlink(rp);
      continue;
    }
    t->in_fd = -1;
    t->seq = seq;
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->hash, sizeof(t->hash), "%s", hash);
    snprintf(t->reason, sizeof(t->reason), "%s", reason ? reason : "");
    t->ok = json_is_true(json_object_get(j, "ok"));
    t->exit_status = json_integer_value(json_object_get(j, "exit"));
    t->term_signal = (int)json_integer_value(json_object_get(j, "signal"));
    t->runtime_ms = (uint64_t)json_integer_value(json_object_get(j, "runtime_ms"));
    snprintf(t->in_path, sizeof(t->in_path), "%s/in_%llu", E.workdir, seq);
    snprintf(t->out_path, sizeof(t->out_path), "%s/out_%llu", E.workdir, seq);
    t->state = T_HELD;
    t->next = E.tasks;
    E.tasks = t;
    if (seq > E.seq) E.seq = seq;
    json_decref(j);
  }
  rewinddir(d);
  while ((de = readdir(d))) {
    unsigned long long seq;
    char kind[4];
    if (sscanf(de->d_name, "%3[inout]_%llu", kind, &seq) != 2) continue;
    if (seq > E.seq) E.seq = seq;
    bool held = false;
    for (task_t *t = E.tasks; t; t = t->next)
      if (t->seq == seq) held = true;
    if (held && strcmp(kind, "out") == 0) continue;
    char p[800];
    snprintf(p, sizeof(p), "%s/%.300s", E.workdir, de->d_name);
    unlink(p);
  }
  closedir(d);
  unsigned n = 0;
  for (task_t *t = E.tasks; t; t = t->next) n++;
  if (n) logf_("%u results held from before a restart", n);
}

static bool hex64(const char *s) {
  if (!s || strlen(s) != 2 * FFARM_HASH_LEN) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

/* ---- results ------------------------------------------------------------------- */

static void send_result(task_t *t) {
  if (!E.cur || !ffarm_conn_ready(E.cur) || t->sending) return;
  int fd = open(t->ok ? t->out_path : "/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    t->ok = false;
    snprintf(t->reason, sizeof(t->reason), "result file unreadable: %s", strerror(errno));
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  json_t *j = json_pack("{s:s,s:b,s:I,s:i,s:s,s:I,s:s}", "hash", t->hash, "ok", t->ok,
                        "exit", (json_int_t)t->exit_status, "signal", t->term_signal, "reason",
                        t->reason, "runtime_ms", (json_int_t)t->runtime_ms, "employee", E.id);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (s && ffarm_conn_send_file(E.cur, FFARM_T_RESULT, t->id, s, fd, 0, NULL) == 0) {
    t->sending = true;
  } else {
    close(fd);
  }
  free(s);
}

static void resend_all(void) {
  for (task_t *t = E.tasks; t; t = t->next)
    if (t->state == T_HELD) send_result(t);
}

/* ---- running ---------------------------------------------------------------------- */

static void start_more(void);

static void child_handle_closed(uv_handle_t *h) {
  task_t *t = h->data;
  if (--t->handles > 0) return;
  E.running--;
  if (t->cancelled) {
    logf_("task %s cancelled", t->id);
    unlink_task(t);
  } else {
    t->state = T_HELD;
    unlink(t->in_path);
    if (!t->ok) logf_("task %s failed: %s", t->id, t->reason);
    persist_result(t);
    send_result(t);
  }
  start_more();
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  task_t *t = p->data;
  t->runtime_ms = now_ms() - t->start_ms;
  t->exit_status = status;
  t->term_signal = sig;
  uv_timer_stop(&t->timer);
  struct stat st;
  bool mem = t->tail_len > 0 && (memmem(t->tail, t->tail_len, "MemoryError", 11) ||
                                 memmem(t->tail, t->tail_len, "annot allocate memory", 21) ||
                                 memmem(t->tail, t->tail_len, "bad_alloc", 9) ||
                                 memmem(t->tail, t->tail_len, "out of memory", 13));
  if (t->timed_out) {
    snprintf(t->reason, sizeof(t->reason), "time limit (%llu ms)",
             (unsigned long long)t->timeout_ms);
  } else if (sig == SIGXFSZ || (status != 0 && t->tail_len > 0 &&
                                  memmem(t->tail, t->tail_len, "File too large", 14))) {
    snprintf(t->reason, sizeof(t->reason), "output limit (%llu bytes)",
             (unsigned long long)t->out_bytes);
  } else if ((status != 0 || sig != 0) && mem) {
    snprintf(t->reason, sizeof(t->reason), "memory limit (%llu MiB)",
             (unsigned long long)(t->mem_bytes >> 20));
  } else if (sig != 0) {
    snprintf(t->reason, sizeof(t->reason), "killed by signal %d", sig);
  } else if (status != 0) {
    snprintf(t->reason, sizeof(t->reason), "exit status %lld", (long long)status);
  } else if (stat(t->out_path, &st) != 0) {
    snprintf(t->reason, sizeof(t->reason), "script wrote no output file");
  } else if ((uint64_t)st.st_size > t->out_bytes) {
    snprintf(t->reason, sizeof(t->reason), "output limit (%llu bytes)",
             (unsigned long long)t->out_bytes);
  } else {
    t->ok = true;
  }
  if (!t->ok && t->tail_len > 0 && !t->cancelled)
    logf_("task %s output tail: %.*s", t->id, (int)(t->tail_len > 600 ? 600 : t->tail_len),
          t->tail + (t->tail_len > 600 ? t->tail_len - 600 : 0));
  uv_close((uv_handle_t *)p, child_handle_closed);
  uv_close((uv_handle_t *)&t->timer, child_handle_closed);
}

static void on_err_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  static char buf[4096];
  *b = uv_buf_init(buf, sizeof(buf));
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  task_t *t = s->data;
  if (n < 0) {
    uv_close((uv_handle_t *)s, child_handle_closed);
    return;
  }
  /* keep the last TAIL_MAX bytes: the end of a traceback says why */
  for (ssize_t i = 0; i < n; i++) {
    if (t->tail_len == TAIL_MAX) {
      memmove(t->tail, t->tail + TAIL_MAX / 2, TAIL_MAX / 2);
      t->tail_len = TAIL_MAX / 2;
    }
    t->tail[t->tail_len++] = b->base[i];
  }
}

static void on_time_limit(uv_timer_t *tm) {
  task_t *t = tm->data;
  t->timed_out = true;
  uv_kill(-t->proc.pid, SIGKILL);  /* the whole process group */
}

static void run_task(task_t *t) {
  char script[600], asb[32], fsb[32];
  snprintf(script, sizeof(script), "%s/script_%s", E.workdir, t->script);
  snprintf(asb, sizeof(asb), "%llu", (unsigned long long)t->mem_bytes);
  snprintf(fsb, sizeof(fsb), "%llu", (unsigned long long)t->out_bytes);
  char *args[12];
  int n = 0;
  args[n++] = E.self;
  args[n++] = "--run-limited";
  args[n++] = asb;
  args[n++] = fsb;
  args[n++] = "--";
  if (t->py) args[n++] = "python3";
  args[n++] = script;
  args[n++] = t->in_path;
  args[n++] = t->out_path;
  args[n] = NULL;
  uv_pipe_init(E.loop, &t->err_pipe, 0);
  uv_stdio_container_t io[3];
  io[0].flags = UV_IGNORE;
  io[1].flags = UV_IGNORE;  /* stdout: the result goes to the output file */
  io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[2].data.stream = (uv_stream_t *)&t->err_pipe;
  uv_process_options_t o = {0};
  o.file = E.self;
  o.args = args;
  o.cwd = E.workdir;
  o.exit_cb = on_exit_cb;
  o.flags = UV_PROCESS_DETACHED;  /* own process group: the limit kills all of it */
  o.stdio = io;
  o.stdio_count = 3;
  t->proc.data = t;
  t->err_pipe.data = t;
  t->timer.data = t;
  t->start_ms = now_ms();
  t->exit_status = -1;
  unlink(t->out_path);
  int rc = uv_spawn(E.loop, &t->proc, &o);
  if (rc < 0) {
    uv_close((uv_handle_t *)&t->err_pipe, NULL);
    t->state = T_HELD;
    t->ok = false;
    snprintf(t->reason, sizeof(t->reason), "spawn failed: %s", uv_strerror(rc));
    send_result(t);
    return;
  }
  t->state = T_RUNNING;
  t->handles = 3;  /* process, timer, pipe */
  E.running++;
  E.runs++;
  uv_timer_init(E.loop, &t->timer);
  uv_timer_start(&t->timer, on_time_limit, t->timeout_ms, 0);
  uv_read_start((uv_stream_t *)&t->err_pipe, on_err_alloc, on_err_read);
}

static void start_more(void) {
  /* the task buffer: queued tasks in arrival order (list is newest first,
   * so take the last queued one) */
  while (E.running < E.slots) {
    task_t *pick = NULL;
    for (task_t *t = E.tasks; t; t = t->next)
      if (t->state == T_QUEUED) pick = t;
    if (!pick) return;
    run_task(pick);
  }
}

/* The child side of --run-limited: limits, then exec. */
static int run_limited(int argc, char **argv) {
  if (argc < 6 || strcmp(argv[4], "--") != 0) {
    fprintf(stderr, "employee --run-limited AS FSIZE -- PROG ARGS...\n");
    return 127;
  }
  struct rlimit as = {.rlim_cur = strtoull(argv[2], NULL, 10), .rlim_max = 0};
  as.rlim_max = as.rlim_cur;
  struct rlimit fs = {.rlim_cur = strtoull(argv[3], NULL, 10), .rlim_max = 0};
  fs.rlim_max = fs.rlim_cur;
  if (setrlimit(RLIMIT_AS, &as) < 0 || setrlimit(RLIMIT_FSIZE, &fs) < 0) {
    perror("setrlimit");
    return 127;
  }
  signal(SIGXFSZ, SIG_DFL);
  execvp(argv[5], argv + 5);
  fprintf(stderr, "exec %s: %s\n", argv[5], strerror(errno));
  return 127;
}

/* ---- connection ------------------------------------------------------------------ */

static void send_hello(ffarm_conn_t *c) {
  json_t *held = json_array(), *running = json_array();
  for (task_t *t = E.tasks; t; t = t->next) {
    json_t *e = json_pack("{s:s,s:s}", "task", t->id, "hash", t->hash);
    json_array_append_new(t->state == T_HELD ? held : running, e);
  }
  json_t *j = json_pack("{s:s,s:i,s:i,s:o,s:o}", "id", E.id, "slots", (int)E.slots, "load",
                        (int)E.running, "held", held, "running", running);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (s) {
    if (strlen(s) <= FFARM_META_MAX) ffarm_conn_send(c, FFARM_T_HELLO, NULL, s, strlen(s));
    else ffarm_conn_send(c, FFARM_T_HELLO, NULL, "{}", 2);
  }
  free(s);
}

static void on_ready(ffarm_conn_t *c, void *arg) {
  logf_("employer %s authenticated (%s)", ffarm_conn_peer(c), ffarm_conn_mode(c));
  E.cur = c;
  for (task_t *t = E.tasks; t; t = t->next) t->sending = false;
  send_hello(c);
  resend_all();
}

static uint64_t jint(json_t *j, const char *k, uint64_t def, uint64_t max) {
  json_t *v = json_object_get(j, k);
  if (!json_is_integer(v) || json_integer_value(v) <= 0) return def;
  uint64_t x = (uint64_t)json_integer_value(v);
  return x > max ? max : x;
}

static void on_msg(ffarm_conn_t *c, uint8_t type, const char *id, const char *js, size_t len,
                   void *arg) {
  json_t *j = json_loadb(js, len, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    ffarm_conn_close(c, -EPROTO);
    return;
  }
  const char *hash = json_string_value(json_object_get(j, "hash"));
  switch (type) {
  case FFARM_T_SCRIPT: {
    if (!hex64(hash)) break;
    char path[600];
    snprintf(path, sizeof(path), "%s/script_%s", E.workdir, hash);
    if (access(path, F_OK) == 0) {
      ffarm_conn_recv_file(c, -1, NULL);
      break;
    }
    snprintf(E.script_tmp, sizeof(E.script_tmp), "%s/script.tmp.%llu", E.workdir,
             (unsigned long long)++E.seq);
    snprintf(E.script_hash, sizeof(E.script_hash), "%s", hash);
    E.script_fd = open(E.script_tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0700);
    E.script_in = true;
    uint8_t h[FFARM_HASH_LEN];
    sodium_hex2bin(h, sizeof(h), hash, strlen(hash), NULL, NULL, NULL);
    ffarm_conn_recv_file(c, E.script_fd, h);  /* END must state the hash it is named by */
    break;
  }
  case FFARM_T_TASK: {
    const char *sh = json_string_value(json_object_get(j, "script"));
    if (!hex64(hash) || !hex64(sh) || !ffarm_id_valid(id, strlen(id))) {
      ffarm_conn_close(c, -EPROTO);
      break;
    }
    task_t *t = find(id, hash);
    if (t) {  /* already here (an employer restarted or retried): do not run it twice */
      ffarm_conn_recv_file(c, -1, NULL);
      if (t->state == T_HELD) {
        t->sending = false;
        send_result(t);
      }
      break;
    }
    t = calloc(1, sizeof(*t));
    if (t) t->in_fd = -1;
    if (!t) {
      ffarm_conn_recv_file(c, -1, NULL);
      break;
    }
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->hash, sizeof(t->hash), "%s", hash);
    snprintf(t->script, sizeof(t->script), "%s", sh);
    t->py = json_is_true(json_object_get(j, "python"));
    t->timeout_ms = jint(j, "timeout_ms", E.def_timeout_ms, UINT32_MAX);
    t->mem_bytes = jint(j, "mem_bytes", E.def_mem, UINT64_MAX / 2);
    t->out_bytes = jint(j, "out_bytes", E.def_out, UINT64_MAX / 2);
    t->seq = ++E.seq;
    snprintf(t->in_path, sizeof(t->in_path), "%s/in_%llu", E.workdir, (unsigned long long)t->seq);
    snprintf(t->out_path, sizeof(t->out_path), "%s/out_%llu", E.workdir,
             (unsigned long long)t->seq);
    t->state = T_RECEIVING;
    int fd = open(t->in_path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    t->in_fd = fd;
    /* a big chunk: reserve its blocks now. The disk's "full" shows here,
     * and the connection's direct writes then land in allocated blocks,
     * which ext4 lets two writers do at once (new blocks: one at a time).
     * Advice only; the connection cuts the file to the bytes that came. */
    uint64_t size = jint(j, "size", 0, UINT64_MAX / 2);
    if (fd >= 0 && size >= (4u << 20)) (void)fallocate(fd, 0, 0, (off_t)size);
    t->next = E.tasks;
    E.tasks = t;
    E.receiving = t;
    uint8_t h[FFARM_HASH_LEN];
    sodium_hex2bin(h, sizeof(h), hash, strlen(hash), NULL, NULL, NULL);
    ffarm_conn_recv_file(c, fd, h);  /* closed in on_file; END must state the task's hash */
    if (fd < 0) logf_("cannot create %s: %s", t->in_path, strerror(errno));
    break;
  }
  case FFARM_T_ACK: {
    task_t *t = find(id, hash);
    if (t && t->state == T_HELD) unlink_task(t);
    break;
  }
  case FFARM_T_CANCEL: {
    task_t *t = find(id, hash);
    if (!t) break;
    if (t->state == T_RUNNING) {
      t->cancelled = true;
      uv_kill(-t->proc.pid, SIGKILL);
    } else if (t->state == T_QUEUED || t->state == T_HELD) {
      unlink_task(t);
    }
    break;
  }
  default:
    ffarm_conn_close(c, -EPROTO);
  }
  json_decref(j);
}

static void on_file(ffarm_conn_t *c, const char *id, int status, void *arg) {
  if (E.script_in) {
    /* a script in flight always finishes before the task that needs it */
    int fd = E.script_fd;
    E.script_fd = -1;
    E.script_in = false;
    char path[600];
    snprintf(path, sizeof(path), "%s/script_%s", E.workdir, E.script_hash);
    E.script_hash[0] = 0;
    bool good = fd >= 0 && status == 0 && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    if (good) rename(E.script_tmp, path);
    else unlink(E.script_tmp);
    return;
  }
  task_t *t = E.receiving;
  E.receiving = NULL;
  if (!t || strcmp(t->id, id) != 0) return;  /* a discarded duplicate */
  if (t->in_fd >= 0) {
    if (close(t->in_fd) < 0 && status == 0) status = -EIO;
    t->in_fd = -1;
  }
  if (status != 0) {
    /* tell the employer at once (it retries elsewhere) instead of leaving
     * it to wait for the task timeout */
    logf_("task %s: chunk rejected (%s)", t->id, strerror(-status));
    unlink(t->in_path);
    t->state = T_HELD;
    t->ok = false;
    t->exit_status = -1;
    snprintf(t->reason, sizeof(t->reason), "chunk transfer failed: %s",
             status == -EBADMSG ? "size or checksum mismatch" : strerror(-status));
    send_result(t);
    return;
  }
  t->state = T_QUEUED;
  start_more();
}

static void on_close(ffarm_conn_t *c, int err, void *arg) {
  if (err) logf_("employer %s: connection closed (%s)", ffarm_conn_peer(c), strerror(-err));
  if (E.cur == c) E.cur = NULL;
  if (E.receiving) {
    unlink_task(E.receiving);
    E.receiving = NULL;
  }
  if (E.script_in) {
    if (E.script_fd >= 0) close(E.script_fd);
    E.script_fd = -1;
    E.script_in = false;
    unlink(E.script_tmp);
  }
  for (task_t *t = E.tasks; t; t = t->next) t->sending = false;
}

static void on_sent(ffarm_conn_t *c, uint64_t cookie, int status, void *arg) {}

static const ffarm_conn_cbs_t CBS = {on_ready, on_msg, on_file, on_sent, on_close};

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  ffarm_conn_t *c;
  if (ffarm_conn_init(&c, E.loop, true, &E.key, &CBS, NULL) < 0) return;
  if (uv_accept(srv, (uv_stream_t *)ffarm_conn_tcp(c)) < 0 || ffarm_conn_start(c) < 0) {
    ffarm_conn_close(c, 0);
    return;
  }
}

/* ---- announces ------------------------------------------------------------------- */

static void on_udp_sent(uv_udp_send_t *req, int status) { free(req); }

static void announce(uv_timer_t *tm) {
  char js[512];
  snprintf(js, sizeof(js), "{\"id\":\"%s\",\"port\":%d,\"slots\":%u,\"load\":%u,\"ts\":%lld}",
           E.id, E.port, E.slots, E.running, (long long)time(NULL));
  struct { uv_udp_send_t req; uint8_t pkt[FFARM_ANNOUNCE_MAX]; } *s = malloc(sizeof(*s));
  if (!s) return;
  ssize_t n = ffarm_announce_seal(&E.key, js, s->pkt, sizeof(s->pkt));
  struct sockaddr_in to;
  if (n < 0 || uv_ip4_addr(E.bcast, E.udp_port, &to) < 0) {
    free(s);
    return;
  }
  uv_buf_t b = uv_buf_init((char *)s->pkt, (unsigned)n);
  if (uv_udp_send(&s->req, &E.udp, &b, 1, (const struct sockaddr *)&to, on_udp_sent) < 0) free(s);
}

static void on_signal(uv_signal_t *s, int sig) {
  logf_("signal %d: stopping (%llu scripts run)", sig, (unsigned long long)E.runs);
  for (task_t *t = E.tasks; t; t = t->next)
    if (t->state == T_RUNNING) uv_kill(-t->proc.pid, SIGKILL);
  exit(0);
}

static const char *env_or(const char *name, const char *def) {
  const char *v = getenv(name);
  return v && *v ? v : def;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--run-limited") == 0) return run_limited(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const char *secret = env_or("FERRY_FARM_SECRET_FILE", NULL);
  bool insecure = false;
  E.port = atoi(env_or("FERRY_EMPLOYEE_PORT", "12345"));
  E.udp_port = atoi(env_or("FERRY_FARM_UDP_PORT", "9876"));
  snprintf(E.workdir, sizeof(E.workdir), "%s", env_or("FERRY_EMPLOYEE_WORKDIR", "employee-work"));
  E.slots = (uint32_t)atoi(env_or("FERRY_EMPLOYEE_SLOTS", "3"));
  snprintf(E.bind, sizeof(E.bind), "0.0.0.0");
  snprintf(E.bcast, sizeof(E.bcast), "255.255.255.255");
  E.announce_ms = 1000;
  E.def_timeout_ms = 3600 * 1000ull;
  E.def_mem = 1024ull << 20;
  E.def_out = 1024ull << 20;
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  snprintf(E.id, sizeof(E.id), "%.40s-%d", host, (int)getpid());
  static const struct option opts[] = {
      {"port", 1, 0, 'p'}, {"bind", 1, 0, 'b'}, {"udp-port", 1, 0, 'u'},
      {"broadcast", 1, 0, 'B'}, {"announce-ms", 1, 0, 'a'}, {"workdir", 1, 0, 'w'},
      {"slots", 1, 0, 's'}, {"id", 1, 0, 'i'}, {"time-limit", 1, 0, 'T'},
      {"mem-limit", 1, 0, 'M'}, {"out-limit", 1, 0, 'O'}, {"secret-file", 1, 0, 'S'},
      {"insecure", 0, 0, 'I'}, {"encrypt-data", 0, 0, 'E'}, {"help", 0, 0, 'h'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
    case 'p': E.port = atoi(optarg); break;
    case 'b': snprintf(E.bind, sizeof(E.bind), "%s", optarg); break;
    case 'u': E.udp_port = atoi(optarg); break;
    case 'B': snprintf(E.bcast, sizeof(E.bcast), "%s", optarg); break;
    case 'a': E.announce_ms = (uint32_t)atoi(optarg); break;
    case 'w': snprintf(E.workdir, sizeof(E.workdir), "%s", optarg); break;
    case 's': E.slots = (uint32_t)atoi(optarg); break;
    case 'i': snprintf(E.id, sizeof(E.id), "%s", optarg); break;
    case 'T': E.def_timeout_ms = strtoull(optarg, NULL, 10) * 1000; break;
    case 'M': E.def_mem = strtoull(optarg, NULL, 10) << 20; break;
    case 'O': E.def_out = strtoull(optarg, NULL, 10) << 20; break;
    case 'S': secret = optarg; break;
    case 'I': insecure = true; break;
    /* read by ffarm_mode_local() at each handshake (the flag beats the env) */
    case 'E': setenv("FERRY_FARM_ENCRYPT_DATA", "1", 1); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "employee: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (E.port < 0 || E.port > 65535 || E.udp_port <= 0 || E.udp_port > 65535 || E.slots < 1 ||
      E.slots > 1024 || !ffarm_id_valid(E.id, strlen(E.id))) {
    fprintf(stderr, "employee: bad --port, --udp-port, --slots or --id\n");
    return 2;
  }
  if (secret) {
    int rc = ffarm_key_load(&E.key, secret);
    if (rc < 0) {
      fprintf(stderr, "employee: secret file %s: %s%s\n", secret, strerror(-rc),
              rc == -EPERM ? " (must not be readable by group or others)" : "");
      return 2;
    }
  } else if (insecure) {
    ffarm_key_insecure(&E.key);
    fprintf(stderr, "employee: WARNING: --insecure: anyone on the network can run code here\n");
  } else {
    fprintf(stderr, "employee: no secret: give --secret-file FILE (or FERRY_FARM_SECRET_FILE), "
                    "or --insecure\n");
    return 2;
  }
  if (mkdir(E.workdir, 0700) < 0 && errno != EEXIST) {
    fprintf(stderr, "employee: workdir %s: %s\n", E.workdir, strerror(errno));
    return 1;
  }
  struct stat st;
  if (stat(E.workdir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
    fprintf(stderr, "employee: workdir %s is not a directory of ours\n", E.workdir);
    return 1;
  }
  chmod(E.workdir, 0700);
  char *rp = realpath(E.workdir, NULL);
  if (rp) {
    snprintf(E.workdir, sizeof(E.workdir), "%s", rp);
    free(rp);
  }
  load_held();
  size_t sl = sizeof(E.self);
  if (uv_exepath(E.self, &sl) < 0) {
    fprintf(stderr, "employee: cannot find my own executable\n");
    return 1;
  }
  E.script_fd = -1;
  E.loop = uv_default_loop();
  struct sockaddr_in addr;
  if (uv_ip4_addr(E.bind, E.port, &addr) < 0) {
    fprintf(stderr, "employee: bad --bind %s\n", E.bind);
    return 2;
  }
  uv_tcp_init(E.loop, &E.server);
  int rc = uv_tcp_bind(&E.server, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&E.server, 64, on_connection);
  if (rc < 0) {
    fprintf(stderr, "employee: listen on %s:%d: %s\n", E.bind, E.port, uv_strerror(rc));
    return 1;
  }
  if (E.port == 0) {
    struct sockaddr_in a;
    int l = sizeof(a);
    uv_tcp_getsockname(&E.server, (struct sockaddr *)&a, &l);
    E.port = ntohs(a.sin_port);
  }
  if (strcmp(E.bcast, "none") != 0) {
    uv_udp_init(E.loop, &E.udp);
    struct sockaddr_in any;
    uv_ip4_addr("0.0.0.0", 0, &any);
    uv_udp_bind(&E.udp, (const struct sockaddr *)&any, 0);
    uv_udp_set_broadcast(&E.udp, 1);
    uv_timer_init(E.loop, &E.ann_timer);
    uv_timer_start(&E.ann_timer, announce, 0, E.announce_ms);
  }
  uv_signal_init(E.loop, &E.sigint);
  uv_signal_start(&E.sigint, on_signal, SIGINT);
  uv_signal_init(E.loop, &E.sigterm);
  uv_signal_start(&E.sigterm, on_signal, SIGTERM);
  logf_("listening on %s:%d, %u slots, workdir %s", E.bind, E.port, E.slots, E.workdir);
  printf("employee %s port %d\n", E.id, E.port);
  fflush(stdout);
  return uv_run(E.loop, UV_RUN_DEFAULT);
}
