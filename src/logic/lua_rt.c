/* The Lua 5.4 runtime (docs/design/logic.md, "Lua runtime").
 *
 * One lua_State per module, allocating through on_alloc, which refuses any block beyond the
 * module's memory limit. A module's life:
 *
 *   load_module: new state -> do_load (protected): sandbox libraries, compile the source as
 *                text, run its top level, freeze the globals, reference the entry points
 *   call_module / fold_module / map_module / fold_keyed_module: call_begin (deadline, hook,
 *                flags) -> do_call / do_fold / do_map / do_fold_keyed (protected) -> finish
 *                (classify a failure, empty the stack, give out back its length)
 *   unload_module: lua_close, then the C side
 *
 * Invariants:
 * - Outside a call the Lua stack is empty; every Lua API use that may raise runs inside the
 *   lua_pcall of run(), so no panic reaches the server.
 * - No user code runs outside a call's deadline: finalizers (__gc) and weak tables (__mode)
 *   are refused by setmetatable, and the JSON mapping reads tables raw.
 * - Once a call's CPU budget is spent, the count hook raises at every instruction until the
 *   call has unwound, so a pcall inside the script cannot keep it running.
 * - The sandbox's C loops that user data can lengthen (patterns, table.insert/remove/move/
 *   concat/sort) check the deadline every LOGIC_LUA_C_LOOP_CHECK steps; the other C
 *   functions left in the sandbox do work bounded by their input, itself bounded by memory.
 */
#define _GNU_SOURCE /* memmem */
#include "logic/lua_rt.h"

#include <ctype.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logic/luajson.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/timeutil.h"

enum {
    ERR_TABLE_BYTES = 400,                        /* a table raised as an error, shown as JSON */
    LOG_TABLE_BYTES = 8 * LOGIC_LOG_LINE_BYTES,   /* a table logged as JSON */
    SYNTAX_TRIES = 8,   /* prefixes recompiled to place a syntax error's column */
    ERR_TEXT_BYTES = sizeof(((struct logic_error *)0)->message),
    CAP_UNFINISHED = -1,
    CAP_POSITION = -2,
};

struct entry_ref {
    char *name; /* owned */
    int ref;    /* registry reference of the function */
};

struct lua_module {
    struct logic_module_base base;     /* first: the generic functions find the runtime */
    lua_State *L;                      /* owned; NULL when the state could not be made */
    char name[LOGIC_LUA_NAME_BYTES];   /* for messages; the chunk is "=" name */
    struct logic_limits lim;
    size_t mem_used;                   /* bytes the state holds */
    bool mem_refused;                  /* on_alloc refused a block during this call */
    uint64_t cpu_start_ns;             /* the thread's CPU clock when the call began */
    uint64_t next_check_ns;            /* monotonic time before which the budget is not spent */
    bool cpu_expired;                  /* the deadline passed during this call */
    bool in_call;                      /* between call_begin and finish */
    size_t alloc_since_check;          /* bytes allocated since the last look at the budget */
    enum logic_err_kind raised_kind;   /* what the sandbox last raised during this call */
    char raised_msg[200];              /* ... and its message */
    int err_line;                      /* the user chunk's line where the error was raised */
    char err_msg[ERR_TEXT_BYTES];      /* the error value as text (message handler) */
    bool has_err_msg;                  /* err_msg was set during this call */
    struct luajson json;               /* the JSON mapping's state */
    struct entry_ref entries[LOGIC_LUA_MAX_ENTRIES];
    size_t n_entries;
    char *log_lines;   /* owned: LOGIC_LOG_LINES slots of LOGIC_LOG_LINE_BYTES, made lazily */
    uint64_t log_count; /* lines ever logged */
};

/* One load, call or fold, passed to the protected functions. */
struct call {
    struct lua_module *m;
    const char *entry;
    const char *entry2;       /* project: apply (entry is key) */
    logic_state_fn *state_fn; /* project: a key's first state */
    void *state_arg;
    const struct slice *args; /* call */
    size_t nargs;
    struct slice state;       /* fold; fold_keyed: the object of the states */
    const struct slice *events; /* fold, map, fold_keyed */
    const struct slice *keys;   /* fold_keyed: the key of each event */
    size_t n;
    const struct slice *extra;
    const struct logic_host *host; /* call_ctx: what ctx's functions reach */
    size_t index;             /* fold, map, fold_keyed: the event at work (n: none) */
    const char *source;       /* load */
    size_t len;
    const char *const *entries;
    struct buf *out;          /* call, fold: the result's text is appended here */
    size_t out_start;
    enum logic_err_kind kind; /* an error the runtime found itself (nothing raised) */
    int line;
    int column;
    char msg[ERR_TEXT_BYTES];
};

static struct lua_module *module_of(lua_State *L)
{
    return *(struct lua_module **)lua_getextraspace(L);
}

static _Noreturn void raise_fmt(lua_State *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* luaL_error, for paths the compiler must know do not return. */
static _Noreturn void raise_fmt(lua_State *L, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    lua_error(L);
    abort(); /* not reached: lua_error does not return */
}

static _Noreturn void raise_sandbox(lua_State *L, enum logic_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raises an error that the caller will see as kind (when the script does not replace it). */
static _Noreturn void raise_sandbox(lua_State *L, enum logic_err_kind kind, const char *fmt, ...)
{
    struct lua_module *m = module_of(L);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->raised_msg, sizeof m->raised_msg, fmt, ap);
    va_end(ap);
    m->raised_kind = kind;
    raise_fmt(L, "%s", m->raised_msg);
}

/* ------------------------------------------------------------------------------------------ */
/* memory and CPU limits */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* True once the call has used its CPU budget. Cheap until the wall clock says the budget
 * could be spent; then it reads the thread's CPU clock and, if time remains (the thread was
 * not running all along), moves the next look to when it could be spent at the earliest. */
static bool budget_spent(struct lua_module *m)
{
    uint64_t now = time_mono_ns();
    if (now < m->next_check_ns) {
        return false;
    }
    uint64_t budget = (uint64_t)m->lim.cpu_ms * 1000000u;
    uint64_t used = thread_cpu_ns() - m->cpu_start_ns;
    if (used >= budget) {
        return true;
    }
    m->next_check_ns = now + (budget - used);
    return false;
}

static void on_count(lua_State *L, lua_Debug *ar);

static _Noreturn void raise_cpu(lua_State *L, struct lua_module *m)
{
    m->cpu_expired = true;
    lua_sethook(L, on_count, LUA_MASKCOUNT, 1); /* from now on, at every instruction */
    raise_fmt(L, "CPU limit of %u ms exceeded", (unsigned)m->lim.cpu_ms);
}

static void on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lua_module *m = module_of(L);
    if (m->cpu_expired || budget_spent(m)) {
        raise_cpu(L, m);
    }
}

/* The deadline check of the sandbox's C loops. */
static void check_cpu(lua_State *L)
{
    struct lua_module *m = module_of(L);
    if (m->cpu_expired || budget_spent(m)) {
        raise_cpu(L, m);
    }
}

static void tick(lua_State *L, unsigned *steps)
{
    if (++*steps % LOGIC_LUA_C_LOOP_CHECK == 0) {
        check_cpu(L);
    }
}

static void on_json_tick(lua_State *L, void *arg)
{
    (void)arg;
    check_cpu(L);
}

/* Once the budget is spent: marks the call and sets the hook to raise at the next
 * instruction. lua_sethook may be called at any point (Lua allows it in signal handlers). */
static void expire_if_spent(struct lua_module *m)
{
    if (!m->cpu_expired && budget_spent(m)) {
        m->cpu_expired = true;
        lua_sethook(m->L, on_count, LUA_MASKCOUNT, 1);
    }
}

/* The state's allocator: refuses blocks beyond the memory limit, and during a call looks at
 * the CPU budget every LOGIC_LUA_ALLOC_CHECK_BYTES allocated, since one instruction or one
 * library call can do a lot of work that allocates (s:upper() of megabytes, a long concat)
 * between two count hooks. */
static void *on_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_module *m = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        m->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > m->lim.mem_bytes - m->mem_used) {
        m->mem_refused = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        m->mem_refused = true;
        return NULL;
    }
    m->mem_used = m->mem_used - old + nsize;
    if (m->in_call && (m->alloc_since_check += nsize) >= LOGIC_LUA_ALLOC_CHECK_BYTES) {
        m->alloc_since_check = 0;
        expire_if_spent(m);
    }
    return p;
}

/* The calling thread's CPU clock, read at most once per window of wall time: reading it is a
 * system call, which cost 3 % of the CPU when appends return a reducer's state. */
static __thread struct {
    uint64_t cpu_ns, mono_ns;
    bool valid;
} clock_base;

