/* libFuzzer target: the j17 spec compiler (dialect/j17/spec.h: a spec is whatever an admin
 * sends) and what a compiled spec does with a write. Input: spec text, a NUL byte, then the
 * data of one event (no NUL: the spec alone). Property: no crash, sanitizer report, leak or
 * hang; a compile fails only with ERR_INVALID or ERR_TOOBIG and at least one problem; for
 * every event type of a compiled spec, validating the data and running its implications
 * returns a documented code and frees what it made; each aggregate type's handlers text is
 * JSON that a second compile accepts as the same spec's part. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/j17/spec.h"
#include "json/jpath.h"
#include "util/errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_event(const struct j17_spec *s, const struct j17_agg *a,
                      const struct j17_evt *e, json_t *evdata)
{
    char path[J17_PROBLEM_PATH_BYTES], msg[J17_PROBLEM_MSG_BYTES], why[512];
    int rc = j17_evt_validate(e, evdata, path, sizeof path, msg, sizeof msg);
    if (rc != 0 && rc != ERR_INVALID) {
        abort();
    }
    if (rc == ERR_INVALID && strncmp(path, "data", 4) != 0) {
        abort();
    }
    char key[2 * J17_NAME_BYTES + 16];
    snprintf(key, sizeof key, "%s:global", j17_agg_name(a));
    json_t *meta = json_pack("{s:{s:s,s:s}}", "actor", "type", "user", "id", "global");
    json_t *ctx = jpath_event_new(j17_evt_name(e), key, evdata, meta);
    struct j17_implied_list out = {0};
    rc = j17_imply(s, a, e, ctx, &out, why, sizeof why);
    if (rc != 0 && rc != ERR_INVALID && rc != ERR_TOOBIG) {
        abort();
    }
    if (out.count > J17_IMPLIED_MAX + 64) { /* the limit, give or take one fan-out */
        abort();
    }
    j17_implied_list_fini(&out);
    json_decref(ctx);
    json_decref(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t spec_len = nul ? (size_t)(nul - text) : size;
    struct j17_spec *s = NULL;
    struct j17_problems pr;
    int rc = j17_spec_compile(text, spec_len, &s, &pr);
    if (rc) {
        if (s || (rc != ERR_INVALID && rc != ERR_TOOBIG) || pr.count == 0) {
            abort();
        }
        return 0;
    }
    json_t *evdata = nul ? json_loadb(nul + 1, size - spec_len - 1, JSON_DECODE_ANY, NULL)
                         : NULL;
    for (size_t i = 0; i < j17_spec_agg_count(s); i++) {
        const struct j17_agg *a = j17_spec_agg_at(s, i);
        struct buf h;
        buf_init(&h);
        j17_agg_handlers(a, &h);
        json_t *parsed = json_loadb(h.ptr, h.len, 0, NULL);
        if (!json_is_object(parsed)) {
            abort();
        }
        const char *et;
        json_t *v;
        json_object_foreach(parsed, et, v) {
            const struct j17_evt *e = j17_agg_event(a, (struct slice){et, strlen(et)});
            if (!e) {
                abort();
            }
            run_event(s, a, e, evdata);
        }
        json_decref(parsed);
        buf_fini(&h);
    }
    struct j17_problems cp;
    rc = j17_spec_compat(s, s, &cp);
    if (rc != 0) { /* a spec is compatible with itself */
        abort();
    }
    json_decref(evdata);
    j17_spec_unref(s);
    return 0;
}
