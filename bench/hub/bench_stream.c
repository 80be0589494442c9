/* bench_stream: measures streamed chat completions against an
 * OpenAI-compatible endpoint: time to first token and tokens per second.
 *
 * N requests with "stream": true, "max_tokens": M and "ignore_eos": true (a
 * fixed length on llama.cpp), C in flight (libcurl multi, one thread). For
 * each request it notes when the first server-sent event carrying non-null
 * delta content arrives (time to first token) and counts content chunks
 * (one per token on llama.cpp). Prints one RESULT line that scripts parse,
 * plus a readable summary. Used by bench_hub.sh for direct vs through-hub. */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LINE 65536    /* longest SSE line kept */

struct req {
    CURL *easy;           /* reused per slot */
    double start;         /* send time, monotonic s */
    double first;         /* first content chunk, 0 if none yet */
    long tokens;          /* content chunks seen */
    bool done_seen;       /* "data: [DONE]" seen */
    char line[MAX_LINE];  /* partial SSE line */
    size_t len;           /* bytes in line */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_line(struct req *r) {
    r->line[r->len] = 0;
    if (strncmp(r->line, "data: ", 6) != 0) return;
    const char *d = r->line + 6;
    if (!strcmp(d, "[DONE]")) {
        r->done_seen = true;
        return;
    }
    /* A content delta that is a string (not null, not absent). */
    const char *c = strstr(d, "\"content\":\"");
    if (c && strstr(d, "\"delta\"")) {
        if (r->first == 0) r->first = now_s();
        r->tokens++;
    }
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg) {
    struct req *r = arg;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            on_line(r);
            r->len = 0;
        } else if (p[i] != '\r' && r->len < MAX_LINE - 1) {
            r->line[r->len++] = p[i];
        }
    }
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, long n, double p) {
    if (n == 0) return 0;
    long k = (long)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_stream -url URL [-requests N] [-concurrency C] [-max-tokens M]\n"
            "                    [-api-key KEY] [-message TEXT]\n"
            "Streams N chat completions (C at a time, M tokens each, ignore_eos) from\n"
            "URL (an OpenAI-compatible .../v1/chat/completions) and prints time to\n"
            "first token (p50/p99) and tokens per second.\n"
            "Defaults: -requests 8 -concurrency 1 -max-tokens 64 -message \"Tell me a story\".\n");
}

int main(int argc, char **argv) {
    const char *url = NULL, *key = NULL, *message = "Tell me a story";
    long n = 8, conc = 1, max_tokens = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "-help") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_stream: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "-url")) url = v;
        else if (!strcmp(a, "-api-key")) key = v;
        else if (!strcmp(a, "-message")) message = v;
        else if (!strcmp(a, "-requests")) n = strtol(v, &end, 10);
        else if (!strcmp(a, "-concurrency")) conc = strtol(v, &end, 10);
        else if (!strcmp(a, "-max-tokens")) max_tokens = strtol(v, &end, 10);
        else {
            fprintf(stderr, "bench_stream: unknown flag %s\n", a);
            return 2;
        }
        if (end && (*end || n < 1 || n > 1000000 || conc < 1 || conc > 1024 || max_tokens < 1 ||
                    max_tokens > 100000)) {
            fprintf(stderr, "bench_stream: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!url) {
        usage(stderr);
        return 2;
    }
    if (strpbrk(message, "\"\\\n")) {
        fprintf(stderr, "bench_stream: -message must not contain quotes, backslashes or newlines\n");
        return 2;
    }
    if (conc > n) conc = n;
    char body[4096];
    if ((size_t)snprintf(body, sizeof body,
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%ld,"
                         "\"ignore_eos\":true,\"stream\":true}",
                         message, max_tokens) >= sizeof body) {
        fprintf(stderr, "bench_stream: -message too long\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1024];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    CURLM *multi = curl_multi_init();
    struct req *reqs = calloc((size_t)conc, sizeof *reqs);
    double *ttft = calloc((size_t)n, sizeof *ttft);
    double *rate = calloc((size_t)n, sizeof *rate);
    if (!h || !multi || !reqs || !ttft || !rate) {
        fprintf(stderr, "bench_stream: out of memory\n");
        return 1;
    }
    long sent = 0, done = 0, ok = 0, failed = 0, tokens = 0;
    for (long i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();
        reqs[i].easy = e;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &reqs[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &reqs[i]);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        /* llama-server closes the connection after every streamed answer
         * (while its headers promise keep-alive): reusing it races with that
         * close and fails with a send error. One fresh connection per stream,
         * on every path measured, keeps the comparison fair. */
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    double t0 = now_s();
    for (long i = 0; i < conc; i++) {
        reqs[i].start = now_s();
        curl_multi_add_handle(multi, reqs[i].easy);
        sent++;
    }
    while (done < n) {
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            struct req *r;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            double end = now_s();
            if (m->data.result == CURLE_OK && code == 200 && r->done_seen && r->first > 0) {
                ttft[ok] = r->first - r->start;
                rate[ok] = r->tokens > 1 && end > r->first ? (double)(r->tokens - 1) / (end - r->first) : 0;
                ok++;
                tokens += r->tokens;
            } else {
                if (!failed)
                    fprintf(stderr, "bench_stream: request failed: %s, HTTP %ld\n",
                            curl_easy_strerror(m->data.result), code);
                failed++;
            }
            done++;
            curl_multi_remove_handle(multi, m->easy_handle);
            if (sent < n) {
                r->start = now_s();
                r->first = 0;
                r->tokens = 0;
                r->done_seen = false;
                r->len = 0;
                curl_multi_add_handle(multi, r->easy);
                sent++;
            }
        }
        if (done < n) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double wall = now_s() - t0;
    qsort(ttft, (size_t)ok, sizeof *ttft, cmp_double);
    qsort(rate, (size_t)ok, sizeof *rate, cmp_double);
    printf("RESULT ok=%ld failed=%ld tokens=%ld seconds=%.3f tok_per_s=%.1f ttft_p50_ms=%.3f "
           "ttft_p99_ms=%.3f decode_p50_tok_s=%.1f\n",
           ok, failed, tokens, wall, (double)tokens / wall, pct(ttft, ok, 50) * 1e3, pct(ttft, ok, 99) * 1e3,
           pct(rate, ok, 50));
    for (long i = 0; i < conc; i++) curl_easy_cleanup(reqs[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(h);
    curl_global_cleanup();
    free(reqs);
    free(ttft);
    free(rate);
    return failed ? 1 : 0;
}