/* Where a call's CPU budget starts. A call starts counting from the thread's CPU clock as read
 * at most a window ago, so it is charged, besides its own time, with at most one window of the
 * thread's time before it: the budget is never exceeded and ends at most one window early
 * (1 ms, or 1 % of a budget under 100 ms). */
static void call_clock(struct lua_module *m)
{
    uint64_t budget = (uint64_t)m->lim.cpu_ms * 1000000u;
    uint64_t window = budget / 100 < 1000000u ? budget / 100 : 1000000u;
    uint64_t now = time_mono_ns();
    if (!clock_base.valid || now - clock_base.mono_ns > window) {
        clock_base.cpu_ns = thread_cpu_ns();
        clock_base.mono_ns = now;
        clock_base.valid = true;
    }
    m->cpu_start_ns = clock_base.cpu_ns;
    /* the CPU used since then is at most the wall time since then */
    m->next_check_ns = clock_base.mono_ns + budget;
}

static void call_begin(struct lua_module *m)
{
    m->cpu_expired = false;
    m->mem_refused = false;
    m->raised_kind = LOGIC_E_NONE;
    m->raised_msg[0] = '\0';
    m->err_line = 0;
    m->has_err_msg = false;
    m->in_call = true;
    m->alloc_since_check = 0;
    call_clock(m);
    lua_sethook(m->L, on_count, LUA_MASKCOUNT, LOGIC_LUA_HOOK_INSTRUCTIONS);
}

/* ------------------------------------------------------------------------------------------ */
/* string patterns: Lua 5.4's pattern language, matched by a backtracking matcher of our own
 * that counts its steps against the CPU deadline (the library's matcher runs in C where no
 * hook fires: string.find(string.rep('a', 400), '.-.-.-b') took 7.4 s). */

struct capture {
    const char *init;
    ptrdiff_t len; /* bytes, CAP_UNFINISHED or CAP_POSITION */
};

struct pat {
    lua_State *L;
    const char *src;     /* the subject */
    const char *src_end;
    const char *p_end;   /* the pattern's end */
    int depth_left;      /* recursion left before "pattern too complex" */
    int level;           /* captures started */
    unsigned steps;      /* for the deadline check */
    struct capture cap[LOGIC_LUA_PATTERN_CAPTURES];
};

static const char *do_match(struct pat *ps, const char *s, const char *p);

static const char *class_end(struct pat *ps, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= ps->p_end) {
            raise_fmt(ps->L, "malformed pattern (ends with '%%')");
        }
        return p + 1;
    }
    if (c == '[') {
        if (p < ps->p_end && *p == '^') {
            p++;
        }
        do { /* the first character of a set is literal, even ']' */
            if (p >= ps->p_end) {
                raise_fmt(ps->L, "malformed pattern (missing ']')");
            }
            c = *p++;
            if (c == '%' && p < ps->p_end) {
                p++;
            }
        } while (p >= ps->p_end || *p != ']');
        return p + 1;
    }
    return p;
}

static bool match_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = (c == 0); break; /* deprecated in Lua, still matched */
    default: return cl == c;
    }
    return isupper(cl) ? res == 0 : res != 0;
}

/* p is at the set's '[', ec at its closing ']'. */
static bool match_set(int c, const char *p, const char *ec)
{
    bool found = true;
    p++;
    if (*p == '^') {
        found = false;
        p++;
    }
    while (p < ec) {
        if (*p == '%' && p + 1 < ec) {
            if (match_class(c, (unsigned char)p[1])) {
                return found;
            }
            p += 2;
        } else if (p + 2 < ec && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) {
                return found;
            }
            p += 3;
        } else {
            if ((unsigned char)*p == c) {
                return found;
            }
            p++;
        }
    }
    return !found;
}

static bool single_match(const struct pat *ps, const char *s, const char *p, const char *ep)
{
    if (s >= ps->src_end) {
        return false;
    }
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return true;
    case '%': return match_class(c, (unsigned char)p[1]);
    case '[': return match_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static void pat_tick(struct pat *ps)
{
    tick(ps->L, &ps->steps);
}

static const char *max_expand(struct pat *ps, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(ps, s + i, p, ep)) {
        i++;
        pat_tick(ps);
    }
    for (; i >= 0; i--) {
        const char *r = do_match(ps, s + i, ep + 1);
        if (r) {
            return r;
        }
    }
    return NULL;
}

static const char *min_expand(struct pat *ps, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = do_match(ps, s, ep + 1);
        if (r) {
            return r;
        }
        if (!single_match(ps, s, p, ep)) {
            return NULL;
        }
        s++;
        pat_tick(ps);
    }
}

static const char *start_capture(struct pat *ps, const char *s, const char *p, ptrdiff_t what)
{
    if (ps->level >= LOGIC_LUA_PATTERN_CAPTURES) {
        raise_fmt(ps->L, "too many captures");
    }
    ps->cap[ps->level].init = s;
    ps->cap[ps->level].len = what;
    ps->level++;
    const char *r = do_match(ps, s, p);
    if (!r) {
        ps->level--;
    }
    return r;
}

static const char *end_capture(struct pat *ps, const char *s, const char *p)
{
    int l = ps->level - 1;
    while (l >= 0 && ps->cap[l].len != CAP_UNFINISHED) {
        l--;
    }
    if (l < 0) {
        raise_fmt(ps->L, "invalid pattern capture");
    }
    ps->cap[l].len = s - ps->cap[l].init;
    const char *r = do_match(ps, s, p);
    if (!r) {
        ps->cap[l].len = CAP_UNFINISHED;
    }
    return r;
}

