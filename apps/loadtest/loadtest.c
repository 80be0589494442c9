/* loadtest: sends N chat requests with C in flight at a time and prints the
 * success/failure counts, latency percentiles and throughput, like the
 * GoLlama spec's tests/loadtest.
 *
 * One thread, libcurl's multi interface: C easy handles are kept busy, each
 * reused for its next request so connections stay alive (as Go's client
 * does). A request succeeds when it gets HTTP 200; anything else (other
 * status, timeout, connection error) is a failure and is counted by reason. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REQUESTS 10000000L    /* -requests upper bound */
#define MAX_CONCURRENCY 10000L    /* -concurrency upper bound */
#define MAX_REASONS 32            /* distinct failure reasons kept */
#define MAX_BODY_KEEP 512         /* response bytes kept for the first failure */

struct options {
    long requests;          /* total requests to send */
    long concurrency;       /* requests in flight at once */
    const char *message;    /* the chat message */
    const char *url;        /* POST target */
    const char *api_key;    /* sent as Authorization: Bearer, if set */
    const char *body;       /* raw JSON body instead of {"message": ...} */
    long timeout_ms;        /* per request */
    bool quiet;             /* no progress line */
};

/* One in-flight slot: an easy handle and what it is doing. */
struct slot {
    CURL *easy;             /* reused for every request of this slot */
    double start;           /* monotonic seconds at send */
    char keep[MAX_BODY_KEEP];  /* start of the response body */
    size_t kept;            /* bytes in keep */
};

/* A failure reason ("HTTP 503", "Timeout was reached") and its count. */
struct reason {
    char text[96];          /* description */
    long count;             /* occurrences */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: loadtest [-requests N] [-concurrency C] [-message TEXT] [-url URL]\n"
            "                [-api-key KEY] [-body JSON] [-timeout SECONDS] [-quiet]\n"
            "\n"
            "Sends N POST requests, C at a time, and prints successes, failures,\n"
            "min/avg/max/p50/p95/p99 latency and requests per second.\n"
            "\n"
            "  -requests N       total requests (default 100)\n"
            "  -concurrency C    requests in flight at once (default 10)\n"
            "  -message TEXT     chat message, sent as {\"message\": TEXT} (default \"test message\")\n"
            "  -url URL          target (default http://127.0.0.1:9000/chat)\n"
            "  -api-key KEY      sent as \"Authorization: Bearer KEY\"\n"
            "  -body JSON        send this body instead (e.g. an OpenAI chat request)\n"
            "  -timeout SECONDS  per-request timeout (default 60)\n"
            "  -quiet            no progress line on stderr\n"
            "  -h, -help         this text\n"
            "Flags also work with two dashes. A request succeeds on HTTP 200.\n"
            "Exit status: 0 all succeeded, 1 some failed, 2 usage error.\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Go-style flags: -name value, -name=value, with one or two dashes. */
static int parse_args(int argc, char **argv, struct options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            fprintf(stderr, "loadtest: unexpected argument '%s'\n", a);
            return 2;
        }
        a += (a[1] == '-') ? 2 : 1;
        char name[32];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, a, n);
        name[n] = 0;
        if (!strcmp(name, "h") || !strcmp(name, "help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(name, "quiet")) {
            o->quiet = true;
            continue;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "loadtest: flag -%s needs a value\n", name);
            return 2;
        }
        long t;
        if (!strcmp(name, "requests")) {
            if (!parse_long(val, 1, MAX_REQUESTS, &o->requests)) goto bad;
        } else if (!strcmp(name, "concurrency")) {
            if (!parse_long(val, 1, MAX_CONCURRENCY, &o->concurrency)) goto bad;
        } else if (!strcmp(name, "timeout")) {
            if (!parse_long(val, 1, 86400, &t)) goto bad;
            o->timeout_ms = t * 1000;
        } else if (!strcmp(name, "message")) {
            o->message = val;
        } else if (!strcmp(name, "url")) {
            o->url = val;
        } else if (!strcmp(name, "api-key")) {
            o->api_key = val;
        } else if (!strcmp(name, "body")) {
            o->body = val;
        } else {
            fprintf(stderr, "loadtest: unknown flag -%s (see -help)\n", name);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "loadtest: bad value '%s' for -%s\n", val, name);
        return 2;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg) {
    struct slot *s = arg;
    size_t n = size * nmemb;
    size_t room = sizeof s->keep - 1 - s->kept;
    size_t k = n < room ? n : room;
    memcpy(s->keep + s->kept, p, k);
    s->kept += k;
    s->keep[s->kept] = 0;
    return n;
}

