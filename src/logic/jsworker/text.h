/* Pure helpers of the worker, in C so the C++ shim stays small: UTF-16 pieces from the engine
 * turned into UTF-8 for a write function, a bounded line buffer, the nesting depth of JSON
 * text, the kind an engine error message means, and the Math.random sequence. No I/O, no
 * allocation, no engine calls. */
#ifndef LOGIC_JSWORKER_TEXT_H
#define LOGIC_JSWORKER_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logic/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Receives UTF-8 text in pieces; returns false to stop (the output budget is spent). */
typedef bool jsw_write_fn(void *arg, const char *p, size_t n);

/* UTF-16 code units in, UTF-8 out to w. Zero-initialise, then set w and arg. */
struct jsw_utf8_sink {
    jsw_write_fn *w;
    void *arg;
    uint16_t high;   /* a high surrogate waiting for its pair */
    bool is_stopped; /* w refused a piece */
    size_t written;  /* bytes w accepted */
};

/* Converts p[0..n) (lone surrogates become U+FFFD) and writes it; false once w refused. */
bool jsw_utf8_put(struct jsw_utf8_sink *s, const uint16_t *p, size_t n);

/* A line of at most cap bytes; longer text is cut. */
struct jsw_line {
    char *p;
    size_t len;
    size_t cap;
};

/* A jsw_write_fn appending to a struct jsw_line (arg); false once the line is full. */
bool jsw_line_add(void *arg, const char *p, size_t n);

/* True when the JSON text nests at most max arrays and objects deep. */
bool jsw_json_depth_ok(const char *p, size_t n, int max);

/* The index of the first item of the JSON array text p[0..n) that nests more than max arrays
 * and objects deep itself, or SIZE_MAX when none does. */
size_t jsw_json_deep_item(const char *p, size_t n, int max);

/* What an uncaught error's message (as "Name: text") means: LOGIC_E_MEMORY for the engine's
 * out-of-memory errors, LOGIC_E_FORBIDDEN for eval, imports and the host objects of other
 * runtimes (require, process, fetch, ...), else kind. */
enum logic_err_kind jsw_classify(const char *message, enum logic_err_kind kind);

/* The next Math.random() value in [0, 1) from *state (splitmix64). */
double jsw_random_next(uint64_t *state);

#ifdef __cplusplus
}
#endif

#endif
