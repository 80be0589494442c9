/* fake_llama: a fast stand-in for llama.cpp's server, on Ferry's own HTTP
 * layer (src/net), answering a fixed OpenAI-style chat completion.
 *
 * Its only job is to cost (almost) nothing, so that a benchmark of
 * client -> proxy -> fake_llama measures the proxy. It speaks just enough of
 * llama-server's API for a spoke to sit in front of it:
 *   GET  /health               {"status":"ok"}
 *   GET  /slots                --slots idle slots
 *   GET  /metrics              Prometheus text, nothing processing
 *   GET  /v1/models            one model, "fake"
 *   POST /v1/chat/completions  the fixed completion; with "stream": true the
 *                              same text as server-sent events (a first chunk
 *                              with content null, one chunk per word, a
 *                              finish_reason chunk with timings, [DONE])
 *   POST /completion           the fixed text, llama.cpp's native shape
 * The request body is only checked for "stream": true (a substring test: this
 * is a benchmark stub, not a parser). With --delay-ms the answer is sent that
 * long after the request arrived (a timer, the loop never blocks). */
#define _GNU_SOURCE   /* vasprintf */
#include <ferry/net.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_SLOTS 1024                 /* --slots upper bound */

static const char *const words[] = {"The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."};
#define N_WORDS (sizeof words / sizeof words[0])

struct fake {
    uv_loop_t *loop;               /* the one loop */
    fnet_http_server_t *http;      /* our server */
    char *completion;              /* fixed JSON answer */
    size_t completion_len;         /* its length */
    char *stream;                  /* fixed SSE answer */
    size_t stream_len;             /* its length */
    char *slots;                   /* fixed /slots answer */
    size_t slots_len;              /* its length */
    unsigned delay_ms;             /* answer this long after arrival */
    unsigned long served;          /* completions answered */
    uv_signal_t sigint, sigterm;   /* graceful stop */
};

/* A completion waiting for its --delay-ms timer. */
struct delayed {
    uv_timer_t timer;              /* fires once */
    fnet_req_t *req;               /* to answer */
    struct fake *f;                /* server */
    int stream;                    /* send the SSE form */
};

