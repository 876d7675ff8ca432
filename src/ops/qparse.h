/* Parsing of native query requests (docs/api.md, "Querying the log") into a filter
 * (query/filter.h) and an engine query: from GET parameters or a POST /query JSON body. Pure:
 * text in, structures out; every refusal names its parameter or member. */
#ifndef OPS_QPARSE_H
#define OPS_QPARSE_H

#include "ops/parse.h"
#include "engine/engine.h"
#include "query/filter.h"

enum { QUERY_BUDGET = 65536, SELECTOR_MAX_DEPTH = 8 };

/* A parsed query. q.filter points at filter: do not copy the struct. */
struct parsed_query {
    struct filter filter;
    struct engine_query q;
};

/* Returns the value of the nth occurrence (from 0) of query parameter name (decoded), or NULL
 * when there are fewer. A list parameter (types, streams, category, tags, subject) may be
 * repeated: every occurrence adds values. */
typedef const char *param_fn(void *arg, const char *name, size_t nth);

/* Builds a query from GET parameters (types, streams, category, tags, subject, from, to,
 * direction, limit, recordedFrom, recordedTo, timeFrom, timeTo, asOf, asOfTime). Returns 0, or
 * ERR_INVALID with *err filled (400 invalid_parameter naming the parameter); out must be
 * freed with parsed_query_fini either way. */
int parse_query_params(param_fn *get, void *arg, struct parsed_query *out,
                       struct parse_error *err);
/* The same from a POST /query body, plus items and selector. Errors are 400 invalid_json or
 * invalid_request naming the member. */
int parse_query_body(struct slice body, struct parsed_query *out, struct parse_error *err);
void parsed_query_fini(struct parsed_query *pq);

/* Parses a query object's filter (types, streams, categories, tags, subjects, items,
 * selector; no ranges) from JSON text already validated, into *out (initialised here; free
 * with filter_fini on success). Errors are 400 invalid_request with field under `field`. */
int parse_filter_text(struct slice text, const char *field, struct filter *out,
                      struct parse_error *err);

/* Reads asOf / asOfTime parameters into *out. Returns 0 or ERR_INVALID with *err filled. */
int parse_as_of_params(param_fn *get, void *arg, struct as_of *out, struct parse_error *err);

#endif
