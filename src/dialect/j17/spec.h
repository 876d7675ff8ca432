/* j17 specs (docs/dialects/j17.md, "Specs"): the JSON document that describes a j17
 * instance's domain, compiled once per deploy into an immutable struct j17_spec that the
 * dialect's routes read: aggregate types and their event types, each with a compiled JSON
 * Schema for its data, a Tick handler and implications; agent and target types; singletons;
 * modules (cache, sagas); projections; listeners.
 *
 * Pure: no I/O, no clock. A compiled spec is immutable and reference-counted: any thread may
 * read it and take or drop references. */
#ifndef DIALECT_J17_SPEC_H
#define DIALECT_J17_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum {
    J17_NAME_BYTES = 64,            /* a type name (aggregate, event, agent, target, singleton,
                                       saga, projection, listener): [a-z][a-z0-9_]{0,63} */
    J17_SPEC_BYTES = 2 * 1024 * 1024, /* a spec's JSON text */
    J17_AGG_TYPES_MAX = 256,        /* aggregate types in a spec */
    J17_EVENT_TYPES_MAX = 512,      /* event types of one aggregate type */
    J17_IMPLICATIONS_MAX = 32,      /* implications of one event type */
    J17_PROBLEMS_MAX = 64,          /* problems a failed compile reports (the rest: more) */
    J17_PROBLEM_PATH_BYTES = 256,   /* where a problem is ("aggregate_types.user.events.
                                       was_created.schema"), NUL included */
    J17_PROBLEM_MSG_BYTES = 192,    /* what it is, NUL included */
    J17_IMPLY_DEPTH = 4,            /* chained implications: an implied event's own
                                       implications run up to this depth (the trigger is 0) */
    J17_IMPLIED_MAX = 100,          /* implied events of one write, all depths together */
    J17_SCHEDULE_MIN_MS = 5 * 60 * 1000, /* a scheduled implication's least delay */
    J17_ID_BYTES = 128,             /* an aggregate id as written (UUID with a tag) */
    J17_AGENT_TYPES_MAX = 64,       /* agent_types */
    J17_TARGET_TYPES_MAX = 64,      /* target_types */
    J17_SINGLETONS_MAX = 256,       /* singletons */
    J17_PIPELINE_STEPS_MAX = 16,    /* steps of one pipeline implication */
    J17_CANCEL_ON_MAX = 16,         /* cancel_on entries of one scheduled implication */
    J17_SAGAS_MAX = 64,             /* modules.sagas */
    J17_SAGA_STEPS_MAX = 32,        /* steps of one saga */
    J17_AWAIT_EVENTS_MAX = 32,      /* event_types a saga step awaits */
    J17_PROJECTIONS_MAX = 64,       /* projections */
    J17_PROJ_SOURCES_MAX = 16,      /* sources plus include of one projection */
    J17_SELECT_DEPTH = 16,          /* nesting of a projection's select ($map, $lookup and
                                       objects) */
    J17_SELECT_NODES = 1024,        /* values in one projection's select */
    J17_LISTENERS_MAX = 32,         /* listeners */
    J17_LISTENER_FILTERS_MAX = 64,  /* aggregate_types plus event_types of one listener */
    J17_URL_BYTES = 2048,           /* a listener's url */
    J17_SECRET_BYTES = 256,         /* a listener's secret */
};

/* A scheduled implication's longest delay (a year). */
#define J17_SCHEDULE_MAX_MS (365ULL * 24 * 3600 * 1000)

/* One thing wrong with a spec (or an incompatible change). */
struct j17_problem {
    char path[J17_PROBLEM_PATH_BYTES]; /* dotted path in the spec, "" for the whole spec */
    char msg[J17_PROBLEM_MSG_BYTES];
};

struct j17_problems {
    struct j17_problem items[J17_PROBLEMS_MAX];
    size_t count;
    bool more;                         /* more problems than items */
};

struct j17_spec;
struct j17_agg;  /* an aggregate type */
struct j17_evt;  /* an event type of an aggregate type */

/* Compiles the spec text[0..len) (the spec object itself, not wrapped in {"spec": ...}).
 * Checks everything and reports every problem it finds (up to J17_PROBLEMS_MAX) in *pr:
 * JSON syntax, unknown top-level members, names, each event's schema (compiled with format
 * assertion), handler (tick_compile), implications (their kinds: emit, map, schedule,
 * pipeline; wasm and the container kinds are refused), agent_types (required, strings),
 * target_types, singletons, modules.cache (known aggregate types), modules.sagas,
 * projections and listeners. Returns 0 with *out (one reference for the caller),
 * ERR_INVALID with *pr filled, or ERR_TOOBIG (text over J17_SPEC_BYTES; *pr says so). */
