/* libFuzzer target: query and condition parsers (POST /query bodies, GET query parameters,
 * multi-stream append bodies with their condition filters) and filter evaluation. Properties:
 * no crash or sanitizer report; an accepted query has at most FILTER_MAX_ITEMS items, each
 * atom holds 1..FILTER_MAX_PATTERNS patterns; evaluating it against a fixed event terminates;
 * canonical tag text round-trips through filter_next_tag. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/parse.h"
#include "ops/qparse.h"
#include "query/filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_filter(const struct filter *f)
{
    if (f->nitems > FILTER_MAX_ITEMS) {
        abort();
    }
    for (size_t i = 0; i < f->nitems; i++) {
        for (size_t a = 0; a < f->items[i].natoms; a++) {
            size_t n = f->items[i].atoms[a].npats;
            if (n < 1 || n > FILTER_MAX_PATTERNS) {
                abort();
            }
        }
    }
    struct event_rec ev = {.stream = {"order-1", 7}, .type = {"order.placed", 12},
                           .tags = {"[\"a\",\"b\\\"c\"]", 13}, .subject = {"s/1", 3}};
    (void)filter_match(f, &ev);
}

/* GET parameters from the input: "name=value" lines. */
struct params {
    char *text;
};

static const char *param(void *arg, const char *name)
{
    struct params *p = arg;
    size_t n = strlen(name);
    for (char *line = p->text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, name, n) == 0 && line[n] == '=') {
            return line + n + 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct slice body = {(const char *)data, size};
    struct parsed_query pq;
    struct parse_error pe;
    if (parse_query_body(body, &pq, &pe) == 0) {
        check_filter(&pq.filter);
    }
    parsed_query_fini(&pq);

    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *c = text; c < text + size; c++) {
        *c = *c == '\0' ? '\n' : *c; /* a NUL would end the "query string" early */
    }
    struct params p = {text};
    if (parse_query_params(param, &p, &pq, &pe) == 0) {
        check_filter(&pq.filter);
    }
    parsed_query_fini(&pq);
    free(text);

    struct filter f;
    filter_init(&f);
    if (parse_filter_text(body, "q", &f, &pe) == 0) {
        check_filter(&f);
        filter_fini(&f);
    }

    static const struct limits lim = {.body_bytes = 1 << 20, .batch_events = 100,
                                      .event_bytes = 1 << 16};
    struct parsed_multi pm;
    if (parse_multi_append(body, &lim, 0, &pm, &pe) == 0) {
        parse_multi_fini(&pm);
    }
    return 0;
}
