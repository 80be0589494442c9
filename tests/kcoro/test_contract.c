/* test_contract: the header's promises about ownership and files (issue 6
 * item 21): one ownership rule after -ECANCELED for kc_chan_send_c and
 * kc_select; -ENOMEM from an unlimited send leaves the element with the
 * caller; every source file the header and docs name exists.
 *
 * Linked with -Wl,--wrap=malloc: the library's (and this file's) malloc
 * calls go through wrap_malloc below, which fails allocations of at least
 * `fail_from` bytes while that is set, so a growing channel meets ENOMEM on
 * demand. Other allocations pass through. */
#include <sys/stat.h>

#include "kt.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static _Atomic size_t fail_from; /* 0: never fail */

void *__wrap_malloc(size_t n)
{
    size_t f = atomic_load_explicit(&fail_from, memory_order_relaxed);
    if (f && n >= f) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

static kc_select_clause_t TX(kc_chan_t *ch, int *buf)
{
    return (kc_select_clause_t){ .ch = ch, .op = KC_SELECT_SEND, .buf = buf, .result = 0 };
}

static kc_select_clause_t RX(kc_chan_t *ch, int *buf)
{
    return (kc_select_clause_t){ .ch = ch, .op = KC_SELECT_RECV, .buf = buf, .result = 0 };
}

/* ---- -ECANCELED: the caller keeps the element, for send_c and select ----- */

Test(contract, send_c_cancelled_keeps_element_with_caller)
{
    int kinds[] = { KC_BUFFERED, KC_RENDEZVOUS, KC_UNLIMITED, KC_CONFLATED };
    for (size_t k = 0; k < 4; k++) {
        struct kt_drops d;
        kt_drops_init(&d);
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 1);
        kc_chan_set_undelivered(ch, kt_drops_fn, &d);
        kc_cancel_t *tok = kt_token(NULL);
        kc_cancel_trigger(tok);
        int v = 31;
        cr_assert_eq(kc_chan_send_c(ch, &v, -1, tok), -ECANCELED);
        cr_assert_eq(kc_chan_send_c(ch, &v, 0, tok), -ECANCELED);
        kc_zdesc z = { .addr = &v, .len = 4 };
        kc_chan_t *dc = NULL;
        cr_assert_eq(kc_chan_make_desc(&dc, kinds[k], 1), 0);
        kc_chan_set_undelivered(dc, kt_drops_fn, &d);
        cr_assert_eq(kc_chan_send_desc_c(dc, &z, -1, tok), -ECANCELED);
        cr_assert_eq(kt_drops_count(&d), 0, "kind %d: %zu callbacks after -ECANCELED", kinds[k],
                     kt_drops_count(&d));
        kc_chan_snapshot_t s;
        kc_chan_snapshot(ch, &s);
        cr_assert_eq(s.fail_canceled, 2);
        cr_assert_eq(s.dropped, 0);
        cr_assert_eq(kc_chan_len(ch), 0);
        kc_chan_destroy(dc);
        kc_chan_destroy(ch);
        cr_assert_eq(kt_drops_count(&d), 0);
        kc_cancel_destroy(tok);
    }
}

Test(contract, blocked_send_c_cancelled_keeps_element_with_caller)
{
    int kinds[] = { KC_BUFFERED, KC_RENDEZVOUS };
    for (size_t k = 0; k < 2; k++) {
        struct kt_drops d;
        kt_drops_init(&d);
        kc_chan_t *ch = kt_chan(kinds[k], sizeof(int), 1);
        kc_chan_set_undelivered(ch, kt_drops_fn, &d);
        if (kinds[k] == KC_BUFFERED) {
            int one = 1;
            cr_assert_eq(kc_chan_send(ch, &one, 0), 0); /* full */
        }
        kc_cancel_t *tok = kt_token(NULL);
        struct kt_op o;
        pthread_t t;
        kt_op_start(&t, &o, ch, KT_SEND, 77, -1, tok);
        kt_wait_parked(&o.park);
        kc_cancel_trigger(tok);
        kt_join(t, KT_PROMPT_MS);
        cr_assert_eq(o.rc, -ECANCELED);
        cr_assert_eq(kt_drops_count(&d), 0, "kind %d: the cancelled 77 went to the callback",
                     kinds[k]);
        kc_chan_destroy(ch);
        cr_assert_eq(kt_drops_times(&d, 77), 0);
        kc_cancel_destroy(tok);
    }
}

/* A select with send clauses on two channels, cancelled before and while
 * blocked: no element reaches any callback (and none was sent). */
struct sel_op {
    kc_select_clause_t cl[2];
    const kc_cancel_t *cancel;
    int rc;
    struct kt_park park;
};

static void *sel_thread(void *arg)
{
    struct sel_op *s = arg;
    kt_park_enter(&s->park);
    s->rc = kc_select(s->cl, 2, KC_SELECT_UNBIASED, -1, s->cancel);
    atomic_store(&s->park.done, true);
    return NULL;
}

