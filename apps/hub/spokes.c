/* GoLlama hub: the registry of spokes. A spoke registers (and re-registers
 * every few seconds, so a restarted hub learns it again) with its URL and
 * llama.cpp's slot count; the hub also polls each spoke's /health, which
 * marks it up or down in the dispatcher and refreshes its capacity. Both
 * carry "busy_other": llama.cpp slots busy with clients the hub does not
 * see, which the dispatcher does not offer to the hub's jobs. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

#define MAX_SPOKES 1024

static bool url_ok(const char *u) {
  size_t n = strlen(u);
  if (n < 8 || n >= sizeof(((hub_spoke_t *)0)->url)) return false;
  if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) return false;
  for (const char *p = u; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("?#\\\"<>", *p)) return false;
  return u[n - 1] != '/';
}

int hub_spoke_register(hub_t *h, const char *url, uint32_t slots, bool ready, const char *model,
                       hub_spoke_t **out) {
  if (!url || !url_ok(url) || slots > 4096) return -EINVAL;
  hub_spoke_t *s = h->spokes;
  size_t n = 0;
  for (; s && strcmp(s->url, url); s = s->next) n++;
  if (!s) {
    if (n >= MAX_SPOKES) return -ENOSPC;
    s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->hub = h;
    snprintf(s->url, sizeof(s->url), "%s", url);
    int rc = fdisp_worker_add(h->disp, slots ? slots : 1, s, &s->wid);
    if (rc < 0) {
      free(s);
      return rc;
    }
    s->next = h->spokes;
    h->spokes = s;
    if (h->cfg.log_level[0] != 'q') fprintf(stderr, "hub: spoke %s registered (%u slots)\n", url, slots);
  } else if (slots) {
    fdisp_worker_set_capacity(h->disp, s->wid, slots);
  }
  if (model && *model) snprintf(s->model, sizeof(s->model), "%s", model);
  s->registered_ms = uv_now(h->loop);
  s->health_fails = 0;
  fdisp_worker_set_up(h->disp, s->wid, ready);
  if (out) *out = s;
  return 0;
}

static void on_health(fnet_creq_t *r, int result, int status, const char *body, size_t len,
                      void *arg) {
  hub_spoke_t *s = arg;
  hub_t *h = s->hub;
  s->health = NULL;
  bool up = false;
  uint32_t slots = 0;
  json_int_t other = -1;
  if (result == 0 && status == 200) {
    json_t *v = json_loadb(body, len, 0, NULL);
    json_int_t n = json_integer_value(json_object_get(v, "slots"));
    if (n > 0 && n <= 4096) slots = (uint32_t)n;
    json_t *bo = json_object_get(v, "busy_other");
    if (json_is_integer(bo) && json_integer_value(bo) >= 0 && json_integer_value(bo) <= 4096)
      other = json_integer_value(bo);
    up = true;
    json_decref(v);
  }
  if (up) {
    s->health_fails = 0;
    if (slots) fdisp_worker_set_capacity(h->disp, s->wid, slots);
    if (other >= 0) fdisp_worker_set_external(h->disp, s->wid, (uint32_t)other);
    fdisp_worker_set_up(h->disp, s->wid, true);
  } else if (++s->health_fails >= 2) {
    /* two polls in a row: down (one lost poll is not enough) */
    fdisp_worker_set_up(h->disp, s->wid, false);
  }
}

static void on_health_timer(uv_timer_t *t) {
  hub_t *h = t->data;
  char sec[GL_KEY_MAX + 32];
  snprintf(sec, sizeof(sec), "X-Spoke-Secret: %s", h->cfg.secret);
  const char *hdrs[] = {h->cfg.secret[0] ? sec : NULL, NULL};
  for (hub_spoke_t *s = h->spokes; s; s = s->next) {
    if (s->health) continue;
    char url[300];
    snprintf(url, sizeof(url), "%s/health", s->url);
    fnet_creq_opts_t o = {.url = url, .headers = hdrs, .timeout_ms = h->cfg.health_ms,
                          .max_body = 64 * 1024, .on_done = on_health, .arg = s};
    if (fnet_client_request(h->client, &o, &s->health) < 0) s->health = NULL;
  }
}

void hub_spokes_start(hub_t *h) {
  uv_timer_init(h->loop, &h->health);
  h->health.data = h;
  uv_timer_start(&h->health, on_health_timer, h->cfg.health_ms, h->cfg.health_ms);
}

void hub_spokes_free(hub_t *h) {
  hub_spoke_t *s;
  while ((s = h->spokes)) {
    h->spokes = s->next;
    if (s->health) fnet_creq_abort(s->health);
    free(s);
  }
}