/* %bxy at p (p is at 'x'). */
static const char *match_balance(struct pat *ps, const char *s, const char *p)
{
    if (p + 1 >= ps->p_end) {
        raise_fmt(ps->L, "malformed pattern (missing arguments to '%%b')");
    }
    if (s >= ps->src_end || *s != *p) {
        return NULL;
    }
    char open = p[0];
    char close = p[1];
    int depth = 1;
    while (++s < ps->src_end) {
        pat_tick(ps);
        if (*s == close) {
            if (--depth == 0) {
                return s + 1;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

static const char *match_backref(struct pat *ps, const char *s, int c)
{
    int l = c - '1';
    if (l < 0 || l >= ps->level || ps->cap[l].len == CAP_UNFINISHED) {
        raise_fmt(ps->L, "invalid capture index %%%d", l + 1);
    }
    ptrdiff_t len = ps->cap[l].len;
    if (len < 0) { /* a position capture matches no text */
        return NULL;
    }
    pat_tick(ps);
    if (ps->src_end - s >= len && memcmp(ps->cap[l].init, s, (size_t)len) == 0) {
        return s + len;
    }
    return NULL;
}

enum step { STEP_ON, STEP_DONE };

/* %b, %f and back references. */
static enum step step_escape(struct pat *ps, const char **s, const char **p)
{
    const char *q = *p + 1;
    if (*q == 'b') {
        *s = match_balance(ps, *s, q + 1);
        *p = q + 3;
    } else if (*q == 'f') {
        q++;
        if (q >= ps->p_end || *q != '[') {
            raise_fmt(ps->L, "missing '[' after '%%f' in pattern");
        }
        const char *ep = class_end(ps, q);
        int prev = (*s == ps->src) ? '\0' : (unsigned char)(*s)[-1];
        int cur = (*s < ps->src_end) ? (unsigned char)**s : '\0';
        if (match_set(prev, q, ep - 1) || !match_set(cur, q, ep - 1)) {
            *s = NULL;
        }
        *p = ep;
    } else {
        *s = match_backref(ps, *s, (unsigned char)*q);
        *p = q + 1;
    }
    return *s ? STEP_ON : STEP_DONE;
}

/* A single-character class with its optional quantifier. */
static enum step step_single(struct pat *ps, const char **s, const char **p)
{
    const char *q = *p;
    const char *ep = class_end(ps, q);
    char quant = ep < ps->p_end ? *ep : '\0';
    if (!single_match(ps, *s, q, ep)) {
        if (quant == '*' || quant == '?' || quant == '-') {
            *p = ep + 1;
            return STEP_ON;
        }
        *s = NULL;
        return STEP_DONE;
    }
    switch (quant) {
    case '?': {
        const char *r = do_match(ps, *s + 1, ep + 1);
        if (r) {
            *s = r;
            return STEP_DONE;
        }
        *p = ep + 1;
        return STEP_ON;
    }
    case '+': *s = max_expand(ps, *s + 1, q, ep); return STEP_DONE;
    case '*': *s = max_expand(ps, *s, q, ep); return STEP_DONE;
    case '-': *s = min_expand(ps, *s, q, ep); return STEP_DONE;
    default: (*s)++; *p = ep; return STEP_ON;
    }
}

/* Matches the pattern item at *p: STEP_ON with *s and *p moved on, or STEP_DONE with *s the
 * end of the whole match (NULL: no match). */
static enum step step_item(struct pat *ps, const char **s, const char **p)
{
    const char *q = *p;
    switch (*q) {
    case '(':
        if (q + 1 < ps->p_end && q[1] == ')') {
            *s = start_capture(ps, *s, q + 2, CAP_POSITION);
        } else {
            *s = start_capture(ps, *s, q + 1, CAP_UNFINISHED);
        }
        return STEP_DONE;
    case ')':
        *s = end_capture(ps, *s, q + 1);
        return STEP_DONE;
    case '$':
        if (q + 1 == ps->p_end) {
            *s = (*s == ps->src_end) ? *s : NULL;
            return STEP_DONE;
        }
        break;
    case '%':
        if (q + 1 < ps->p_end && (q[1] == 'b' || q[1] == 'f' || isdigit((unsigned char)q[1]))) {
            return step_escape(ps, s, p);
        }
        break;
    default: break;
    }
    return step_single(ps, s, p);
}

/* The end of the match of pattern p at s, or NULL. */
static const char *do_match(struct pat *ps, const char *s, const char *p)
{
    if (ps->depth_left-- == 0) {
        raise_fmt(ps->L, "pattern too complex");
    }
    while (p != ps->p_end) {
        pat_tick(ps);
        if (step_item(ps, &s, &p) == STEP_DONE) {
            break;
        }
    }
    ps->depth_left++;
    return s;
}

static void pat_init(struct pat *ps, lua_State *L, const char *s, size_t ls, const char *p,
                     size_t lp)
{
    ps->L = L;
    ps->src = s;
    ps->src_end = s + ls;
    ps->p_end = p + lp;
    ps->steps = 0;
}

static void pat_reset(struct pat *ps)
{
    ps->level = 0;
    ps->depth_left = LOGIC_LUA_PATTERN_DEPTH;
}

static void push_capture(struct pat *ps, int i, const char *s, const char *e)
{
    if (i >= ps->level) {
        if (i != 0) {
            raise_fmt(ps->L, "invalid capture index %%%d", i + 1);
        }
        lua_pushlstring(ps->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = ps->cap[i].len;
    if (len == CAP_UNFINISHED) {
        raise_fmt(ps->L, "unfinished capture");
    }
    if (len == CAP_POSITION) {
        lua_pushinteger(ps->L, (ps->cap[i].init - ps->src) + 1);
    } else {
        lua_pushlstring(ps->L, ps->cap[i].init, (size_t)len);
    }
}

/* Pushes the captures (the whole match [s, e) when there are none and s is set). */
static int push_captures(struct pat *ps, const char *s, const char *e)
{
    int n = (ps->level == 0 && s) ? 1 : ps->level;
    luaL_checkstack(ps->L, n, "too many captures");
    for (int i = 0; i < n; i++) {
        push_capture(ps, i, s, e);
    }
    return n;
}

static bool no_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++) {
        if (p[i] != '\0' && strchr("^$*+?.([%-", p[i])) {
            return false;
        }
    }
    return true;
}

/* A 1-based start position as string.find takes it (negative: from the end). */
static size_t start_index(lua_Integer pos, size_t len)
{
    if (pos > 0) {
        return (size_t)pos;
    }
    if (pos == 0 || pos < -(lua_Integer)len) {
        return 1;
    }
    return (size_t)((lua_Integer)len + pos) + 1;
}

static int find_pattern(lua_State *L, bool find, const char *s, size_t ls, const char *p,
                        size_t lp, size_t init)
{
    struct pat ps;
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    pat_init(&ps, L, s, ls, p, lp);
    const char *s1 = s + init - 1;
    do {
        pat_reset(&ps);
        pat_tick(&ps);
        const char *e = do_match(&ps, s1, p);
        if (e) {
            if (!find) {
                return push_captures(&ps, s1, e);
            }
            lua_pushinteger(L, (s1 - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&ps, NULL, NULL) + 2;
        }
    } while (s1++ < ps.src_end && !anchor);
    luaL_pushfail(L);
    return 1;
}

static int find_aux(lua_State *L, bool find)
{
    size_t ls;
    size_t lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls);
    if (init > ls + 1) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        /* glibc's memmem is linear in the worst case (two-way) */
        const char *hit = memmem(s + init - 1, ls - (init - 1), p, lp);
        check_cpu(L); /* up to megabytes scanned since the last count hook */
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
        return 2;
    }
    return find_pattern(L, find, s, ls, p, lp, init);
}

static int sb_find(lua_State *L)
{
    return find_aux(L, true);
}

static int sb_match(lua_State *L)
{
    return find_aux(L, false);
}

struct gmatch_state {
    size_t pos;      /* where the next search starts */
    size_t last;     /* end of the last match */
    bool has_last;
};

static int gmatch_next(lua_State *L)
{
    size_t ls;
    size_t lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    struct gmatch_state *st = lua_touserdata(L, lua_upvalueindex(3));
    struct pat ps;
    pat_init(&ps, L, s, ls, p, lp);
    for (const char *src = s + st->pos; src <= ps.src_end; src++) {
        pat_reset(&ps);
        pat_tick(&ps);
        const char *e = do_match(&ps, src, p);
        if (e && (!st->has_last || e != s + st->last)) {
            st->pos = st->last = (size_t)(e - s);
            st->has_last = true;
            return push_captures(&ps, src, e);
        }
    }
    st->pos = ls + 1;
    return 0;
}

static int sb_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2);
    struct gmatch_state *st = lua_newuserdatauv(L, sizeof *st, 0);
    st->pos = init > ls ? ls + 1 : init;
    st->last = 0;
    st->has_last = false;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* Appends the replacement string (argument 3) with its %0-%9 and %% for the match [s, e). */
static void add_replacement(struct pat *ps, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ps->L;
    size_t l;
    const char *news = lua_tolstring(L, 3, &l);
    const char *end = news + l;
    const char *p;
    while ((p = memchr(news, '%', (size_t)(end - news))) != NULL) {
        luaL_addlstring(b, news, (size_t)(p - news));
        p++;
        if (p < end && *p == '%') {
            luaL_addchar(b, '%');
        } else if (p < end && *p == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (p < end && isdigit((unsigned char)*p)) {
            push_capture(ps, *p - '1', s, e);
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            raise_fmt(L, "invalid use of '%%' in replacement string");
        }
        news = p + 1;
        pat_tick(ps);
    }
    luaL_addlstring(b, news, (size_t)(end - news));
}

static void add_value(struct pat *ps, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = ps->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ps, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(ps, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_replacement(ps, b, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        raise_fmt(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int sb_gsub(lua_State *L)
{
    size_t ls;
    size_t lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                     tr == LUA_TTABLE, 3, "string/function/table");
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    struct pat ps;
    pat_init(&ps, L, src, ls, p, lp);
    const char *lastmatch = NULL;
    lua_Integer n = 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n < max_s) {
        pat_reset(&ps);
        pat_tick(&ps);
        const char *e = do_match(&ps, src, p);
        if (e && e != lastmatch) {
            n++;
            add_value(&ps, &b, src, e, tr);
            src = lastmatch = e;
        } else if (src < ps.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor) {
            break;
        }
    }
    luaL_addlstring(&b, src, (size_t)(ps.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

/* string.rep: the library's loop runs n times even when every piece is empty (1e9 empty
 * pieces took 1.3 s), and its result is refused up front when it cannot fit in memory. */
static int sb_rep(lua_State *L)
{
    size_t l;
    size_t lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t limit = module_of(L)->lim.mem_bytes;
    if ((lua_Unsigned)n > limit / (l + lsep) + 1) {
        raise_sandbox(L, LOGIC_E_MEMORY, "string.rep: the result exceeds the memory limit of %zu bytes",
                      limit);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* table functions whose C loops a script can make long (a __len of 2^40 with C functions as
 * __index and __newindex made the library's table.insert loop without any hook firing) */

static lua_Integer checked_len(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n < 0 || n == LUA_MAXINTEGER) {
        raise_fmt(L, "table length %lld out of range", (long long)n);
    }
    return n;
}

static int sb_insert(lua_State *L)
{
    lua_Integer e = checked_len(L, 1) + 1; /* the first empty slot */
    unsigned steps = 0;
    switch (lua_gettop(L)) {
    case 2:
        lua_seti(L, 1, e);
        return 0;
    case 3: {
        lua_Integer pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        for (lua_Integer i = e; i > pos; i--) {
            tick(L, &steps);
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        lua_seti(L, 1, pos);
        return 0;
    }
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
}

static int sb_remove(lua_State *L)
{
    lua_Integer size = checked_len(L, 1);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    unsigned steps = 0;
    if (pos != size) {
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2, "position out of bounds");
    }
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        tick(L, &steps);
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

static int sb_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = lua_isnoneornil(L, 5) ? 1 : 5;
    unsigned steps = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, tt, LUA_TTABLE);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        bool forward = t > e || t <= f || (tt != 1 && !lua_rawequal(L, 1, tt));
        for (lua_Integer i = 0; i < n; i++) {
            lua_Integer k = forward ? i : n - 1 - i;
            tick(L, &steps);
            lua_geti(L, 1, f + k);
            lua_seti(L, tt, t + k);
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

static int sb_concat(lua_State *L)
{
    size_t lsep;
    lua_Integer last = checked_len(L, 1);
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    last = luaL_optinteger(L, 4, last);
    unsigned steps = 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; i <= last; i++) {
        tick(L, &steps);
        lua_geti(L, 1, i);
        if (!lua_isstring(L, -1)) {
            raise_fmt(L, "invalid value (at index %lld) in table for 'concat'", (long long)i);
        }
        luaL_addvalue(&b);
        if (i == last) {
            break;
        }
        luaL_addlstring(&b, sep, lsep);
    }
    luaL_pushresult(&b);
    return 1;
}

/* Whether value a (scratch[ia]) sorts before b, by the comparator at 2 or by "<". */
static bool sort_less(lua_State *L, uint32_t ia, uint32_t ib, unsigned *steps)
{
    tick(L, steps);
    bool has_cmp = !lua_isnil(L, 2);
    if (has_cmp) {
        lua_pushvalue(L, 2);
    }
    lua_rawgeti(L, 3, ia);
    lua_rawgeti(L, 3, ib);
    bool less;
    if (has_cmp) {
        lua_call(L, 2, 1);
        less = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        less = lua_compare(L, -2, -1, LUA_OPLT);
        lua_pop(L, 2);
    }
    return less;
}

/* Bottom-up merge sort of the indexes a[0..n) (stable), tmp as scratch. */
static void merge_sort(lua_State *L, uint32_t *a, uint32_t *tmp, size_t n)
{
    unsigned steps = 0;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo + width < n; lo += 2 * width) {
            size_t mid = lo + width;
            size_t hi = (lo + 2 * width < n) ? lo + 2 * width : n;
            size_t i = lo;
            size_t j = mid;
            size_t k = lo;
            while (i < mid && j < hi) {
                tmp[k++] = sort_less(L, a[j], a[i], &steps) ? a[j++] : a[i++];
            }
            while (i < mid) {
                tmp[k++] = a[i++];
            }
            while (j < hi) {
                tmp[k++] = a[j++];
            }
            memcpy(a + lo, tmp + lo, (hi - lo) * sizeof *a);
        }
    }
}

/* table.sort: a stable merge sort over a copy of the items (Lua's own sort is a quicksort
 * whose C loop a script can stretch with C-function metamethods). */
static int sb_sort(lua_State *L)
{
    lua_Integer n = checked_len(L, 1);
    if (n < 2) {
        return 0;
    }
    luaL_argcheck(L, n < INT_MAX, 1, "array too big");
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TFUNCTION);
    }
    lua_settop(L, 2);
    lua_createtable(L, (int)n, 0); /* 3: the items */
    unsigned steps = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        tick(L, &steps);
        lua_geti(L, 1, i);
        lua_rawseti(L, 3, i);
    }
    uint32_t *a = lua_newuserdatauv(L, 2 * (size_t)n * sizeof *a, 0); /* 4: the order */
    for (lua_Integer i = 0; i < n; i++) {
        a[i] = (uint32_t)(i + 1);
    }
    merge_sort(L, a, a + n, (size_t)n);
    for (lua_Integer i = 0; i < n; i++) {
        tick(L, &steps);
        lua_rawgeti(L, 3, a[i]);
        lua_seti(L, 1, i + 1);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the rest of the sandbox */

static const char *const FORBIDDEN_GLOBALS[] = {
    "io", "os", "package", "debug", "require", "load", "loadstring", "dofile", "loadfile",
    "collectgarbage", "print", "warn", "coroutine", "module", "setfenv", "getfenv", "newproxy",
    NULL,
};

/* __index of the globals: reading a name the sandbox removed is an error that says so. */
static int sb_missing_global(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING) {
        return 0;
    }
    const char *k = lua_tostring(L, 2);
    for (size_t i = 0; FORBIDDEN_GLOBALS[i]; i++) {
        if (strcmp(k, FORBIDDEN_GLOBALS[i]) == 0) {
            raise_sandbox(L, LOGIC_E_FORBIDDEN, "'%s' is not available in the sandbox%s", k,
                          strcmp(k, "print") == 0 ? " (use log)" : "");
        }
    }
    return 0;
}

/* __newindex of the globals once the top level has run. */
static int sb_global_assign(lua_State *L)
{
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2);
    raise_sandbox(L, LOGIC_E_FORBIDDEN,
                  "assignment to global '%s' during a call: globals are read-only after load "
                  "(use a local)", k);
}

/* What string.dump, math.random and the like became. */
static int sb_unavailable(lua_State *L)
{
    raise_sandbox(L, LOGIC_E_FORBIDDEN, "%s is not available in the sandbox",
                  lua_tostring(L, lua_upvalueindex(1)));
}

static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
        return luaL_error(L, "cannot change a protected metatable");
    }
    if (t == LUA_TTABLE) { /* raw reads: Lua itself looks for these fields raw */
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            raise_sandbox(L, LOGIC_E_FORBIDDEN, "__gc metamethods are not allowed: a finalizer "
                          "would run outside the CPU limit");
        }
        lua_pushliteral(L, "__mode");
        if (lua_rawget(L, 2) != LUA_TNIL) {
            raise_sandbox(L, LOGIC_E_FORBIDDEN, "weak tables (__mode) are not allowed: results "
                          "must not depend on when the collector runs");
        }
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* xpcall: Lua calls a message handler before unwinding, and when the error comes from the
 * count hook it runs with hooks off, so a looping handler could never be stopped. Here the
 * handler runs after the protected call has unwound (hooks back on), and not at all once the
 * CPU budget is spent or for a memory error (as in Lua). The handler cannot tell the
 * difference: without the debug library it cannot look at the stack it was raised in. */
static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, handler, true, f, args... */
    int st = lua_pcall(L, n - 2, LUA_MULTRET, 0);
    if (st == LUA_OK) {
        return lua_gettop(L) - 2;
    }
    if (module_of(L)->cpu_expired) {
        return lua_error(L);
    }
    if (st != LUA_ERRMEM) {
        lua_pushvalue(L, 2);
        lua_insert(L, -2);
        lua_pcall(L, 1, 1, 0); /* the handler's result, or its own error */
    }
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int sb_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_pushglobaltable(L);
    if (lua_rawequal(L, 1, -1)) {
        raise_sandbox(L, LOGIC_E_FORBIDDEN, "rawset on the global table is not allowed");
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* Cuts len back so that the text does not end inside a UTF-8 sequence. */
static size_t utf8_trim(const char *s, size_t len)
{
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && len - i < 3) {
        i--;
    }
    if (i == 0 || (unsigned char)s[i - 1] < 0xC0) {
        return len; /* ends in ASCII or in stray continuation bytes: nothing to cut */
    }
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    return (len - (i - 1) < need) ? i - 1 : len;
}

static size_t append_piece(char *line, size_t len, const char *s, size_t n)
{
    size_t room = LOGIC_LOG_LINE_BYTES - 1 - len;
    if (n > room) {
        n = room;
    }
    memcpy(line + len, s, n);
    return len + n;
}

/* Appends argument i of log(): strings as they are, tables as JSON (unless they have a
 * __tostring), anything else as tostring gives it. */
static size_t log_piece(lua_State *L, struct lua_module *m, int i, char *line, size_t len)
{
    size_t n;
    if (lua_type(L, i) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, i, &n);
        return append_piece(line, len, s, n);
    }
    if (lua_type(L, i) == LUA_TTABLE && luaL_getmetafield(L, i, "__tostring") == LUA_TNIL) {
        buf_reset(&m->json.encoded);
        if (luajson_encode(&m->json, L, i, &m->json.encoded, LOG_TABLE_BYTES) == 0) {
            return append_piece(line, len, m->json.encoded.ptr, m->json.encoded.len);
        }
    } else if (lua_type(L, i) == LUA_TTABLE) {
        lua_pop(L, 1);
    }
    const char *s = luaL_tolstring(L, i, &n);
    len = append_piece(line, len, s, n);
    lua_pop(L, 1);
    return len;
}

static int sb_log(lua_State *L)
{
    struct lua_module *m = module_of(L);
    char line[LOGIC_LOG_LINE_BYTES];
    size_t len = 0;
    int n = lua_gettop(L);
    for (int i = 1; i <= n && len < sizeof line - 1; i++) {
        if (i > 1) {
            len = append_piece(line, len, " ", 1);
        }
        len = log_piece(L, m, i, line, len);
    }
    len = utf8_trim(line, len);
    line[len] = '\0';
    if (!m->log_lines) {
        m->log_lines = xcalloc(LOGIC_LOG_LINES, LOGIC_LOG_LINE_BYTES);
    }
    memcpy(m->log_lines + (m->log_count % LOGIC_LOG_LINES) * LOGIC_LOG_LINE_BYTES, line, len + 1);
    m->log_count++;
    return 0;
}

/* spairs(t): the pairs of t in key order (numbers first, then strings by bytes), since
 * pairs() order varies between runs in Debian's Lua. Written in Lua so that it runs under the
 * hook; the locals keep the library functions it was made with. */
static const char PRELUDE[] =
    "local next, type, sort = next, type, table.sort\n"
    "local function before(a, b)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then return ta == 'number' end\n"
    "  return a < b\n"
    "end\n"
    "function spairs(t)\n"
    "  local keys, n = {}, 0\n"
    "  for k in next, t do n = n + 1; keys[n] = k end\n"
    "  sort(keys, before)\n"
    "  local i = 0\n"
    "  return function()\n"
    "    i = i + 1\n"
    "    local k = keys[i]\n"
    "    if k ~= nil then return k, t[k] end\n"
    "  end\n"
    "end\n";

static void set_stub(lua_State *L, const char *field, const char *shown)
{
    lua_pushstring(L, shown);
    lua_pushcclosure(L, sb_unavailable, 1);
    lua_setfield(L, -2, field);
}

static void set_fn(lua_State *L, const char *field, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, field);
}

/* A library function whose work grows with a string's length without allocating (so the
 * allocator's budget check does not see it): the budget is checked after each call. */
static int sb_checked(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    check_cpu(L);
    return lua_gettop(L);
}

static void wrap_checked(lua_State *L, const char *field)
{
    lua_getfield(L, -1, field);
    lua_pushcclosure(L, sb_checked, 1);
    lua_setfield(L, -2, field);
}

/* The string library with our patterns, a bounded rep, and no dump or pack. */
static void trim_string(lua_State *L)
{
    lua_getglobal(L, LUA_STRLIBNAME);
    set_fn(L, "find", sb_find);
    set_fn(L, "match", sb_match);
    set_fn(L, "gmatch", sb_gmatch);
    set_fn(L, "gsub", sb_gsub);
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, sb_rep, 1);
    lua_setfield(L, -2, "rep");
    set_stub(L, "dump", "string.dump");
    set_stub(L, "pack", "string.pack");
    set_stub(L, "unpack", "string.unpack");
    set_stub(L, "packsize", "string.packsize");
    lua_pop(L, 1);
}

static void trim_libraries(lua_State *L, struct lua_module *m)
{
    static const char *const removed[] = {"dofile", "loadfile", "load", "print", "collectgarbage",
                                          "warn", "require", NULL};
    lua_pushglobaltable(L);
    for (size_t i = 0; removed[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, removed[i]);
    }
    set_fn(L, "setmetatable", sb_setmetatable);
    set_fn(L, "rawset", sb_rawset);
    set_fn(L, "xpcall", sb_xpcall);
    set_fn(L, "log", sb_log);
    luajson_push_lib(&m->json, L);
    lua_setfield(L, -2, "json");
    lua_pop(L, 1);
    trim_string(L);
    lua_getglobal(L, LUA_MATHLIBNAME);
    set_stub(L, "random", "math.random");
    set_stub(L, "randomseed", "math.randomseed");
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);
    set_fn(L, "insert", sb_insert);
    set_fn(L, "remove", sb_remove);
    set_fn(L, "move", sb_move);
    set_fn(L, "concat", sb_concat);
    set_fn(L, "sort", sb_sort);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_UTF8LIBNAME);
    wrap_checked(L, "len");
    wrap_checked(L, "offset");
    lua_pop(L, 1);
}

