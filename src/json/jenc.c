/* JSON text of jansson trees (jenc.h). */
#include "json/jenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest text of d that reads back to d, with ".0" when it looks like an integer (so
 * it stays a real through a round trip, as luajson does). */
static void add_real(struct buf *out, double d)
{
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (strtod(s, NULL) == d) {
            break;
        }
    }
    buf_adds(out, s);
    if (!strpbrk(s, ".eEn")) { /* n: inf, nan (never in a jansson tree) */
        buf_adds(out, ".0");
    }
}

/* Appends v's JSON (members in the tree's order) within max bytes from start; -1 when it
 * would not fit or nests past depth levels left. */
static int encode(const json_t *v, struct buf *out, size_t start, size_t max, int depth)
{
    const char *key;
    json_t *child;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (depth <= 0) return -1;
        buf_addc(out, '{');
        i = 0;
        json_object_foreach ((json_t *)v, key, child) {
            buf_adds(out, i++ ? "," : "");
            buf_add_json_str(out, key, strlen(key));
            buf_addc(out, ':');
            if (out->len - start > max || encode(child, out, start, max, depth - 1) < 0) {
                return -1;
            }
        }
        buf_addc(out, '}');
        break;
    case JSON_ARRAY:
        if (depth <= 0) return -1;
        buf_addc(out, '[');
        json_array_foreach (v, i, child) {
            buf_adds(out, i ? "," : "");
            if (encode(child, out, start, max, depth - 1) < 0) {
                return -1;
            }
        }
        buf_addc(out, ']');
        break;
    case JSON_STRING:
        buf_add_json_str(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: buf_add_i64(out, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: add_real(out, json_real_value(v)); break;
    case JSON_TRUE: buf_adds(out, "true"); break;
    case JSON_FALSE: buf_adds(out, "false"); break;
    case JSON_NULL: buf_adds(out, "null"); break;
    }
    return out->len - start > max ? -1 : 0;
}

int jenc_tree(const json_t *v, struct buf *out, size_t max, int depth)
{
    size_t start = out->len;
    if (encode(v, out, start, max, depth) == 0) {
        return 0;
    }
    out->len = start;
    if (out->cap) {
        out->ptr[start] = '\0';
    }
    return -1;
}
