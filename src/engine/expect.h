/* Expected-version checks for appends. Pure. */
#ifndef ENGINE_EXPECT_H
#define ENGINE_EXPECT_H

#include <stdbool.h>
#include <stdint.h>

enum expect_kind {
    EXPECT_ANY,       /* no check (default) */
    EXPECT_NO_STREAM, /* the stream must not exist (version 0) */
    EXPECT_EXISTS,    /* the stream must have at least one event */
    EXPECT_VERSION,   /* the stream's version must equal version (0 = must not exist) */
};

/* What an append expects of its stream. */
struct expect {
    enum expect_kind kind; /* which check */
    uint64_t version;      /* for EXPECT_VERSION */
};

/* Returns true when a stream whose current version is current (0 = absent) satisfies e. */
bool expect_ok(const struct expect *e, uint64_t current);

#endif