static void add_reason(struct reason *r, int *nr, const char *text) {
    for (int i = 0; i < *nr; i++)
        if (!strcmp(r[i].text, text)) {
            r[i].count++;
            return;
        }
    if (*nr == MAX_REASONS) text = "other";
    for (int i = 0; i < *nr; i++)
        if (!strcmp(r[i].text, text)) {
            r[i].count++;
            return;
        }
    if (*nr == MAX_REASONS) return;
    snprintf(r[*nr].text, sizeof r[*nr].text, "%s", text);
    r[*nr].count = 1;
    (*nr)++;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static double pct(const double *v, long n, double p) {
    if (n == 0) return 0;
    long k = (long)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static void print_ms(const char *label, double s) { printf("  %-5s %10.2f ms\n", label, s * 1000.0); }

int main(int argc, char **argv) {
    struct options o = {
        .requests = 100, .concurrency = 10, .message = "test message",
        .url = "http://127.0.0.1:9000/chat", .timeout_ms = 60000,
    };
    int prc = parse_args(argc, argv, &o);
    if (prc == 1) return 0;
    if (prc) return 2;
    if (o.concurrency > o.requests) o.concurrency = o.requests;

    char *body;
    if (o.body) {
        json_error_t err;
        json_t *j = json_loads(o.body, 0, &err);
        if (!j) {
            fprintf(stderr, "loadtest: -body is not valid JSON: %s\n", err.text);
            return 2;
        }
        json_decref(j);
        body = strdup(o.body);
    } else {
        json_t *j = json_pack("{s:s}", "message", o.message);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    if (!body) {
        fprintf(stderr, "loadtest: out of memory (or -message is not UTF-8)\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "loadtest: curl_global_init failed\n");
        free(body);
        return 1;
    }

    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1024];
    if (o.api_key) {
        if ((size_t)snprintf(auth, sizeof auth, "Authorization: Bearer %s", o.api_key) >= sizeof auth) {
            fprintf(stderr, "loadtest: -api-key is too long\n");
            return 2;
        }
        hdrs = curl_slist_append(hdrs, auth);
    }
    double *lat = malloc(sizeof *lat * (size_t)o.requests);
    struct slot *slots = calloc((size_t)o.concurrency, sizeof *slots);
    CURLM *multi = curl_multi_init();
    if (!hdrs || !lat || !slots || !multi) {
        fprintf(stderr, "loadtest: out of memory\n");
        return 1;
    }
    /* Connections: one per slot, reused; no connection-count surprise. */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, o.concurrency);

    long sent = 0, done = 0, ok = 0, failed = 0;
    struct reason reasons[MAX_REASONS];
    int nreasons = 0;
    char first_fail[MAX_BODY_KEEP + 64] = "";

    for (long i = 0; i < o.concurrency; i++) {
        CURL *e = curl_easy_init();
        if (!e) {
            fprintf(stderr, "loadtest: curl_easy_init failed\n");
            return 1;
        }
        slots[i].easy = e;
        curl_easy_setopt(e, CURLOPT_URL, o.url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &slots[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o.timeout_ms);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    }

    double t0 = now_s(), last_print = t0;
    for (long i = 0; i < o.concurrency; i++) {
        slots[i].start = now_s();
        slots[i].kept = 0;
        curl_multi_add_handle(multi, slots[i].easy);
        sent++;
    }
    while (done < o.requests) {
        /* perform, then collect what finished, then wait: waiting before
         * collecting would hold every finished transfer for a poll timeout. */
        int running = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "loadtest: curl multi error: %s\n", curl_multi_strerror(mc));
            return 1;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *e = m->easy_handle;
            struct slot *s;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
            double t = now_s() - s->start;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (m->data.result == CURLE_OK && code == 200) {
                lat[ok++] = t;
            } else {
                char why[96];
                if (m->data.result != CURLE_OK)
                    snprintf(why, sizeof why, "%s", curl_easy_strerror(m->data.result));
                else
                    snprintf(why, sizeof why, "HTTP %ld", code);
                add_reason(reasons, &nreasons, why);
                if (!failed)
                    snprintf(first_fail, sizeof first_fail, "%s: %.*s", why, (int)s->kept, s->keep);
                failed++;
            }
            done++;
            curl_multi_remove_handle(multi, e);
            if (sent < o.requests) {
                s->start = now_s();
                s->kept = 0;
                curl_multi_add_handle(multi, e);
                sent++;
            }
        }
        mc = curl_multi_poll(multi, NULL, 0, 100, NULL);
        if (mc != CURLM_OK) {
            fprintf(stderr, "loadtest: curl multi error: %s\n", curl_multi_strerror(mc));
            return 1;
        }
        double tn = now_s();
        if (!o.quiet && tn - last_print >= 1.0) {
            fprintf(stderr, "\rloadtest: %ld/%ld done, %ld failed", done, o.requests, failed);
            last_print = tn;
        }
    }
    double elapsed = now_s() - t0;
    if (!o.quiet && elapsed >= 1.0) fprintf(stderr, "\n");

    qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
    double sum = 0;
    for (long i = 0; i < ok; i++) sum += lat[i];

    printf("Load test results\n");
    printf("=================\n");
    printf("URL:              %s\n", o.url);
    printf("Total requests:   %ld\n", o.requests);
    printf("Concurrency:      %ld\n", o.concurrency);
    printf("Successful:       %ld (%.1f%%)\n", ok, 100.0 * (double)ok / (double)o.requests);
    printf("Failed:           %ld (%.1f%%)\n", failed, 100.0 * (double)failed / (double)o.requests);
    for (int i = 0; i < nreasons; i++) printf("  %-30s %ld\n", reasons[i].text, reasons[i].count);
    if (failed) printf("First failure:    %s\n", first_fail);
    printf("Total duration:   %.3f s\n", elapsed);
    printf("Requests/sec:     %.2f\n", (double)o.requests / elapsed);
    printf("Latency (successful requests):\n");
    if (ok) {
        print_ms("Min:", lat[0]);
        print_ms("Avg:", sum / (double)ok);
        print_ms("Max:", lat[ok - 1]);
        print_ms("P50:", pct(lat, ok, 50));
        print_ms("P95:", pct(lat, ok, 95));
        print_ms("P99:", pct(lat, ok, 99));
    } else {
        printf("  (none)\n");
    }

    for (long i = 0; i < o.concurrency; i++) curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    free(slots);
    free(lat);
    free(body);
    return failed ? 1 : 0;
}
