/* ASSERT is always compiled in; DEBUG_ASSERT only with DEBUG=1. Never assert on input bytes. */
#ifndef UTIL_ASSERT_H
#define UTIL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(x)                                                                          \
    do {                                                                                   \
        if (!(x)) {                                                                        \
            fprintf(stderr, "assertion failed: %s at %s:%d\n", #x, __FILE__, __LINE__);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#ifdef DEBUG
#define DEBUG_ASSERT(x) ASSERT(x)
#else
#define DEBUG_ASSERT(x) ((void)0)
#endif

#endif