int j17_spec_compile(const char *text, size_t len, struct j17_spec **out,
                     struct j17_problems *pr);

/* What j17_spec_compile_ex may change. j17_spec_options_default fills the defaults. */
struct j17_spec_options {
    uint64_t schedule_min_ms; /* a scheduled implication's least delay (J17_SCHEDULE_MIN_MS;
                                 a test setting may lower it) */
};

void j17_spec_options_default(struct j17_spec_options *opt);

/* j17_spec_compile with options (NULL: the defaults). Same returns. */
int j17_spec_compile_ex(const char *text, size_t len, const struct j17_spec_options *opt,
                        struct j17_spec **out, struct j17_problems *pr);

void j17_spec_ref(struct j17_spec *s);
/* Drops a reference; the last one frees the spec. NULL does nothing. */
void j17_spec_unref(struct j17_spec *s);

/* The changes from old to new that need "force": an aggregate type or an event type removed,
 * a member added to an event schema's top-level "required", a property of an event schema
 * removed or its "type" changed. Returns 0 (compatible) or ERR_CONFLICT with each change in
 * *pr. */
int j17_spec_compat(const struct j17_spec *old, const struct j17_spec *new,
                    struct j17_problems *pr);

/* The spec's minified JSON text (as deployed, members in the order given). Borrowed. */
struct slice j17_spec_text(const struct j17_spec *s);

/* ---- lookups ---- */

const struct j17_agg *j17_spec_agg(const struct j17_spec *s, struct slice type);
size_t j17_spec_agg_count(const struct j17_spec *s);
const struct j17_agg *j17_spec_agg_at(const struct j17_spec *s, size_t i); /* name order */
const char *j17_agg_name(const struct j17_agg *a);
/* True when the type is in modules.cache. */
bool j17_agg_cached(const struct j17_agg *a);
const struct j17_evt *j17_agg_event(const struct j17_agg *a, struct slice event_type);
const char *j17_evt_name(const struct j17_evt *e);

bool j17_spec_agent_type(const struct j17_spec *s, struct slice type);
bool j17_spec_target_type(const struct j17_spec *s, struct slice type);
/* True for "global" and the names in singletons. */
bool j17_spec_singleton(const struct j17_spec *s, struct slice id);

/* Appends the handlers of a, {"<event type>": <handler JSON>, ...}: the source of the
 * aggregate type's reducer (language tick, logic/tick_rt.c). */
void j17_agg_handlers(const struct j17_agg *a, struct buf *out);

/* ---- writes ---- */

/* Validates data (the event's "data" member; NULL when absent) against e's schema. Returns 0,
 * or ERR_INVALID with path the failing instance location dotted from "data" ("data",
 * "data.email", "data.items.2.sku"; cap bytes, NUL-terminated) and msg why. */
int j17_evt_validate(const struct j17_evt *e, const json_t *data, char *path, size_t path_cap,
                     char *msg, size_t msg_cap);

/* An event an implication derives. */
struct j17_implied {
    char agg_type[J17_NAME_BYTES + 1];
    char id[J17_ID_BYTES + 1];       /* canonical (j17_id_check) */
    char event_type[J17_NAME_BYTES + 1];
    json_t *data;                    /* owned */
    unsigned depth;                  /* 1: implied by the trigger, 2: by an implied event... */
    uint64_t delay_ms;               /* 0: written with the trigger; else a scheduled event */
    json_t *cancel_on;               /* scheduled: owned array of {"aggregate_type","id",
                                        "event_type"} (ids resolved), or NULL */
};

struct j17_implied_list {
    struct j17_implied *items;       /* owned */
    size_t count;
};

void j17_implied_list_fini(struct j17_implied_list *l);

/* Runs the implications of the event ctx (jpath_event_new's object for an event of a's
 * type e, with "metadata" as it will be stored) and, depth first, those of each implied event
 * up to J17_IMPLY_DEPTH, appending every implied event to out in order. Each implied event's
 * aggregate type and event type must be in s, its id valid (j17_id_check) and its data valid
 * against its schema. Returns 0; ERR_INVALID (*why names the implication and the fault:
 * "aggregate_types.user.events.was_created.implications[0]: ..."), ERR_TOOBIG (more than
 * J17_IMPLIED_MAX events or J17_IMPLY_DEPTH levels). On error out holds what was appended
 * (free it). */
int j17_imply(const struct j17_spec *s, const struct j17_agg *a, const struct j17_evt *e,
              const json_t *ctx, struct j17_implied_list *out, char *why, size_t why_cap);

/* ---- sagas, projections, listeners (read API) ----
 * Each is checked by j17_spec_compile and kept in the order the spec gives (an object's members
 * in their order). Pointers and strings are borrowed from the spec: valid while a reference to
 * it is held. */