static void open_sandbox(lua_State *L, struct lua_module *m)
{
    int top = lua_gettop(L);
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_settop(L, top);
    luajson_init(&m->json, L);
    trim_libraries(L, m);
    if (luaL_loadbufferx(L, PRELUDE, sizeof PRELUDE - 1, "=sandbox", "t") != LUA_OK) {
        lua_error(L);
    }
    lua_call(L, 0, 0);
    lua_pushglobaltable(L);
    lua_createtable(L, 0, 2);
    set_fn(L, "__index", sb_missing_global);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_settop(L, top);
}

/* After the top level: the globals move to a table the global table only reads through, so
 * assigning a global during a call is an error (results must not depend on earlier calls). */
static void freeze_globals(lua_State *L)
{
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    lua_createtable(L, 0, 64);
    int f = g + 1;
    lua_pushnil(L);
    while (lua_next(L, g)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, f);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, g); /* clearing an existing field during lua_next is allowed */
    }
    lua_createtable(L, 0, 1);
    set_fn(L, "__index", sb_missing_global);
    lua_setmetatable(L, f);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, f);
    lua_setfield(L, -2, "__index");
    set_fn(L, "__newindex", sb_global_assign);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, g);
    lua_settop(L, g - 1);
}

/* ------------------------------------------------------------------------------------------ */
/* errors */

