/* The wire format between the server (logic/js_rt.c) and annals-jsworker, written down in
 * docs/design/jsworker.md. One SOCK_STREAM socketpair per worker, passed as fd JSW_SOCKET_FD;
 * strict request/answer: the server sends one request frame and reads one answer frame.
 *
 * A frame is a fixed head, then nparts parts, each a u32 length and that many bytes. Integers
 * are in host byte order (both ends are one machine, one build). Requests:
 *
 *   LOAD   parts: name, source (JavaScript), entry names...   (cpu_ms bounds the top level)
 *   CALL   parts: entry, argument JSON texts...
 *   FOLD   parts: entry, state JSON, [extra JSON when JSW_FLAG_EXTRA], event JSON texts...
 *   UNLOAD no parts
 *   MAP    parts: entry, event JSON texts...                  (answer: the array of results)
 *   FOLD_KEYED parts: entry, states JSON object (empty with JSW_FLAG_CONTINUE), the n keys,
 *          the n event JSON texts                            (answer: the array of new states)
 *   CALL_CTX parts: entry, the ctx function names (NUL-separated, one part), argument JSON
 *          texts...                                          (the entry gets ctx last)
 *   HOST_REPLY parts: the host's answer JSON, or why it failed (JSW_FLAG_HOST_FAILED)
 *
 * LOAD with JSW_FLAG_WASM: the source part holds a WebAssembly module's bytes (decoded from
 * the component's base64 by the server).
 *
 * During a CALL_CTX the worker may send, before its answer, any number (at most
 * JSW_MAX_HOST_CALLS) of host-call frames: an answer head flagged JSW_REPLY_HOST_CALL whose
 * parts are the op name and the JSON array of its arguments. Each is answered by one
 * HOST_REPLY request; then the worker goes on, and sends further host calls or its answer.
 *
 * A keyed fold bigger than a frame is sent as several FOLD_KEYED frames: every frame but the
 * last has JSW_FLAG_MORE (the worker keeps the batch's states after answering), every frame
 * but the first JSW_FLAG_CONTINUE (it starts from the states kept). Any other request, and any
 * failure, drops the kept states.
 *
 * Answers: part 0 is the result JSON (kind 0) or the error message, then the console lines
 * the request produced (at most LOGIC_LOG_LINES, the latest kept). Right after start the
 * worker sends one answer (kind 0, no parts) when it is ready, or exits. An answer flagged
 * JSW_REPLY_EXITING is the worker's last (it crashed while serving the request).
 *
 * The worker runs as: annals-jsworker --mem-bytes N (N: the module's memory budget).
 */
#ifndef LOGIC_JSWORKER_PROTO_H
#define LOGIC_JSWORKER_PROTO_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

enum {
    JSW_SOCKET_FD = 3,                      /* the worker's end of the socketpair */
    JSW_MAX_FRAME_BYTES = 16 * 1024 * 1024, /* one frame, head included (bigger folds are
                                               sent as several frames) */
    JSW_MAX_PARTS = 1 << 18,                /* parts of one frame */
    /* What the worker's own buffers may take besides the module's memory budget: the request
     * frame, the answer (at most half a frame) and its copy, and the request's part table. */
    JSW_IO_BYTES = 2 * JSW_MAX_FRAME_BYTES + JSW_MAX_PARTS * 16,
    JSW_PART_HEAD_BYTES = 4,                /* the u32 length before each part */
    JSW_ENTRY_NAME_BYTES = 128,             /* an entry point's or module's name, NUL included */
    JSW_MAX_HOST_CALLS = 64,                /* ctx calls of one CALL_CTX request (the logic
                                               layer's command handlers read at most 64) */
    JSW_MAX_CTX_OPS = 32,                   /* ctx functions of one CALL_CTX request */
};

enum jsw_op {
    JSW_OP_LOAD = 1,
    JSW_OP_CALL = 2,
    JSW_OP_FOLD = 3,
    JSW_OP_UNLOAD = 4,
    JSW_OP_MAP = 5,
    JSW_OP_FOLD_KEYED = 6,
    JSW_OP_CALL_CTX = 7,   /* a call whose last argument is a ctx object (host calls) */
    JSW_OP_HOST_REPLY = 8, /* the server's answer to a host call (only inside CALL_CTX) */
};

enum {
    JSW_FLAG_EXTRA = 1,    /* request, FOLD: part 2 is the extra argument */
    JSW_FLAG_CONTINUE = 2, /* request, FOLD_KEYED: start from the states the previous
                              FOLD_KEYED kept (its states part is empty) */
    JSW_FLAG_MORE = 4,     /* request, FOLD_KEYED: more frames follow; keep the states */
    JSW_FLAG_WASM = 8,     /* request, LOAD: the source part is a WebAssembly module */
    JSW_FLAG_HOST_FAILED = 16, /* request, HOST_REPLY: the host call failed; part 0 says why */
    JSW_REPLY_EXITING = 1, /* answer: the worker crashed and exits after this answer */
    JSW_REPLY_HOST_CALL = 2, /* not the answer but a host call: parts op, arguments (JSON
                                array); the server sends a HOST_REPLY and reads on */
};

struct jsw_request_head {
    uint32_t len;          /* bytes after this field: the rest of the head and the parts */
    uint8_t op;            /* enum jsw_op */
    uint8_t flags;         /* JSW_FLAG_* */
    uint16_t reserved;     /* 0 */
    uint32_t module;       /* the server's id of the module (LOAD names it) */
    uint32_t cpu_ms;       /* CPU budget of this request */
    uint32_t output_bytes; /* output budget of this request's result */
    uint32_t nparts;       /* parts after the head */
};
static_assert(sizeof(struct jsw_request_head) == 24, "request head layout");

struct jsw_reply_head {
    uint32_t len;       /* bytes after this field */
    uint8_t kind;       /* enum logic_err_kind; 0 on success */
    uint8_t flags;      /* JSW_REPLY_* */
    uint16_t reserved;  /* 0 */
    int32_t line;       /* error position, 0 when unknown */
    int32_t column;
    uint32_t failed_at; /* FOLD, MAP, FOLD_KEYED: index of the failing event in the frame
                           (its number of events when none is to blame) */
    uint32_t cpu_us;    /* CPU time the request used in the worker */
    uint32_t nparts;    /* parts after the head */
};
static_assert(sizeof(struct jsw_reply_head) == 28, "reply head layout");

/* Reads the part at *pos of frame[0..len) into *p and *n and advances *pos; returns 0, or -1 when
 * the frame ends too soon. */
static inline int jsw_part_next(const char *frame, size_t len, size_t *pos, const char **p,
                                uint32_t *n)
{
    uint32_t plen;
    if (len - *pos < JSW_PART_HEAD_BYTES) return -1;
    memcpy(&plen, frame + *pos, sizeof plen);
    *pos += JSW_PART_HEAD_BYTES;
    if (len - *pos < plen) return -1;
    *p = frame + *pos;
    *n = plen;
    *pos += plen;
    return 0;
}

#endif
