/* The OpenAPI 3.1 document of a route table: one operation per route, with its operationId,
 * path and query parameters, body and answer schemas, scope and error answers. The schemas
 * themselves are JSON text in openapi_schemas.json, linked into the binary as it is. */
#include "gate/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/limits.h"

/* openapi_schemas.json, NUL-terminated: {"Name": {schema}, ...}. */
extern const char openapi_schemas_json[];
__asm__(".section .rodata\n"
        ".global openapi_schemas_json\n"
        ".type openapi_schemas_json, @object\n"
        "openapi_schemas_json:\n"
        ".incbin \"src/api/openapi_schemas.json\"\n"
        ".byte 0\n"
        ".previous\n");

static const char *const NEED_NAME[] = {"none", "any", "read", "write", "admin"};

/* The JSON Schema of a query parameter of kind k. */
static void param_schema(struct buf *b, const struct route_param *p)
{
    switch (p->kind) {
    case PARAM_INTEGER:
        buf_adds(b, "{\"type\":\"integer\",\"minimum\":0}");
        break;
    case PARAM_POSITIVE:
        buf_adds(b, "{\"type\":\"integer\",\"minimum\":1}");
        break;
    case PARAM_LIMIT:
        buf_printf(b, "{\"type\":\"integer\",\"minimum\":1,\"maximum\":%d}", LIMIT_READ_MAX);
        break;
    case PARAM_BOOLEAN:
        buf_adds(b, "{\"type\":\"boolean\"}");
        break;
    case PARAM_TIME:
        buf_adds(b, "{\"type\":\"string\",\"format\":\"date-time\"}");
        break;
    case PARAM_ENUM:
        buf_adds(b, "{\"type\":\"string\",\"enum\":[");
        for (const char *v = p->values; *v;) {
            const char *comma = strchr(v, ',');
            size_t n = comma ? (size_t)(comma - v) : strlen(v);
            buf_adds(b, v == p->values ? "" : ",");
            buf_add_json_str(b, v, n);
            v += n + (comma ? 1 : 0);
        }
        buf_adds(b, "]}");
        break;
    case PARAM_FROM:
        buf_adds(b, "{\"oneOf\":[{\"type\":\"integer\",\"minimum\":1},"
                    "{\"type\":\"string\",\"const\":\"latest\"}]}");
        break;
    case PARAM_LIST:
        buf_adds(b, "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1}}");
        break;
    case PARAM_STRING:
        buf_adds(b, "{\"type\":\"string\"}");
        break;
    }
}

static void query_param(struct buf *b, const struct route_param *p)
{
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, p->name, strlen(p->name));
    buf_adds(b, ",\"in\":\"query\",\"required\":false,\"description\":");
    buf_add_json_str(b, p->doc, strlen(p->doc));
    if (p->kind == PARAM_LIST) { /* comma-separated, or the parameter repeated */
        buf_adds(b, ",\"style\":\"form\",\"explode\":false");
    }
    buf_adds(b, ",\"schema\":");
    param_schema(b, p);
    buf_addc(b, '}');
}