/* Strips "name:LINE: " from msg when it names the module's chunk; sets *line. */
static const char *strip_position(const struct lua_module *m, const char *msg, int *line)
{
    size_t n = strlen(m->name);
    if (strncmp(msg, m->name, n) != 0 || msg[n] != ':' || !isdigit((unsigned char)msg[n + 1])) {
        return msg;
    }
    char *end;
    long l = strtol(msg + n + 1, &end, 10);
    if (*end != ':') {
        return msg;
    }
    *line = (int)l;
    return end[1] == ' ' ? end + 2 : end + 1;
}

/* The error value at idx as text in m->err_msg, without running any of the script's code. */
static void describe_error(struct lua_module *m, lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        snprintf(m->err_msg, sizeof m->err_msg, "%s", lua_tostring(L, idx));
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(m->err_msg, sizeof m->err_msg, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            snprintf(m->err_msg, sizeof m->err_msg, "%.14g", lua_tonumber(L, idx));
        }
        break;
    case LUA_TTABLE:
        buf_reset(&m->json.encoded);
        if (luajson_encode(&m->json, L, idx, &m->json.encoded, ERR_TABLE_BYTES) == 0) {
            snprintf(m->err_msg, sizeof m->err_msg, "%s", m->json.encoded.ptr);
            break;
        }
        /* fall through */
    default:
        snprintf(m->err_msg, sizeof m->err_msg, "(a %s value was raised as the error)",
                 luaL_typename(L, idx));
    }
    m->has_err_msg = true;
}

/* The message handler: notes the innermost line of the module's chunk and the error text. */
static int on_error(lua_State *L)
{
    struct lua_module *m = module_of(L);
    char chunk[LOGIC_LUA_NAME_BYTES + 1];
    snprintf(chunk, sizeof chunk, "=%s", m->name);
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0 && strcmp(ar.source, chunk) == 0) {
            m->err_line = ar.currentline;
            break;
        }
    }
    describe_error(m, L, 1);
    return 1;
}

static void set_error(struct logic_error *err, enum logic_err_kind kind, int line, int column,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(struct logic_error *err, enum logic_err_kind kind, int line, int column,
                      const char *fmt, ...)
{
    va_list ap;
    err->kind = kind;
    err->line = line;
    err->column = column;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* Names the failure of a protected run that raised (status is not LUA_OK). */
static void classify(struct lua_module *m, int status, struct logic_error *err)
{
    const char *msg = m->has_err_msg ? m->err_msg
                      : status == LUA_ERRMEM ? "not enough memory"
                                             : "error in error handling";
    int line = m->err_line;
    if (m->cpu_expired) {
        set_error(err, LOGIC_E_CPU, line, 0, "CPU limit of %u ms exceeded", (unsigned)m->lim.cpu_ms);
    } else if (status == LUA_ERRMEM || (m->mem_refused && strstr(msg, "not enough memory"))) {
        set_error(err, LOGIC_E_MEMORY, line, 0, "memory limit of %zu bytes exceeded",
                  m->lim.mem_bytes);
    } else if (m->raised_kind != LOGIC_E_NONE && strstr(msg, m->raised_msg)) {
        msg = strip_position(m, msg, &line);
        set_error(err, m->raised_kind, line, 0, "%s", msg);
    } else {
        msg = strip_position(m, msg, &line);
        set_error(err, LOGIC_E_RUNTIME, line, 0, "%s", msg);
    }
}

/* Runs fn(c) protected, with on_error as the message handler; returns the lua_pcall status. */
static int run(struct lua_module *m, lua_CFunction fn, struct call *c)
{
    lua_State *L = m->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, on_error);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, c);
    return lua_pcall(L, 1, 0, 1);
}