struct j17_saga;
struct j17_projection;
struct j17_listener;

size_t j17_spec_saga_count(const struct j17_spec *s);
const struct j17_saga *j17_spec_saga_at(const struct j17_spec *s, size_t i);
const char *j17_saga_name(const struct j17_saga *g);
const char *j17_saga_trigger_agg(const struct j17_saga *g);   /* trigger.aggregate_type */
const char *j17_saga_trigger_event(const struct j17_saga *g); /* trigger.event_type */
/* The definition as deployed: {"trigger": {...}, "steps": [...]}. Within a step, $.prev in
 * "condition", "emit" and "compensate" is the event the previous step awaited ("$prev.x" is
 * read as "$.prev.x"). */
const json_t *j17_saga_json(const struct j17_saga *g);

/* ---- running sagas (docs/dialects/j17.md, "Running sagas") ----
 * A step's context ctx is the trigger event object {"type","key","id","data","metadata"} with
 * a member "prev": the event the previous step awaited (same shape), or null. */

/* The saga called name (NUL-terminated), or NULL. */
const struct j17_saga *j17_spec_saga(const struct j17_spec *s, const char *name);
size_t j17_saga_step_count(const struct j17_saga *g);
/* Step i's name (i < j17_saga_step_count). Borrowed. */
const char *j17_saga_step_name(const struct j17_saga *g, size_t i);
/* True when step i has an await: its aggregate type (*agg_type) and its event_types, an array
 * of 1 to J17_AWAIT_EVENTS_MAX strings (*event_types). Both borrowed from the spec. */
bool j17_saga_step_await(const struct j17_saga *g, size_t i, const char **agg_type,
                         const json_t **event_types);
/* Step i's timeout_ms; 0 when it has none (it waits for ever). */
uint64_t j17_saga_step_timeout_ms(const struct j17_saga *g, size_t i);
bool j17_saga_step_has_compensate(const struct j17_saga *g, size_t i);
/* Tests step i's condition against ctx (borrowed); *out true when the step has none. Returns 0,
 * or ERR_TOOBIG (the condition's step budget) with why (cap bytes). Pure. */
int j17_saga_step_test(const struct j17_saga *g, size_t i, const json_t *ctx, bool *out,
                       char *why, size_t cap);
/* Resolves step i's emit (compensate: its compensate) in ctx into *out (depth 1, no delay):
 * its aggregate type and event type must be in s, its id valid (made canonical), its data
 * ({} when absent) valid against the event's schema. s may be a later spec than g's (the one
 * in force): g's types are looked up in s. Returns 0 (out->data owned by *out: free with
 * j17_implied_list_fini or json_decref); ERR_NOTFOUND (compensate, and the step has none);
 * ERR_INVALID or ERR_TOOBIG with why ("modules.sagas.checkout.steps[0].emit: product.
 * was_reserved: implied data fails its schema at data.qty: ..."). Pure. */
int j17_saga_step_event(const struct j17_spec *s, const struct j17_saga *g, size_t i,
                        bool compensate, const json_t *ctx, struct j17_implied *out, char *why,
                        size_t cap);

size_t j17_spec_projection_count(const struct j17_spec *s);
const struct j17_projection *j17_spec_projection_at(const struct j17_spec *s, size_t i);
/* By name; NULL when there is none. */
const struct j17_projection *j17_spec_projection(const struct j17_spec *s, struct slice name);
const char *j17_projection_name(const struct j17_projection *p);
const char *j17_projection_for_each(const struct j17_projection *p); /* an aggregate type */
bool j17_projection_substreams(const struct j17_projection *p);     /* include_substreams */
/* The definition as deployed ({"for_each", "sources", "include"?, "select", ...}). */
const json_t *j17_projection_json(const struct j17_projection *p);

size_t j17_spec_listener_count(const struct j17_spec *s);
const struct j17_listener *j17_spec_listener_at(const struct j17_spec *s, size_t i);
const char *j17_listener_name(const struct j17_listener *l);
const char *j17_listener_url(const struct j17_listener *l);
const char *j17_listener_secret(const struct j17_listener *l); /* NULL when none */
/* The listener called name, or NULL. */
const struct j17_listener *j17_spec_listener(const struct j17_spec *s, struct slice name);
/* Its aggregate_types and event_types arrays of strings (borrowed), NULL when absent. */
const json_t *j17_listener_aggregate_types(const struct j17_listener *l);
const json_t *j17_listener_event_types(const struct j17_listener *l);
/* True when an event of agg_type / event_type is to be delivered to l: its aggregate_types
 * (absent: any) holds agg_type and its event_types (absent: any) holds "agg_type.event_type". */
