/* The Lua 5.4 runtime: user code in process, one lua_State per module, in a sandbox
 * (docs/design/logic.md, "Lua runtime").
 *
 * Reached through logic/runtime.h (logic_load with LOGIC_LANG_LUA); nothing else is exported.
 * The environment may be NULL for Lua. A module is used by one thread at a time; its CPU
 * limit is measured on the calling thread's CPU clock. The thread needs 512 KiB of C stack
 * (give it 1 MiB): Lua stops its own C recursion at 200 levels, the sandbox's pattern matcher
 * at LOGIC_LUA_PATTERN_DEPTH, the JSON mapping at LOGIC_MAX_JSON_DEPTH; 256 KiB crashed in
 * 200 levels of gsub callbacks.
 */
#ifndef LOGIC_LUA_RT_H
#define LOGIC_LUA_RT_H

#include "logic/runtime.h"

enum {
    LOGIC_LUA_HOOK_INSTRUCTIONS = 1000, /* VM instructions between two CPU-deadline checks */
    LOGIC_LUA_C_LOOP_CHECK = 1024,      /* iterations of a sandbox C loop between checks */
    LOGIC_LUA_ALLOC_CHECK_BYTES = 1 << 20, /* bytes allocated in a call between checks */
    LOGIC_LUA_PATTERN_DEPTH = 200,      /* recursion of one pattern match ("too complex") */
    LOGIC_LUA_PATTERN_CAPTURES = 32,    /* captures in one pattern */
    LOGIC_LUA_MAX_ENTRIES = 16,         /* entry points checked at load */
    LOGIC_LUA_NAME_BYTES = 48,          /* of the module name shown in messages */
};

extern const struct logic_runtime logic_lua_runtime;

#endif
