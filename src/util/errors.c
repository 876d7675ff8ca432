/* Names of error codes, and the DEBUG-build origin trace. */
#include "util/errors.h"

#include <stdio.h>

const char *err_name(int err)
{
    switch (err) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid";
    case ERR_NOTFOUND: return "not_found";
    case ERR_EXISTS: return "exists";
    case ERR_CONFLICT: return "conflict";
    case ERR_IO: return "io_error";
    case ERR_CORRUPT: return "corrupt";
    case ERR_NOSPACE: return "no_space";
    case ERR_TOOBIG: return "too_big";
    case ERR_NOMEM: return "out_of_memory";
    case ERR_SHUTDOWN: return "shutting_down";
    case ERR_PROTOCOL: return "protocol_error";
    case ERR_GONE: return "gone";
    case ERR_DELETED: return "stream_deleted";
    case ERR_DENIED: return "denied";
    }
    return "unknown_error";
}

#ifdef DEBUG
void err_trace(int err, const char *file, int line)
{
    fprintf(stderr, "err %s at %s:%d\n", err_name(err), file, line);
}
#endif
