/* Shared answer helpers for API handlers: JSON errors with stable codes, and the JSON form of
 * a stored event. */
#ifndef OPS_OUT_H
#define OPS_OUT_H

#include <stdint.h>

#include "http/server.h"
#include "model/event.h"
#include "util/buf.h"

/* Answers {"error":{"code","message","field"?}}. field may be NULL. */
void out_error(struct http_req *req, unsigned status, const char *code, const char *message,
               const char *field);
/* Maps an engine/store error to its HTTP status and stable code, and answers it. */
void out_engine_error(struct http_req *req, int err);
/* Answers status with the JSON text in b (taken). */
void out_json(struct http_req *req, unsigned status, struct buf *b);
/* Appends the JSON object of a stored event. */
void out_event(struct buf *b, const struct event_rec *ev);
/* Appends "key":"<RFC 3339>" or "key":null when us is 0 and null_if_zero. */
void out_time_field(struct buf *b, const char *key, int64_t us, bool null_if_zero);

struct stream_meta;
/* Appends a stream's settings as {"maxAge","maxCount","truncateBefore"} (null when unset). */
void out_stream_meta(struct buf *b, const struct stream_meta *m);

/* True when the request says its body is JSON (Content-Type application/json, with or without
 * parameters); every surface refuses other bodies in its own envelope. */
bool out_is_json(struct http_req *req);

struct parse_error;
struct gate_mount;
/* The same in the envelope of mount m. */
void out_parse_error_as(const struct gate_mount *m, struct http_req *req,
                        const struct parse_error *pe);
/* Answers a refused request body or parameter (api/parse.h): the error JSON, or for
 * invalid_json the message with the byte offset. */
void out_parse_error(struct http_req *req, const struct parse_error *pe);
/* True when the request's Content-Type is application/json; else answers 415, false. */
bool out_require_json(struct http_req *req);
/* The request's JSON object body (a jansson json_t *, json_decref it), or NULL after
 * answering 415 or 400. */
void *out_body_object(struct http_req *req);
/* True when every member of the jansson object obj is one of allowed[0..n); else answers 400
 * invalid_request naming prefix + the member, false. */
bool out_only_members(struct http_req *req, const void *obj, const char *const *allowed,
                      size_t n, const char *prefix);

/* A dialect's DELETE of the database of c (its path names it; c->db, the gate's reference,
 * is let go first: the deletion waits for every user to let go): answers 204 once its files
 * are gone, or the engine's error, in c's mount envelope; 404 with not_found (the message) and
 * field when there is no such database. */
struct gate_call;
void out_delete_database(struct gate_call *c, struct slice name, const char *not_found,
                         const char *field);

#endif