Test(contract, select_cancelled_keeps_elements_with_caller)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *rv = kt_chan(KC_RENDEZVOUS, sizeof(int), 0);
    kc_chan_t *full = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_set_undelivered(rv, kt_drops_fn, &d);
    kc_chan_set_undelivered(full, kt_drops_fn, &d);
    int one = 1;
    cr_assert_eq(kc_chan_send(full, &one, 0), 0);
    int a = 51, b = 52;

    kc_cancel_t *set = kt_token(NULL);
    kc_cancel_trigger(set);
    kc_select_clause_t cl[2] = { TX(rv, &a), TX(full, &b) };
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, -1, set), -ECANCELED);

    kc_cancel_t *tok = kt_token(NULL);
    struct sel_op s = { .cl = { TX(rv, &a), TX(full, &b) }, .cancel = tok, .rc = 1 };
    pthread_t t;
    kt_start(&t, sel_thread, &s);
    kt_wait_parked(&s.park);
    kc_cancel_trigger(tok);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(s.rc, -ECANCELED);
    cr_assert_eq(kt_drops_count(&d), 0, "%zu callbacks after a cancelled select",
                 kt_drops_count(&d));
    int v = 0;
    cr_assert_eq(kc_chan_recv(full, &v, 0), 0);
    cr_assert_eq(v, 1, "only the element sent before is in the channel");
    cr_assert_eq(kc_chan_recv(full, &v, 0), -EAGAIN);
    kc_chan_destroy(rv);
    kc_chan_destroy(full);
    cr_assert_eq(kt_drops_count(&d), 0);
    kc_cancel_destroy(set);
    kc_cancel_destroy(tok);
}

/* ---- -ENOMEM from a growing unlimited channel ----------------------------- */

Test(contract, unlimited_send_enomem_keeps_element_and_channel)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 4);
    kc_chan_set_undelivered(u, kt_drops_fn, &d);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kc_chan_send(u, &i, 0), 0);
    int v = 4;
    atomic_store(&fail_from, 8 * sizeof(int)); /* the doubled buffer */
    int rc0 = kc_chan_send(u, &v, 0);
    int rc1 = kc_chan_send(u, &v, -1);
    kc_cancel_t *tok = kt_token(NULL);
    int rc2 = kc_chan_send_c(u, &v, -1, tok);
    atomic_store(&fail_from, 0);
    cr_assert_eq(rc0, -ENOMEM);
    cr_assert_eq(rc1, -ENOMEM);
    cr_assert_eq(rc2, -ENOMEM);
    cr_assert_eq(kt_drops_count(&d), 0, "-ENOMEM handed the element to the callback");
    cr_assert_eq(kc_chan_len(u), 4, "a failed send changed the channel");
    kc_chan_snapshot_t s;
    kc_chan_snapshot(u, &s);
    cr_assert_eq(s.sends, 4);
    cr_assert_eq(s.dropped, 0);
    /* The caller still has its element: the retry goes through, in order. */
    cr_assert_eq(kc_chan_send(u, &v, 0), 0);
    for (int i = 0; i < 5; i++) {
        int out = -1;
        cr_assert_eq(kc_chan_recv(u, &out, 0), 0);
        cr_assert_eq(out, i);
    }
    kc_chan_destroy(u);
    kc_cancel_destroy(tok);
}

Test(contract, select_send_enomem_fails_whole_select)
{
    struct kt_drops d;
    kt_drops_init(&d);
    kc_chan_t *u = kt_chan(KC_UNLIMITED, sizeof(int), 2);
    kc_chan_t *empty = kt_chan(KC_BUFFERED, sizeof(int), 1);
    kc_chan_set_undelivered(u, kt_drops_fn, &d);
    int x = 0;
    cr_assert_eq(kc_chan_send(u, &x, 0), 0);
    cr_assert_eq(kc_chan_send(u, &x, 0), 0); /* full: the next send grows */
    int in = -1, out = 9;
    kc_select_clause_t cl[2] = { RX(empty, &in), TX(u, &out) };
    atomic_store(&fail_from, 4 * sizeof(int));
    int rc = kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL);
    atomic_store(&fail_from, 0);
    cr_assert_eq(rc, -ENOMEM, "select returned %d (clause result %d)", rc,
                 rc >= 0 ? cl[rc].result : 0);
    cr_assert_eq(kc_chan_len(u), 2);
    cr_assert_eq(kt_drops_count(&d), 0);
    cr_assert_eq(in, -1);
    cr_assert_eq(kc_select(cl, 2, KC_SELECT_BIASED, -1, NULL), 1, "retry after memory is back");
    cr_assert_eq(cl[1].result, 0);
    cr_assert_eq(kc_chan_len(u), 3);
    kc_chan_destroy(u);
    kc_chan_destroy(empty);
}

/* ---- the files the header names exist ------------------------------------ */

/* Every "src/kcoro/<name>.[ch]" mentioned in `rel` must exist. */
static int check_refs(const char *rel, char *missing, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FERRY_SOURCE_DIR, rel);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    int refs = 0;
    for (const char *p = text; (p = strstr(p, "src/kcoro/")); p++) {
        size_t len = strspn(p + 10, "abcdefghijklmnopqrstuvwxyz0123456789_.");
        while (len && p[10 + len - 1] == '.')
            len--; /* sentence end */
        if (len < 3 || !(p[10 + len - 2] == '.' && (p[10 + len - 1] == 'h' || p[10 + len - 1] == 'c')))
            continue;
        char file[1200];
        snprintf(file, sizeof file, "%s/src/kcoro/%.*s", FERRY_SOURCE_DIR, (int)len, p + 10);
        struct stat st;
        refs++;
        if (stat(file, &st) != 0 && strlen(missing) + len + 4 < cap) {
            strcat(missing, " ");
            strncat(missing, p + 10, len);
            strcat(missing, " (");
            strcat(missing, rel);
            strcat(missing, ")");
        }
    }
    return refs;
}

Test(contract, files_named_by_header_and_docs_exist)
{
    char missing[512] = "";
    int refs = check_refs("include/kcoro/kcoro.h", missing, sizeof missing);
    cr_assert_gt(refs, 0, "the header names the parker's file");
    check_refs("docs/kcoro.md", missing, sizeof missing);
    cr_assert_eq(missing[0], '\0', "named but missing:%s", missing);
}