static char *xprintf_len(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *xprintf_len(size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    *len = (size_t)n;
    return s;
}

static int build_answers(struct fake *f, unsigned nslots) {
    char text[256] = "";
    for (size_t i = 0; i < N_WORDS; i++) strcat(text, words[i]);
    f->completion = xprintf_len(&f->completion_len,
        "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"%s\"}}],\"created\":1700000000,\"model\":\"fake\",\"system_fingerprint\":\"fake\","
        "\"object\":\"chat.completion\",\"usage\":{\"completion_tokens\":%zu,\"prompt_tokens\":8,"
        "\"total_tokens\":%zu},\"id\":\"chatcmpl-fake\",\"timings\":{\"prompt_n\":8,\"predicted_n\":%zu}}",
        text, N_WORDS, N_WORDS + 8, N_WORDS);

    /* SSE: the same text, one chunk per word. */
    size_t cap = 8192, len = 0;
    char *s = malloc(cap);
    if (!s) return -ENOMEM;
    const char *head = "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":";
    const char *tail = "}],\"created\":1700000000,\"id\":\"chatcmpl-fake\",\"model\":\"fake\","
                       "\"object\":\"chat.completion.chunk\"}\n\n";
    len += (size_t)snprintf(s + len, cap - len, "%s{\"role\":\"assistant\",\"content\":null}%s", head, tail);
    for (size_t i = 0; i < N_WORDS; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s{\"content\":\"%s\"}%s", head, words[i], tail);
    len += (size_t)snprintf(s + len, cap - len,
        "data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"created\":1700000000,"
        "\"id\":\"chatcmpl-fake\",\"model\":\"fake\",\"object\":\"chat.completion.chunk\","
        "\"timings\":{\"prompt_n\":8,\"predicted_n\":%zu}}\n\ndata: [DONE]\n\n", N_WORDS);
    if (len >= cap) return -E2BIG;
    f->stream = s;
    f->stream_len = len;

    cap = 64 + (size_t)nslots * 64;
    s = malloc(cap);
    if (!s) return -ENOMEM;
    len = 0;
    s[len++] = '[';
    for (unsigned i = 0; i < nslots; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s{\"id\":%u,\"n_ctx\":512,\"is_processing\":false}",
                                i ? "," : "", i);
    s[len++] = ']';
    s[len] = 0;
    f->slots = s;
    f->slots_len = len;
    return f->completion ? 0 : -ENOMEM;
}

static void answer(struct fake *f, fnet_req_t *req, int stream) {
    f->served++;
    if (stream)
        fnet_req_respond(req, 200, "text/event-stream", f->stream, f->stream_len);
    else
        fnet_req_respond(req, 200, "application/json", f->completion, f->completion_len);
}

static void on_delay_closed(uv_handle_t *h) { free(h->data); }

static void on_delay(uv_timer_t *t) {
    struct delayed *d = t->data;
    answer(d->f, d->req, d->stream);
    uv_close((uv_handle_t *)&d->timer, on_delay_closed);
}

static void on_chat(fnet_req_t *req, void *arg) {
    struct fake *f = arg;
    size_t n;
    const char *body = fnet_req_body(req, &n);
    int stream = body && (strstr(body, "\"stream\":true") || strstr(body, "\"stream\": true"));
    if (!f->delay_ms) {
        answer(f, req, stream);
        return;
    }
    struct delayed *d = malloc(sizeof *d);
    if (!d) {
        fnet_req_respond_error(req, 503, "out of memory");
        return;
    }
    d->req = req;
    d->f = f;
    d->stream = stream;
    d->timer.data = d;
    uv_timer_init(f->loop, &d->timer);
    uv_timer_start(&d->timer, on_delay, f->delay_ms, 0);
}

static void on_completion(fnet_req_t *req, void *arg) {
    struct fake *f = arg;
    f->served++;
    static const char body[] =
        "{\"content\":\"The quick brown fox jumps over the lazy dog.\",\"stop\":true,\"tokens_predicted\":10}";
    fnet_req_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void on_health(fnet_req_t *req, void *arg) {
    static const char body[] = "{\"status\":\"ok\"}";
    fnet_req_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void on_slots(fnet_req_t *req, void *arg) {
    struct fake *f = arg;
    fnet_req_respond(req, 200, "application/json", f->slots, f->slots_len);
}

static void on_metrics(fnet_req_t *req, void *arg) {
    struct fake *f = arg;
    char body[512];
    int n = snprintf(body, sizeof body,
                     "# HELP llamacpp:requests_processing Number of requests processing.\n"
                     "# TYPE llamacpp:requests_processing gauge\n"
                     "llamacpp:requests_processing 0\n"
                     "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
                     "# TYPE llamacpp:requests_deferred gauge\n"
                     "llamacpp:requests_deferred 0\n"
                     "# HELP fake_served_total Completions answered.\n"
                     "# TYPE fake_served_total counter\n"
                     "fake_served_total %lu\n", f->served);
    fnet_req_respond(req, 200, "text/plain; version=0.0.4", body, (size_t)n);
}

static void on_models(fnet_req_t *req, void *arg) {
    static const char body[] =
        "{\"object\":\"list\",\"data\":[{\"id\":\"fake\",\"object\":\"model\",\"created\":1700000000,"
        "\"owned_by\":\"ferry\"}]}";
    fnet_req_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void on_signal(uv_signal_t *s, int signum) {
    struct fake *f = s->data;
    uv_signal_stop(&f->sigint);
    uv_signal_stop(&f->sigterm);
    uv_close((uv_handle_t *)&f->sigint, NULL);
    uv_close((uv_handle_t *)&f->sigterm, NULL);
    fnet_http_server_close(f->http, NULL, NULL);
    f->http = NULL;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: fake_llama [--port N] [--host ADDR] [--slots N] [--delay-ms MS]\n"
            "\n"
            "A fast fake llama.cpp server answering a fixed chat completion (see the\n"
            "header of bench/hub/fake_llama.c for the endpoints). Prints\n"
            "\"listening on HOST:PORT\" when ready; SIGINT/SIGTERM stop it.\n"
            "\n"
            "  --port N        port (default 0: any free port)\n"
            "  --host ADDR     address (default 127.0.0.1)\n"
            "  --slots N       slots reported by /slots (default 64, max %d)\n"
            "  --delay-ms MS   answer completions MS after arrival (default 0)\n"
            "  -h, --help      this text\n",
            MAX_SLOTS);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'}, {"host", required_argument, 0, 'H'},
        {"slots", required_argument, 0, 's'}, {"delay-ms", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *host = "127.0.0.1";
    unsigned long port = 0, nslots = 64, delay = 0;
    int c;
    while ((c = getopt_long(argc, argv, "p:H:s:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_uint(optarg, 65535, &port)) goto bad;
            break;
        case 'H': host = optarg; break;
        case 's':
            if (parse_uint(optarg, MAX_SLOTS, &nslots) || nslots == 0) goto bad;
            break;
        case 'd':
            if (parse_uint(optarg, 600000, &delay)) goto bad;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        continue;
    bad:
        fprintf(stderr, "fake_llama: bad value '%s' for --%s\n", optarg,
                c == 'p' ? "port" : c == 's' ? "slots" : "delay-ms");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    struct fake f = {.delay_ms = (unsigned)delay};
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) {
        fprintf(stderr, "fake_llama: cannot create the event loop\n");
        return 1;
    }
    f.loop = &loop;
    if (build_answers(&f, (unsigned)nslots) < 0) {
        fprintf(stderr, "fake_llama: out of memory\n");
        return 1;
    }
    fnet_http_config_t hc;
    fnet_http_config_default(&hc);
    hc.max_connections = 8192;
    hc.idle_timeout_ms = 60000;
    int rc = fnet_http_server_init(&f.http, &loop, &hc);
    if (!rc) rc = fnet_http_route(f.http, "POST", "/v1/chat/completions", on_chat, &f);
    if (!rc) rc = fnet_http_route(f.http, "POST", "/chat/completions", on_chat, &f);
    if (!rc) rc = fnet_http_route(f.http, "POST", "/completion", on_completion, &f);
    if (!rc) rc = fnet_http_route(f.http, "GET", "/health", on_health, &f);
    if (!rc) rc = fnet_http_route(f.http, "GET", "/slots", on_slots, &f);
    if (!rc) rc = fnet_http_route(f.http, "GET", "/metrics", on_metrics, &f);
    if (!rc) rc = fnet_http_route(f.http, "GET", "/v1/models", on_models, &f);
    if (!rc) rc = fnet_http_listen(f.http, host, (int)port);
    if (rc) {
        fprintf(stderr, "fake_llama: cannot listen on %s:%lu: %s\n", host, port, strerror(-rc));
        fnet_http_server_close(f.http, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_signal_init(&loop, &f.sigint);
    uv_signal_init(&loop, &f.sigterm);
    f.sigint.data = f.sigterm.data = &f;
    uv_signal_start(&f.sigint, on_signal, SIGINT);
    uv_signal_start(&f.sigterm, on_signal, SIGTERM);
    printf("listening on %s:%d\n", host, fnet_http_server_port(f.http));
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(f.completion);
    free(f.stream);
    free(f.slots);
    return 0;
}
