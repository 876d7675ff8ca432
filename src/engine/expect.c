/* Expected-version semantics: see docs/api.md "Optimistic concurrency". */
#include "engine/expect.h"

bool expect_ok(const struct expect *e, uint64_t current)
{
    switch (e->kind) {
    case EXPECT_ANY: return true;
    case EXPECT_NO_STREAM: return current == 0;
    case EXPECT_EXISTS: return current > 0;
    case EXPECT_VERSION: return current == e->version;
    }
    return false;
}