/* After a run: 0, or ERR_INVALID with err set; the stack is empty again. */
static int finish(struct lua_module *m, struct call *c, int status, struct logic_error *err)
{
    int rc = 0;
    if (status != LUA_OK) {
        classify(m, status, err);
        rc = ERR_INVALID;
    } else if (c->kind != LOGIC_E_NONE) {
        set_error(err, c->kind, c->line, c->column, "%s", c->msg);
        rc = ERR_INVALID;
    }
    lua_settop(m->L, 0);
    m->in_call = false;
    if (rc < 0 && c->out) {
        c->out->len = c->out_start;
        if (c->out->cap) {
            c->out->ptr[c->out->len] = '\0';
        }
    }
    if (rc < 0 && err->kind == LOGIC_E_MEMORY) {
        lua_gc(m->L, LUA_GCCOLLECT); /* give the memory back before the next call */
    }
    return rc;
}

static int fail_call(struct call *c, enum logic_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records an error found by the runtime (returned by the protected function, not raised). */
static int fail_call(struct call *c, enum logic_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    c->kind = kind;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* load */

/* Start and end of line `line` (1-based) of s, counting line breaks as Lua's lexer does:
 * "\n", "\r", "\r\n" and "\n\r" are one break each. */
static const char *find_line(const char *s, size_t len, int line, const char **line_end)
{
    const char *p = s;
    const char *end = s + len;
    for (int l = 1; l < line && p < end;) {
        char c = *p++;
        if (c == '\n' || c == '\r') {
            if (p < end && (*p == '\n' || *p == '\r') && *p != c) {
                p++;
            }
            l++;
        }
    }
    const char *e = p;
    while (e < end && *e != '\n' && *e != '\r') {
        e++;
    }
    *line_end = e;
    return p;
}

/* Whether compiling source[0..prefix) fails with exactly msg. */
static bool prefix_fails_alike(lua_State *L, const struct call *c, size_t prefix, const char *msg)
{
    char chunk[LOGIC_LUA_NAME_BYTES + 1];
    snprintf(chunk, sizeof chunk, "=%s", c->m->name);
    int st = luaL_loadbufferx(L, c->source, prefix, chunk, "t");
    bool same = st == LUA_ERRSYNTAX && strcmp(lua_tostring(L, -1), msg) == 0;
    lua_pop(L, 1);
    return same;
}

/* The 1-based byte column of a syntax error: Lua reports only the line and the token
 * ("near 'x'"). The token's place on that line is the column when it occurs once; when it
 * occurs several times, the first occurrence such that the source cut right after it fails
 * with the same message is the one the parser stopped at. 0 when it cannot be placed. */
static int syntax_column(lua_State *L, const struct call *c, const char *msg, int line)
{
    const char *near = NULL;
    for (const char *p = strstr(msg, " near "); p; p = strstr(p + 1, " near ")) {
        near = p;
    }
    if (!near || line <= 0) {
        return 0;
    }
    const char *le;
    const char *ls = find_line(c->source, c->len, line, &le);
    const char *tok = near + 6;
    if (strcmp(tok, "<eof>") == 0) {
        return (int)(le - ls) + 1;
    }
    size_t tl = strlen(tok);
    if (tl < 3 || tok[0] != '\'' || tok[tl - 1] != '\'') {
        return 0;
    }
    tok++;
    tl -= 2;
    const char *hits[SYNTAX_TRIES];
    int n = 0;
    for (const char *p = ls; n < SYNTAX_TRIES && (p = memmem(p, (size_t)(le - p), tok, tl));
         p++) {
        hits[n++] = p;
    }
    for (int i = 0; i < n; i++) {
        if (n == 1 || prefix_fails_alike(L, c, (size_t)(hits[i] + tl - c->source), msg)) {
            return (int)(hits[i] - ls) + 1;
        }
    }
    return 0;
}

static int syntax_error(lua_State *L, struct call *c)
{
    char full[ERR_TEXT_BYTES];
    snprintf(full, sizeof full, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    int line = 0;
    const char *msg = strip_position(c->m, full, &line);
    c->line = line;
    c->column = syntax_column(L, c, full, line);
    return fail_call(c, LOGIC_E_SYNTAX, "%s", msg);
}

/* References each entry point; names the missing ones. */
static int check_entries(lua_State *L, struct call *c)
{
    struct lua_module *m = c->m;
    char missing[256] = "";
    size_t used = 0;
    for (size_t i = 0; c->entries && c->entries[i]; i++) {
        if (i >= LOGIC_LUA_MAX_ENTRIES) {
            return fail_call(c, LOGIC_E_INVALID, "more than %d entry points",
                             LOGIC_LUA_MAX_ENTRIES);
        }
        if (lua_getglobal(L, c->entries[i]) == LUA_TFUNCTION) {
            int ref = luaL_ref(L, LUA_REGISTRYINDEX);
            m->entries[m->n_entries].ref = ref;
            m->entries[m->n_entries++].name = xstrndup(c->entries[i], strlen(c->entries[i]));
            continue;
        }
        lua_pop(L, 1);
        used += (size_t)snprintf(missing + used, used < sizeof missing ? sizeof missing - used : 0,
                                 "%s%s", used ? ", " : "", c->entries[i]);
    }
    if (used) {
        return fail_call(c, LOGIC_E_MISSING, "not defined as a global function: %s", missing);
    }
    return 0;
}

static int do_load(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    char chunk[LOGIC_LUA_NAME_BYTES + 1];
    open_sandbox(L, c->m);
    snprintf(chunk, sizeof chunk, "=%s", c->m->name);
    int st = luaL_loadbufferx(L, c->source, c->len, chunk, "t"); /* text only: no bytecode */
    if (st == LUA_ERRSYNTAX) {
        return syntax_error(L, c);
    }
    if (st != LUA_OK) {
        return lua_error(L);
    }
    lua_call(L, 0, 0);
    freeze_globals(L);
    return check_entries(L, c);
}

static int on_panic(lua_State *L)
{
    fprintf(stderr, "fatal: unprotected Lua error: %s\n", lua_tostring(L, -1));
    abort();
}

static void unload_module(struct logic_module *lm);

static int load_module(struct logic_env *env, const char *name, const char *source, size_t len,
                       const char *const *entries, const struct logic_limits *lim,
                       struct logic_module **out, struct logic_error *err)
{
    (void)env;
    struct lua_module *m = xcalloc(1, sizeof *m);
    m->base.rt = &logic_lua_runtime;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->lim = *lim;
    m->L = lua_newstate(on_alloc, m);
    if (!m->L) {
        set_error(err, LOGIC_E_MEMORY, 0, 0, "memory limit of %zu bytes exceeded", lim->mem_bytes);
        unload_module((struct logic_module *)m);
        return ERR_INVALID;
    }
    *(struct lua_module **)lua_getextraspace(m->L) = m;
    lua_atpanic(m->L, on_panic);
    m->json.tick = on_json_tick;
    m->json.encode_max_bytes = lim->output_bytes;
    struct call c = {.m = m, .source = source, .len = len, .entries = entries};
    call_begin(m);
    int rc = finish(m, &c, run(m, do_load, &c), err);
    if (rc < 0) {
        unload_module((struct logic_module *)m);
        return rc;
    }
    *out = (struct logic_module *)m;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* calls */

static bool push_entry(lua_State *L, const struct lua_module *m, const char *entry)
{
    for (size_t i = 0; i < m->n_entries; i++) {
        if (strcmp(m->entries[i].name, entry) == 0) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, m->entries[i].ref);
            return true;
        }
    }
    if (lua_getglobal(L, entry) == LUA_TFUNCTION) {
        return true;
    }
    lua_pop(L, 1);
    return false;
}

static int encode_result(lua_State *L, struct call *c, int idx)
{
    struct lua_module *m = c->m;
    if (luajson_encode(&m->json, L, idx, c->out, m->lim.output_bytes) < 0) {
        return fail_call(c, LOGIC_E_OUTPUT, "result: %s", m->json.err);
    }
    return 0;
}

/* Pushes the entry and the call's arguments; false with c->kind set when it cannot. */
static bool push_call(lua_State *L, struct call *c)
{
    struct lua_module *m = c->m;
    if (!push_entry(L, m, c->entry)) {
        fail_call(c, LOGIC_E_MISSING, "%s is not defined as a global function", c->entry);
        return false;
    }
    if (c->nargs > INT_MAX - 8) {
        fail_call(c, LOGIC_E_INVALID, "too many arguments");
        return false;
    }
    luaL_checkstack(L, (int)c->nargs + 4, "too many arguments");
    for (size_t i = 0; i < c->nargs; i++) {
        if (luajson_decode(&m->json, L, c->args[i].ptr, c->args[i].len) < 0) {
            fail_call(c, LOGIC_E_INVALID, "argument %zu: %s", i + 1, m->json.err);
            return false;
        }
    }
    return true;
}

static int do_call(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    if (!push_call(L, c)) {
        return 0;
    }
    lua_call(L, (int)c->nargs, 1);
    return encode_result(L, c, -1);
}

/* Stack: 1 the call, 2 the entry, 3 the parameters (or nil), 4 the state. c->index is n
 * while no event is being folded (entry, parameters, state, final state's JSON). */
static int do_fold(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    struct lua_module *m = c->m;
    c->index = c->n;
    if (!push_entry(L, m, c->entry)) {
        return fail_call(c, LOGIC_E_MISSING, "%s is not defined as a global function", c->entry);
    }
    if (!c->extra) {
        lua_pushnil(L);
    } else if (luajson_decode(&m->json, L, c->extra->ptr, c->extra->len) < 0) {
        return fail_call(c, LOGIC_E_INVALID, "parameters: %s", m->json.err);
    }
    if (luajson_decode(&m->json, L, c->state.ptr, c->state.len) < 0) {
        return fail_call(c, LOGIC_E_INVALID, "state: %s", m->json.err);
    }
    int nargs = c->extra ? 3 : 2;
    for (c->index = 0; c->index < c->n; c->index++) {
        const struct slice *ev = &c->events[c->index];
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 4);
        if (luajson_decode(&m->json, L, ev->ptr, ev->len) < 0) {
            return fail_call(c, LOGIC_E_INVALID, "event %zu: %s", c->index, m->json.err);
        }
        if (c->extra) {
            lua_pushvalue(L, 3);
        }
        lua_call(L, nargs, 1);
        lua_replace(L, 4);
    }
    return encode_result(L, c, 4);
}

/* Appends the value at idx as element c->index of a batch's array (a comma before all but the
 * first), leaving room for the closing bracket within the output budget of the whole array.
 * Returns 0, or -1 after fail_call (the protected function then returns at once). */
static int encode_item(lua_State *L, struct call *c, int idx)
{
    struct lua_module *m = c->m;
    size_t used = c->out->len - c->out_start + (c->index ? 1 : 0) + 1; /* comma, ']' */
    int rc = used < m->lim.output_bytes ? 0 : ERR_TOOBIG;
    if (rc == 0) {
        buf_adds(c->out, c->index ? "," : "");
        rc = luajson_encode(&m->json, L, idx, c->out, m->lim.output_bytes - used);
    }
    if (rc == ERR_TOOBIG) {
        fail_call(c, LOGIC_E_OUTPUT, "results exceed the output limit of %zu bytes at result %zu",
                  m->lim.output_bytes, c->index);
        return -1;
    }
    if (rc < 0) {
        fail_call(c, LOGIC_E_OUTPUT, "result %zu: %s", c->index, m->json.err);
        return -1;
    }
    return 0;
}

/* Stack: 1 the call, 2 the entry; per event 3 its result. */
static int do_map(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    struct lua_module *m = c->m;
    c->index = c->n;
    if (!push_entry(L, m, c->entry)) {
        return fail_call(c, LOGIC_E_MISSING, "%s is not defined as a global function", c->entry);
    }
    if (m->lim.output_bytes < 2) {
        return fail_call(c, LOGIC_E_OUTPUT, "results exceed the output limit of %zu bytes",
                         m->lim.output_bytes);
    }
    buf_addc(c->out, '[');
    for (c->index = 0; c->index < c->n; c->index++) {
        const struct slice *ev = &c->events[c->index];
        lua_pushvalue(L, 2);
        if (luajson_decode(&m->json, L, ev->ptr, ev->len) < 0) {
            return fail_call(c, LOGIC_E_INVALID, "event %zu: %s", c->index, m->json.err);
        }
        lua_call(L, 1, 1);
        if (encode_item(L, c, 3) < 0) {
            return 0;
        }
        lua_settop(L, 2);
    }
    buf_addc(c->out, ']');
    return 0;
}

/* Whether text is a JSON object (its first byte after whitespace is '{'). */
static bool is_object_text(struct slice text)
{
    size_t i = 0;
    while (i < text.len && (text.ptr[i] == ' ' || text.ptr[i] == '\t' || text.ptr[i] == '\r' ||
                             text.ptr[i] == '\n')) {
        i++;
    }
    return i < text.len && text.ptr[i] == '{';
}

/* Stack: 1 the call, 2 the entry, 3 the states (a table from key to state, the runtime's
 * values during the batch); per event 4 its key, 5 the new state. */
static int do_fold_keyed(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    struct lua_module *m = c->m;
    c->index = c->n;
    if (!push_entry(L, m, c->entry)) {
        return fail_call(c, LOGIC_E_MISSING, "%s is not defined as a global function", c->entry);
    }
    if (!is_object_text(c->state)) {
        return fail_call(c, LOGIC_E_INVALID, "states: not a JSON object");
    }
    if (luajson_decode_depth(&m->json, L, c->state.ptr, c->state.len,
                             LOGIC_MAX_JSON_DEPTH + 1) < 0) {
        return fail_call(c, LOGIC_E_INVALID, "states: %s", m->json.err);
    }
    if (m->lim.output_bytes < 2) {
        return fail_call(c, LOGIC_E_OUTPUT, "results exceed the output limit of %zu bytes",
                         m->lim.output_bytes);
    }
    buf_addc(c->out, '[');
    for (c->index = 0; c->index < c->n; c->index++) {
        const struct slice *key = &c->keys[c->index];
        const struct slice *ev = &c->events[c->index];
        lua_pushlstring(L, key->ptr, key->len);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 4);
        lua_rawget(L, 3); /* the key's state, nil when it has none yet */
        if (luajson_decode(&m->json, L, ev->ptr, ev->len) < 0) {
            return fail_call(c, LOGIC_E_INVALID, "event %zu: %s", c->index, m->json.err);
        }
        lua_call(L, 2, 1);
        if (encode_item(L, c, 5) < 0) {
            return 0;
        }
        lua_rawset(L, 3); /* states[key] = the new state (nil removes it: null again) */
    }
    buf_addc(c->out, ']');
    return 0;
}