bool j17_listener_matches(const struct j17_listener *l, const char *agg_type,
                          const char *event_type);

/* ---- identifiers (docs/dialects/j17.md, "Identifiers") ---- */

/* Checks an aggregate id (as in a URL, actor.id, target.id, or an implication's id): a UUID of
 * version 4 or 5 (any case; canonical lower case), a 9-character Crockford base32 humane code
 * (canonical upper case; I, L, O read as 1, 1, 0 are refused), "global" or a singleton of s
 * (s NULL: "global" only), or a UUID followed by ":" and a tag ([a-z0-9_-]{1,32}). Writes the
 * canonical form to canon (J17_ID_BYTES + 1). Returns 0 or ERR_INVALID. */
int j17_id_check(const struct j17_spec *s, struct slice id, char *canon);

/* ---- projection evaluation (docs/dialects/j17.md, "Projections (spec syntax)", "Evaluation")
 * Pure: the caller fetches the aggregate states and passes them in ctx, a JSON object
 * {source or include name: state}. A source whose aggregate has no events is null (or [] in
 * array mode). ctx is only read (never referenced nor changed): it may hold values other
 * threads read too. Strings returned are borrowed from the spec (valid while a reference to it
 * is held). Any thread. */

enum {
    J17_SELECT_STEPS = 100000,          /* one select evaluation: elements visited ($map, $lookup,
                                           [*], where fields) plus values built */
    J17_PROJECTION_OUT_NODES = 50000,   /* values built by one select evaluation */
    J17_PROJECTION_OUT_BYTES = 4 * 1024 * 1024, /* their strings and member names, in bytes */
    J17_PROJ_SOURCE_IDS_MAX = 1024,     /* ids one source names (mode array) */
};

/* Sources, in the order the definition gives them. */
size_t j17_projection_source_count(const struct j17_projection *p);
/* Source i's name; NULL when i is out of range (so are the three below). */
const char *j17_projection_source_name(const struct j17_projection *p, size_t i);
/* NULL for the "$key" source (the for_each aggregate itself), else the aggregate type. */
const char *j17_projection_source_type(const struct j17_projection *p, size_t i);
/* True for mode "array": the source is an array of states, one per id. */
bool j17_projection_source_array(const struct j17_projection *p, size_t i);

/* The ids that source i names, evaluated against ctx (the sources before it, as resolved, and
 * the includes): *ids is a new JSON array of canonical ids (j17_id_check), in the order the
 * path gives them: at most one for a plain source; any number for mode array, where [*] fans
 * out and a value that is an array gives its elements. Missing or null values, non-strings
 * and strings that are not valid ids are skipped (so an empty array is possible). Duplicates
 * are kept. Returns 0; ERR_INVALID (i out of range, a "$key" source, ctx not an object; *why
 * says which) or ERR_TOOBIG (more than J17_PROJ_SOURCE_IDS_MAX ids); *ids is NULL on error.
 * why: cap bytes, NUL-terminated; may be NULL. */
int j17_projection_source_ids(const struct j17_projection *p, size_t i, const json_t *ctx,
                              json_t **ids, char *why, size_t cap);

/* Includes, in the order the definition gives them: "pricing": "pricing_rules:global". */
size_t j17_projection_include_count(const struct j17_projection *p);
/* Include i's name, aggregate type and canonical id ("pricing", "pricing_rules", "global");
 * NULL when i is out of range. */
const char *j17_projection_include_name(const struct j17_projection *p, size_t i);
const char *j17_projection_include_type(const struct j17_projection *p, size_t i);
const char *j17_projection_include_id(const struct j17_projection *p, size_t i);

/* Builds the projection's document from ctx by evaluating its select (compiled once, with the
 * spec): literals are copied; a path ($.<name>..., $<variable>...) gives a copy of what it
 * names (.name, [n], [-n]; [*] maps the rest of the path over an array, giving an array;
 * anything missing gives null); objects and arrays are built member by member; $map gives an
 * array of "to" per element with the element bound to its variable (not an array: null);
 * $lookup gives the first element of the array whose every "where" field (a member name or a
 * relative path such as "a.b") is present and equal to the value (numbers by value): "select"
 * evaluated with it bound, or a copy of it; no match or not an array: null. *out is a new
 * reference that shares nothing with ctx or the spec. Returns 0; ERR_INVALID (ctx not an
 * object) or ERR_TOOBIG (over J17_SELECT_STEPS, J17_PROJECTION_OUT_NODES or
 * J17_PROJECTION_OUT_BYTES; *why names the budget); *out is NULL on error. */
int j17_projection_select(const struct j17_projection *p, const json_t *ctx, json_t **out,
                          char *why, size_t cap);

#endif