/* The OpenAPI path of a route pattern ("/" + pattern) and its path parameters. */
static void path_params(const char *pattern, struct buf *params)
{
    for (const char *p = strchr(pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        size_t n = (size_t)(end - p - 1);
        bool integer = n == 8 && !strncmp(p + 1, "position", 8);
        buf_adds(params, params->len ? "," : "");
        buf_adds(params, "{\"name\":");
        buf_add_json_str(params, p + 1, n);
        buf_printf(params, ",\"in\":\"path\",\"required\":true,\"schema\":%s}",
                   integer ? "{\"type\":\"integer\",\"minimum\":1}"
                           : "{\"type\":\"string\",\"minLength\":1}");
    }
}

static void parameters(struct buf *b, const struct route *r)
{
    struct buf params;
    buf_init(&params);
    path_params(r->pattern, &params);
    for (const struct route_param *p = r->params; p && p->name; p++) {
        buf_adds(&params, params.len ? "," : "");
        query_param(&params, p);
    }
    if (r->flags & ROUTE_OPEN_QUERY) { /* every other query parameter is the handler's */
        buf_adds(&params, params.len ? "," : "");
        buf_adds(&params, "{\"name\":\"params\",\"in\":\"query\",\"required\":false,"
                          "\"style\":\"form\",\"explode\":true,\"description\":\"Any other "
                          "query parameters: the view's parameters (strings, each name once)\","
                          "\"schema\":{\"type\":\"object\",\"additionalProperties\":"
                          "{\"type\":\"string\"}}}");
    }
    if (r->flags & ROUTE_IDEMPOTENT) {
        buf_adds(&params, params.len ? "," : "");
        buf_adds(&params, "{\"name\":\"Idempotency-Key\",\"in\":\"header\",\"required\":false,"
                          "\"description\":\"Replays the original answer for a retry (also "
                          "X-Idempotency-Key)\",\"schema\":{\"type\":\"string\","
                          "\"minLength\":1,\"maxLength\":255}}");
    }
    buf_printf(b, ",\"parameters\":[%.*s]", (int)params.len, params.ptr ? params.ptr : "");
    buf_fini(&params);
}

/* Answers that are not JSON: the media type of an answer schema, and the text one some
 * answers give instead when the client asks for it (Accept). */
static const struct {
    const char *schema; /* components/schemas name */
    const char *media;  /* its media type */
    const char *alt;    /* a text answer given instead (a string), or NULL */
} MEDIA[] = {
    {"PrometheusText", "text/plain", NULL},
    {"EventStream", "text/event-stream", NULL},
    {"BackupStream", "application/vnd.annals.backup", NULL},
    {"Index", "application/json", "text/html"}, /* a page for browsers */
};

/* One answer: its description and, when it has a body, its content. */
static void answer(struct buf *b, unsigned status, const struct route *r, const char *what)
{
    buf_printf(b, "\"%u\":{\"description\":", status);
    buf_add_json_str(b, what, strlen(what));
    if (r->response) {
        const char *media = "application/json", *alt = NULL;
        for (size_t i = 0; i < sizeof MEDIA / sizeof MEDIA[0]; i++) {
            if (!strcmp(MEDIA[i].schema, r->response)) {
                media = MEDIA[i].media;
                alt = MEDIA[i].alt;
            }
        }
        buf_printf(b, ",\"content\":{\"%s\":{\"schema\":{\"$ref\":"
                      "\"#/components/schemas/%s\"}}",
                   media, r->response);
        if (alt) {
            buf_printf(b, ",\"%s\":{\"schema\":{\"type\":\"string\"}}", alt);
        }
        buf_addc(b, '}');
    }
    buf_addc(b, '}');
}

static void responses(struct buf *b, const struct route *r)
{
    buf_adds(b, ",\"responses\":{");
    answer(b, r->status, r, r->summary);
    if (r->flags & ROUTE_DUPLICATE_200) {
        buf_addc(b, ',');
        answer(b, 200, r, "Every event was stored already (a retry): acknowledged with the "
                          "stored positions and duplicate: true; nothing was written");
    }
    if (r->flags & ROUTE_PENDING_202) {
        buf_adds(b, ",\"202\":{\"description\":\"Not caught up yet: ask again\","
                    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":"
                    "\"#/components/schemas/Pending\"}}}}");
    }
    if (r->flags & ROUTE_REPLACE_200) {
        buf_addc(b, ',');
        answer(b, 200, r, "Replaced what the name held (a new version)");
    }
    buf_adds(b, ",\"default\":{\"description\":\"An error (docs/api.md, Errors and limits)\","
                "\"content\":{\"application/json\":{\"schema\":{\"$ref\":"
                "\"#/components/schemas/Error\"}}}}}");
}

static void operation(struct buf *b, const struct route *r)
{
    char op[16];
    size_t i = 0;
    for (; r->method[i] && i + 1 < sizeof op; i++) {
        op[i] = (char)(r->method[i] - 'A' + 'a');
    }
    op[i] = '\0';
    buf_printf(b, "\"%s\":{\"operationId\":\"%s\",\"summary\":", op, r->op_id);
    buf_add_json_str(b, r->summary, strlen(r->summary));
    buf_printf(b, ",\"x-annals-scope\":\"%s\"", NEED_NAME[r->need]);
    parameters(b, r);
    if (r->need == NEED_NONE) {
        buf_adds(b, ",\"security\":[]");
    }
    if (r->request) {
        buf_printf(b, ",\"requestBody\":{\"required\":%s,\"content\":{\"application/json\":"
                      "{\"schema\":{\"$ref\":\"#/components/schemas/%s\"}}}}",
                   r->flags & ROUTE_BODY_OPTIONAL ? "false" : "true", r->request);
    }
    responses(b, r);
    buf_addc(b, '}');
}

void openapi_render(const struct route *routes, size_t n, const char *version, struct buf *b)
{
    buf_printf(b, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":\"Annals native API\","
               "\"version\":\"%s\",\"description\":\"Generated from the server's route table; "
               "semantics in docs/api.md.\"},\"paths\":{", version);
    bool *done = xcalloc(n ? n : 1, sizeof(*done));
    for (size_t i = 0, npaths = 0; i < n; i++) {
        if (done[i]) {
            continue;
        }
        buf_printf(b, "%s\"/%s\":{", npaths++ ? "," : "", routes[i].pattern);
        for (size_t j = i, nops = 0; j < n; j++) {
            if (!strcmp(routes[j].pattern, routes[i].pattern)) {
                done[j] = true;
                buf_adds(b, nops++ ? "," : "");
                operation(b, &routes[j]);
            }
        }
        buf_addc(b, '}');
    }
    free(done);
    buf_adds(b, "},\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\","
                "\"scheme\":\"bearer\"},\"apiKey\":{\"type\":\"apiKey\",\"in\":\"header\","
                "\"name\":\"X-API-Key\"}},\"schemas\":");
    buf_adds(b, openapi_schemas_json);
    buf_adds(b, "},\"security\":[{\"bearer\":[]},{\"apiKey\":[]}]}");
}
