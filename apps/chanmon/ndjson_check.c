/* chanmon_ndjson_check: reads chanmon --headless output on stdin and checks
 * that every line is one JSON object with the documented fields and types,
 * that the data channels moved messages, and that each channel's last line
 * shows it closed. Exit 0 when all holds; prints what failed otherwise. */
#include <jansson.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_CHANNELS 256

struct seen {
    char name[64];
    long long recvs;  /* latest cumulative recvs */
    bool closed;      /* closed flag of the latest line */
};

static const struct {
    const char *key;
    int type; /* JSON_* */
} fields[] = {
    {"ts", JSON_REAL},           {"name", JSON_STRING},         {"kind", JSON_STRING},
    {"len", JSON_INTEGER},       {"sends", JSON_INTEGER},       {"recvs", JSON_INTEGER},
    {"bytes_recv", JSON_INTEGER}, {"sends_per_sec", JSON_REAL}, {"recvs_per_sec", JSON_REAL},
    {"bytes_per_sec", JSON_REAL}, {"failures", JSON_INTEGER},  {"closed", -1 /* bool */},
};

int main(void)
{
    static struct seen seen[MAX_CHANNELS];
    size_t nseen = 0, lines = 0;
    char buf[4096];
    int bad = 0;

    while (fgets(buf, sizeof buf, stdin)) {
        json_error_t err;
        lines++;
        json_t *o = json_loads(buf, 0, &err);
        if (!json_is_object(o)) {
            fprintf(stderr, "line %zu: not a JSON object (%s): %s", lines, err.text, buf);
            bad = 1;
            json_decref(o);
            continue;
        }
        for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
            json_t *v = json_object_get(o, fields[i].key);
            bool ok = fields[i].type == -1 ? json_is_boolean(v)
                                           : v && (int)json_typeof(v) == fields[i].type;
            if (!ok) {
                fprintf(stderr, "line %zu: field '%s' missing or of the wrong type\n", lines,
                        fields[i].key);
                bad = 1;
            }
        }
        json_t *cap = json_object_get(o, "cap");
        if (!json_is_integer(cap) && !json_is_null(cap)) {
            fprintf(stderr, "line %zu: field 'cap' must be an integer or null\n", lines);
            bad = 1;
        }
        const char *name = json_string_value(json_object_get(o, "name"));
        if (name) {
            size_t i = 0;
            while (i < nseen && strcmp(seen[i].name, name) != 0)
                i++;
            if (i == nseen && nseen < MAX_CHANNELS)
                snprintf(seen[nseen++].name, sizeof seen[0].name, "%s", name);
            if (i < nseen) {
                seen[i].recvs = json_integer_value(json_object_get(o, "recvs"));
                seen[i].closed = json_is_true(json_object_get(o, "closed"));
            }
        }
        json_decref(o);
    }
    size_t data = 0;
    for (size_t i = 0; i < nseen; i++) {
        if (strncmp(seen[i].name, "data.", 5) != 0)
            continue;
        data++;
        if (seen[i].recvs <= 0) {
            fprintf(stderr, "channel %s received nothing\n", seen[i].name);
            bad = 1;
        }
        if (!seen[i].closed) {
            fprintf(stderr, "channel %s not closed in its last line\n", seen[i].name);
            bad = 1;
        }
    }
    if (lines < 2 || data == 0) {
        fprintf(stderr, "too little output: %zu lines, %zu data channels\n", lines, data);
        bad = 1;
    }
    if (!bad)
        printf("ndjson ok: %zu lines, %zu channels\n", lines, nseen);
    return bad;
}
