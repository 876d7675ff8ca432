/* JSON text of jansson trees with numbers as they read: a real is written in the shortest
 * form that reads back to the same double ("0.1", not jansson's "0.10000000000000001"), with
 * ".0" when it would read as an integer, so it stays a real. Members in the tree's order.
 * Pure; any thread. */
#ifndef JSON_JENC_H
#define JSON_JENC_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

/* Appends v's JSON text to out if it fits in max bytes and nests at most depth levels;
 * returns 0, or -1 with out as it was. */
int jenc_tree(const json_t *v, struct buf *out, size_t max, int depth);

#endif