/* Pushes states[key] (stack index 6 holds the key), asking the state source the first time a
 * key is seen in the batch (4 the states, 5 the keys seen). */
static void push_key_state(lua_State *L, struct call *c)
{
    struct lua_module *m = c->m;
    lua_pushvalue(L, 6);
    if (lua_rawget(L, 5) != LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushvalue(L, 6);
        lua_rawget(L, 4);
        return;
    }
    lua_pop(L, 1);
    size_t klen;
    const char *k = lua_tolstring(L, 6, &klen);
    struct buf st;
    buf_init(&st);
    int rc = c->state_fn(c->state_arg, (struct slice){k, klen}, &st);
    if (rc == 0 && luajson_decode_depth(&m->json, L, st.ptr ? st.ptr : "null",
                                        st.ptr ? st.len : 4, LOGIC_MAX_JSON_DEPTH) < 0) {
        rc = ERR_CORRUPT;
    }
    buf_fini(&st);
    if (rc) {
        fail_call(c, LOGIC_E_INVALID, "the state of key %zu could not be read", c->index);
        lua_pushnil(L); /* the caller sees c->kind set and stops */
        return;
    }
    lua_pushvalue(L, 6);
    lua_pushboolean(L, 1);
    lua_rawset(L, 5);
}

/* Encodes [key, new state] (stack 6 and 7) into the answer. Returns -1 after fail_call. */
static int encode_pair(lua_State *L, struct call *c)
{
    struct lua_module *m = c->m;
    size_t klen;
    const char *k = lua_tolstring(L, 6, &klen);
    size_t used = c->out->len - c->out_start + klen * 6 + 8;
    int rc = used < m->lim.output_bytes ? 0 : ERR_TOOBIG;
    if (rc == 0) {
        buf_adds(c->out, c->index ? ",[" : "[");
        buf_add_json_str(c->out, k, klen);
        buf_addc(c->out, ',');
        rc = luajson_encode(&m->json, L, 7, c->out, m->lim.output_bytes - used);
        buf_addc(c->out, ']');
    }
    if (rc == ERR_TOOBIG) {
        fail_call(c, LOGIC_E_OUTPUT, "results exceed the output limit of %zu bytes at result "
                  "%zu", m->lim.output_bytes, c->index);
        return -1;
    }
    if (rc < 0) {
        fail_call(c, LOGIC_E_OUTPUT, "result %zu: %s", c->index, m->json.err);
        return -1;
    }
    return 0;
}

/* Stack: 1 the call, 2 key, 3 apply, 4 the states, 5 the keys seen; per event 6 the event,
 * then 6 its key, 7 the new state. One decode of each event serves both entries. */
static int do_project(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    struct lua_module *m = c->m;
    c->index = c->n;
    if (!push_entry(L, m, c->entry) || !push_entry(L, m, c->entry2)) {
        return fail_call(c, LOGIC_E_MISSING, "%s and %s must be global functions", c->entry,
                         c->entry2);
    }
    lua_newtable(L);
    lua_newtable(L);
    buf_addc(c->out, '[');
    for (c->index = 0; c->index < c->n; c->index++) {
        const struct slice *ev = &c->events[c->index];
        if (luajson_decode(&m->json, L, ev->ptr, ev->len) < 0) {
            return fail_call(c, LOGIC_E_INVALID, "event %zu: %s", c->index, m->json.err);
        }
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 6);
        lua_call(L, 1, 1); /* 6 the event, 7 its key */
        int kt = lua_type(L, 7);
        if (kt != LUA_TNIL && kt != LUA_TSTRING) {
            return fail_call(c, LOGIC_E_OUTPUT, "event %zu: %s must return a string or nil",
                             c->index, c->entry);
        }
        if (kt == LUA_TNIL) {
            buf_adds(c->out, c->index ? ",null" : "null");
            lua_settop(L, 5);
            continue;
        }
        lua_insert(L, 6); /* 6 the key, 7 the event */
        lua_pushvalue(L, 3);
        lua_insert(L, 7); /* 7 apply, 8 the event */
        push_key_state(L, c);
        if (c->kind != LOGIC_E_NONE) {
            return 0;
        }
        lua_insert(L, 8); /* 7 apply, 8 the state, 9 the event */
        lua_call(L, 2, 1); /* 7 the new state */
        if (encode_pair(L, c) < 0) {
            return 0;
        }
        lua_pushvalue(L, 6);
        lua_insert(L, 7);
        lua_rawset(L, 4); /* states[key] = the new state */
        lua_settop(L, 5);
    }
    buf_addc(c->out, ']');
    if (c->out->len - c->out_start > m->lim.output_bytes) {
        c->index = c->n;
        return fail_call(c, LOGIC_E_OUTPUT, "results exceed the output limit of %zu bytes",
                         m->lim.output_bytes);
    }
    return 0;
}

/* ctx.<op>(...): upvalue 1 the call, 2 the op's name. Encodes the arguments as a JSON array,
 * asks the host, decodes its answer. */
static int ctx_trampoline(lua_State *L)
{
    struct call *c = lua_touserdata(L, lua_upvalueindex(1));
    const char *op = lua_tostring(L, lua_upvalueindex(2));
    struct lua_module *m = c->m;
    int n = lua_gettop(L);
    struct buf args, res;
    buf_init(&args);
    buf_init(&res);
    buf_addc(&args, '[');
    for (int i = 1; i <= n; i++) {
        buf_adds(&args, i > 1 ? "," : "");
        if (luajson_encode(&m->json, L, i, &args, m->lim.output_bytes) < 0) {
            buf_fini(&args);
            buf_fini(&res);
            raise_fmt(L, "ctx.%s: argument %d: %s", op, i, m->json.err);
        }
    }
    buf_addc(&args, ']');
    char why[200] = "";
    int rc = c->host->fn(c->host->arg, op, (struct slice){args.ptr, args.len}, &res, why,
                         sizeof why);
    buf_fini(&args);
    if (rc == 0 && luajson_decode(&m->json, L, res.ptr ? res.ptr : "null",
                                  res.ptr ? res.len : 4) < 0) {
        snprintf(why, sizeof why, "its answer: %.180s", m->json.err);
        rc = -1;
    }
    buf_fini(&res);
    if (rc) {
        raise_fmt(L, "ctx.%s: %s", op, why[0] ? why : "failed");
    }
    return 1;
}

/* Like do_call, with the ctx table as the last argument. */
static int do_call_ctx(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    if (!push_call(L, c)) {
        return 0;
    }
    lua_newtable(L);
    for (const char *const *op = c->host->ops; *op; op++) {
        lua_pushlightuserdata(L, c);
        lua_pushstring(L, *op);
        lua_pushcclosure(L, ctx_trampoline, 2);
        lua_setfield(L, -2, *op);
    }
    lua_call(L, (int)c->nargs + 1, 1);
    return encode_result(L, c, -1);
}

static int call_ctx_module(struct logic_module *lm, const char *entry, const struct slice *args,
                           size_t nargs, const struct logic_host *host, struct buf *out,
                           struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = entry, .args = args, .nargs = nargs, .host = host,
                     .out = out, .out_start = out->len};
    call_begin(m);
    return finish(m, &c, run(m, do_call_ctx, &c), err);
}

static int call_module(struct logic_module *lm, const char *entry, const struct slice *args,
                       size_t nargs, struct buf *out, struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = entry, .args = args, .nargs = nargs, .out = out,
                     .out_start = out->len};
    call_begin(m);
    return finish(m, &c, run(m, do_call, &c), err);
}

static int fold_module(struct logic_module *lm, const char *entry, struct slice state,
                       const struct slice *events, size_t n, const struct slice *extra,
                       struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = entry, .state = state, .events = events, .n = n,
                     .extra = extra, .out = out, .out_start = out->len};
    call_begin(m);
    int rc = finish(m, &c, run(m, do_fold, &c), err);
    if (rc < 0 && out_failed_at) {
        *out_failed_at = c.index;
    }
    return rc;
}

static int map_module(struct logic_module *lm, const char *entry, const struct slice *events,
                      size_t n, struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = entry, .events = events, .n = n, .index = n, .out = out,
                     .out_start = out->len};
    call_begin(m);
    int rc = finish(m, &c, run(m, do_map, &c), err);
    if (rc < 0) {
        *out_failed_at = c.index;
    }
    return rc;
}

static int fold_keyed_module(struct logic_module *lm, const char *entry, struct slice states,
                             const struct slice *keys, const struct slice *events, size_t n,
                             struct buf *out, size_t *out_failed_at, struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = entry, .state = states, .keys = keys, .events = events,
                     .n = n, .index = n, .out = out, .out_start = out->len};
    call_begin(m);
    int rc = finish(m, &c, run(m, do_fold_keyed, &c), err);
    if (rc < 0) {
        *out_failed_at = c.index;
    }
    return rc;
}

static int project_module(struct logic_module *lm, const char *key_entry,
                          const char *apply_entry, logic_state_fn *state_fn, void *state_arg,
                          const struct slice *events, size_t n, struct buf *out,
                          size_t *out_failed_at, struct logic_error *err)
{
    struct lua_module *m = (struct lua_module *)lm;
    struct call c = {.m = m, .entry = key_entry, .entry2 = apply_entry, .state_fn = state_fn,
                     .state_arg = state_arg, .events = events, .n = n, .index = n, .out = out,
                     .out_start = out->len};
    call_begin(m);
    int rc = finish(m, &c, run(m, do_project, &c), err);
    if (rc < 0) {
        *out_failed_at = c.index;
    }
    return rc;
}

static size_t copy_logs(struct logic_module *lm, char **lines, size_t max)
{
    struct lua_module *m = (struct lua_module *)lm;
    uint64_t kept = m->log_count < LOGIC_LOG_LINES ? m->log_count : LOGIC_LOG_LINES;
    size_t n = kept < max ? (size_t)kept : max;
    uint64_t first = m->log_count - n;
    for (size_t i = 0; i < n; i++) {
        const char *slot = m->log_lines + ((first + i) % LOGIC_LOG_LINES) * LOGIC_LOG_LINE_BYTES;
        lines[i] = xstrndup(slot, strlen(slot));
    }
    return n;
}

static void unload_module(struct logic_module *lm)
{
    struct lua_module *m = (struct lua_module *)lm;
    if (!m) {
        return;
    }
    if (m->L) {
        lua_close(m->L);
    }
    luajson_fini(&m->json);
    for (size_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].name);
    }
    free(m->log_lines);
    free(m);
}

const struct logic_runtime logic_lua_runtime = {
    .name = "lua",
    .load = load_module,
    .call = call_module,
    .fold = fold_module,
    .call_ctx = call_ctx_module,
    .logs = copy_logs,
    .unload = unload_module,
    .map = map_module,
    .fold_keyed = fold_keyed_module,
    .project = project_module,
};
