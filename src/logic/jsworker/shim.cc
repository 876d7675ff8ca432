/* The SpiderMonkey side of the JavaScript worker, kept small: an engine (one JSContext on the
 * worker's main thread, a promise job queue drained after every request, an interrupt flag
 * the watchdog sets), and modules (one global each, in its own compartment and zone, so one
 * module's prototypes and globals are not another's). JSON crosses in and out through the
 * engine's own JSON.parse and JSON.stringify. A command handler's ctx functions are natives
 * that hand their arguments' JSON to the worker's host function. A WebAssembly component is
 * a global of its own where the engine's WebAssembly support compiles and instantiates the
 * module (the CSP hook allows that there only); its calls copy bytes in and out of the
 * instance's memory. Everything the worker decides (limits, wire format, sandbox, the
 * WebAssembly ABI's checks) lives in C (main.c, wasm.c); this file only speaks JSAPI.
 *
 * Invariant: no promise job outlives the request that queued it (drained or dropped before
 * the answer), so code of one module never runs inside another module's call.
 */
#include "logic/jsworker/shim.h"

#include <jsapi.h>
#include <jsfriendapi.h>
#include <js/Array.h>
#include <js/ArrayBuffer.h>
#include <js/BigInt.h>
#include <js/CompilationAndEvaluation.h>
#include <js/Date.h>
#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/Initialization.h>
#include <js/JSON.h>
#include <js/MapAndSet.h>
#include <js/Modules.h>
#include <js/Promise.h>
#include <js/PropertyAndElement.h>
#include <js/SourceText.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "logic/jsworker/proto.h"
#include "util/errors.h"

namespace {

/* Promise jobs of the current request, run by drain() and dropped by clear(). */
class job_queue final : public JS::JobQueue {
  public:
    explicit job_queue(JSContext *cx) : jobs_(cx) {}
    JSObject *getIncumbentGlobal(JSContext *cx) override { return JS::CurrentGlobalOrNull(cx); }
    bool enqueuePromiseJob(JSContext *cx, JS::HandleObject, JS::HandleObject job,
                           JS::HandleObject, JS::HandleObject) override
    {
        if (jobs_.append(job)) return true;
        JS_ReportOutOfMemory(cx);
        return false;
    }
    void runJobs(JSContext *cx) override { (void)drain(cx); }
    bool empty() const override { return jobs_.empty(); }
    /* Runs the jobs in order, and those they queue; false (jobs dropped) when one fails. */
    bool drain(JSContext *cx)
    {
        JS::RootedObject job(cx);
        JS::RootedValue rv(cx);
        for (size_t i = 0; i < jobs_.length(); i++) {
            job = jobs_[i];
            JSAutoRealm ar(cx, job);
            if (!JS::Call(cx, JS::UndefinedHandleValue, job, JS::HandleValueArray::empty(), &rv)) {
                jobs_.clear();
                return false;
            }
        }
        jobs_.clear();
        return true;
    }
    void clear() { jobs_.clear(); }

  private:
    js::UniquePtr<SavedJobQueue> saveJobQueue(JSContext *) override { return nullptr; }
    JS::PersistentRooted<JS::GCVector<JSObject *, 0, js::SystemAllocPolicy>> jobs_;
};

const JSClass global_class = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps,
                              nullptr, nullptr, nullptr};

/* Globals removed from every module (shim.h says why). */
const char *const removed_globals[] = {"WeakRef", "FinalizationRegistry", "WebAssembly"};

} // namespace

struct jsw_engine {
    JSContext *cx;
    job_queue *jobs;
    std::atomic<bool> stopped; /* set by the watchdog: the request's budget is spent */
};

struct jsw_module {
    jsw_engine *eng;
    JS::PersistentRootedObject global;
    JS::PersistentRootedObject exports; /* an ES module's namespace, or null */
    uint64_t rng;                       /* Math.random state, reset per invocation */
    jsw_log_fn *log;
    void *log_arg;
    JS::PersistentRootedObject batch_states;  /* jsw_fold_keyed: the Map key -> state, or null */
    JS::PersistentRootedObject batch_initial; /* ... and the object of the starting states */
    const jsw_host *host;                     /* jsw_call_ctx: the ctx functions' host while
                                                 the call runs, else NULL */
    unsigned host_calls;                      /* ... and the host calls it made so far */
    bool is_wasm;                             /* a WebAssembly module (jsw_wasm_new) */
    JS::PersistentRootedObject compiled;      /* WebAssembly: the compiled module, for new
                                                 instances (jsw_wasm_reset) */
    JS::PersistentRootedObject memory;        /* ... the instance's exported memory */
    JS::PersistentRootedValue alloc;          /* ... alloc, and dealloc (undefined if none) */
    JS::PersistentRootedValue dealloc;
    jsw_module(JSContext *cx)
        : global(cx), exports(cx), batch_states(cx), batch_initial(cx), host(nullptr),
          host_calls(0), is_wasm(false), compiled(cx), memory(cx), alloc(cx), dealloc(cx)
    {
    }
};

/* ---- hooks -------------------------------------------------------------------------------- */

static bool on_interrupt(JSContext *cx)
{
    auto *e = static_cast<jsw_engine *>(JS_GetContextPrivate(cx));
    return !e->stopped.load(std::memory_order_relaxed);
}

static jsw_module *current_module(JSContext *cx);

/* The engine's CSP hook: no eval or Function anywhere; WebAssembly compiles only in the
 * globals of WebAssembly components (JavaScript globals have no WebAssembly object anyway). */
static bool on_eval(JSContext *cx, JS::RuntimeCode kind, JS::HandleString)
{
    jsw_module *m = kind == JS::RuntimeCode::WASM ? current_module(cx) : nullptr;
    return m && m->is_wasm;
}

static const JSSecurityCallbacks security_callbacks = {on_eval, nullptr};

static double on_clock(double, JSContext *) { return JSW_FIXED_TIME_MS * 1000.0; }

static JSObject *on_import(JSContext *cx, JS::HandleValue, JS::HandleObject request)
{
    JS::RootedString spec(cx, JS::GetModuleRequestSpecifier(cx, request));
    JS::UniqueChars s = spec ? JS_EncodeStringToUTF8(cx, spec) : nullptr;
    JS_ReportErrorUTF8(cx, "import of '%s' is not available: a module is one file",
                       s ? s.get() : "?");
    return nullptr;
}

static jsw_module *current_module(JSContext *cx)
{
    return static_cast<jsw_module *>(JS::GetRealmPrivate(js::GetContextRealm(cx)));
}

/* Math.random from the module's state (reset to JSW_RANDOM_SEED per invocation). */
static bool native_random(JSContext *cx, unsigned argc, JS::Value *vp)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    args.rval().setDouble(jsw_random_next(&current_module(cx)->rng));
    return true;
}

static bool on_json(const char16_t *p, uint32_t n, void *data)
{
    return jsw_utf8_put(static_cast<jsw_utf8_sink *>(data), reinterpret_cast<const uint16_t *>(p), n);
}

/* ---- errors ------------------------------------------------------------------------------- */

/* Fills err from the pending exception (or its absence) of a failed engine call; kind is what
 * a thrown error means at this stage. Always returns ERR_INVALID. */
static int fail(jsw_engine *e, logic_err_kind kind, logic_error *err)
{
    JSContext *cx = e->cx;
    memset(err, 0, sizeof *err);
    err->kind = kind;
    e->jobs->clear();
    if (e->stopped.load()) {
        JS_ClearPendingException(cx);
        err->kind = LOGIC_E_CPU;
        snprintf(err->message, sizeof err->message, "cpu_limit: the call's CPU budget ran out");
        return ERR_INVALID;
    }
    if (!JS_IsExceptionPending(cx) || JS_IsThrowingOutOfMemory(cx)) {
        JS_ClearPendingException(cx);
        err->kind = LOGIC_E_MEMORY;
        snprintf(err->message, sizeof err->message, "memory_limit: out of memory");
        return ERR_INVALID;
    }
    JS::ExceptionStack exn(cx);
    JS::ErrorReportBuilder report(cx);
    if (!JS::StealPendingExceptionStack(cx, &exn) ||
        !report.init(cx, exn, JS::ErrorReportBuilder::NoSideEffects)) {
        JS_ClearPendingException(cx);
        snprintf(err->message, sizeof err->message, "uncaught exception");
        return ERR_INVALID;
    }
    const char *msg = report.toStringResult() ? report.toStringResult().c_str() : "error";
    snprintf(err->message, sizeof err->message, "%s", msg);
    if (report.report()) {
        err->line = (int)report.report()->lineno;
        err->column = (int)report.report()->column + 1;
    }
    err->kind = jsw_classify(msg, kind);
    return ERR_INVALID;
}

static int fail_with(logic_error *err, logic_err_kind kind, const char *what, const char *name)
{
    memset(err, 0, sizeof *err);
    err->kind = kind;
    snprintf(err->message, sizeof err->message, "%s%s", what, name);
    return ERR_INVALID;
}

/* ---- engine ------------------------------------------------------------------------------- */

extern "C" int jsw_init(void)
{
    if (!JS_Init()) return ERR_NOMEM;
    JS::SetReduceMicrosecondTimePrecisionCallback(on_clock);
    return 0;
}

extern "C" void jsw_shutdown(void) { JS_ShutDown(); }

extern "C" const char *jsw_crash_reason(void) { return gMozCrashReason; }

extern "C" jsw_engine *jsw_engine_new(size_t gc_max_bytes, size_t stack_bytes)
{
    JSContext *cx = JS_NewContext(gc_max_bytes);
    if (!cx) return nullptr;
    JS_SetNativeStackQuota(cx, stack_bytes);
    auto *e = new jsw_engine();
    e->cx = cx;
    e->jobs = new job_queue(cx);
    e->stopped = false;
    JS::SetJobQueue(cx, e->jobs);
    JS_SetContextPrivate(cx, e);
    if (!JS::InitSelfHostedCode(cx) || !JS_AddInterruptCallback(cx, on_interrupt)) {
        jsw_engine_free(e);
        return nullptr;
    }
    JS_SetSecurityCallbacks(cx, &security_callbacks);
    JS::SetModuleResolveHook(JS_GetRuntime(cx), on_import);
    return e;
}

extern "C" void jsw_engine_free(jsw_engine *e)
{
    if (!e) return;
    delete e->jobs;
    JS_DestroyContext(e->cx);
    delete e;
}

extern "C" void jsw_engine_interrupt(jsw_engine *e)
{
    e->stopped.store(true);
    JS_RequestInterruptCallback(e->cx);
}

extern "C" void jsw_engine_rearm(jsw_engine *e) { e->stopped.store(false); }

extern "C" void jsw_engine_gc(jsw_engine *e) { JS_GC(e->cx); }

/* ---- modules ------------------------------------------------------------------------------ */

/* One console argument: a string as it is, another value as JSON, else as String(v). */
static bool log_value(JSContext *cx, JS::HandleValue v, jsw_line *l)
{
    JS::RootedValue val(cx, v);
    JS::RootedString str(cx, v.isString() ? v.toString() : nullptr);
    if (!str) {
        jsw_utf8_sink s = {jsw_line_add, l, 0, false, 0};
        bool ok = JS_Stringify(cx, &val, nullptr, JS::NullHandleValue, on_json, &s);
        JS_ClearPendingException(cx);
        if ((ok && s.written) || s.is_stopped) return true;
        str = JS::ToString(cx, val);
        if (!str) return false;
    }
    JS::UniqueChars u = JS_EncodeStringToUTF8(cx, str);
    if (!u) return false;
    jsw_line_add(l, u.get(), strlen(u.get()));
    return true;
}

/* console.log and friends: arguments joined by spaces, one line to the module's log. */
static bool native_log(JSContext *cx, unsigned argc, JS::Value *vp)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    jsw_module *m = current_module(cx);
    char line[LOGIC_LOG_LINE_BYTES];
    jsw_line l = {line, 0, sizeof line};
    for (unsigned i = 0; i < args.length(); i++) {
        if (i) jsw_line_add(&l, " ", 1);
        if (!log_value(cx, args[i], &l)) return false;
    }
    m->log(m->log_arg, line, l.len);
    args.rval().setUndefined();
    return true;
}

static const JSFunctionSpec console_functions[] = {
    JS_FN("log", native_log, 0, 0),  JS_FN("info", native_log, 0, 0),
    JS_FN("warn", native_log, 0, 0), JS_FN("error", native_log, 0, 0),
    JS_FN("debug", native_log, 0, 0), JS_FS_END};

/* The global's standard library, minus what shim.h lists, plus console and Math.random. */
static bool init_global(JSContext *cx, JS::HandleObject global)
{
    if (!JS::InitRealmStandardClasses(cx)) return false;
    for (const char *name : removed_globals) {
        if (!JS_DeleteProperty(cx, global, name)) return false;
    }
    JS::RootedObject console(cx, JS_NewPlainObject(cx));
    JS::RootedValue math(cx);
    if (!console || !JS_DefineFunctions(cx, console, console_functions) ||
        !JS_DefineProperty(cx, global, "console", console, 0) ||
        !JS_GetProperty(cx, global, "Math", &math) || !math.isObject())
        return false;
    JS::RootedObject mathobj(cx, &math.toObject());
    return JS_DefineFunction(cx, mathobj, "random", native_random, 0, 0) != nullptr;
}

/* Runs the source as a classic script; on a syntax error that an ES module would not have,
 * as a module. *compiled tells whether a compile error (syntax) or a run failed; *rv is a
 * module's evaluation promise (top-level await), undefined for a script. */
static bool run_source(jsw_module *m, const char *name, const char *src, size_t len,
                       bool *compiled, JS::MutableHandleValue rv)
{
    JSContext *cx = m->eng->cx;
    JS::CompileOptions opts(cx);
    opts.setFileAndLine(name, 1);
    JS::SourceText<mozilla::Utf8Unit> text;
    if (!text.init(cx, src, len, JS::SourceOwnership::Borrowed)) return *compiled = false;
    JS::RootedScript script(cx, JS::Compile(cx, opts, text));
    JS::RootedValue completion(cx);
    *compiled = true;
    if (script) return JS_ExecuteScript(cx, script, &completion);
    JS::RootedValue first(cx);
    (void)JS_GetPendingException(cx, &first);
    JS_ClearPendingException(cx);
    JS::RootedObject mod(cx, JS::CompileModule(cx, opts, text));
    if (!mod) {
        /* both failed: report the script's error unless it is about module syntax */
        JS::RootedValue second(cx);
        (void)JS_GetPendingException(cx, &second);
        JS::RootedString s(cx, first.isObject() ? JS::ToString(cx, first) : nullptr);
        JS::UniqueChars u = s ? JS_EncodeStringToUTF8(cx, s) : nullptr;
        bool about_modules = u && strstr(u.get(), "module");
        JS_SetPendingException(cx, about_modules ? second : first);
        return *compiled = false;
    }
    if (!JS::ModuleInstantiate(cx, mod) || !JS::ModuleEvaluate(cx, mod, rv)) return false;
    m->exports = JS::GetModuleNamespace(cx, mod);
    return m->exports != nullptr;
}

/* Settles a promise result by running the queued jobs; other values pass through. */
static bool settle(jsw_module *m, JS::MutableHandleValue v)
{
    JSContext *cx = m->eng->cx;
    if (!m->eng->jobs->drain(cx)) return false;
    if (!v.isObject()) return true;
    JS::RootedObject obj(cx, &v.toObject());
    if (!JS::IsPromiseObject(obj)) return true;
    switch (JS::GetPromiseState(obj)) {
    case JS::PromiseState::Fulfilled:
        v.set(JS::GetPromiseResult(obj));
        return true;
    case JS::PromiseState::Rejected: {
        JS::RootedValue reason(cx, JS::GetPromiseResult(obj));
        JS_SetPendingException(cx, reason);
        return false;
    }
    default:
        JS_ReportErrorASCII(cx, "the returned promise never settled (no timers or I/O exist)");
        return false;
    }
}

extern "C" jsw_module *jsw_module_new(jsw_engine *e, const char *name, const char *source,
                                      size_t len, jsw_log_fn *log, void *log_arg,
                                      logic_error *err)
{
    JSContext *cx = e->cx;
    JS::RealmOptions options;
    options.creationOptions().setNewCompartmentAndZone();
    options.behaviors().setClampAndJitterTime(true);
    JS::RootedObject global(cx, JS_NewGlobalObject(cx, &global_class, nullptr,
                                                   JS::FireOnNewGlobalHook, options));
    if (!global) {
        fail(e, LOGIC_E_MEMORY, err);
        return nullptr;
    }
    auto *m = new jsw_module(cx);
    m->eng = e;
    m->global = global;
    m->rng = JSW_RANDOM_SEED;
    m->log = log;
    m->log_arg = log_arg;
    JSAutoRealm ar(cx, global);
    JS::SetRealmPrivate(js::GetContextRealm(cx), m);
    bool compiled = false;
    JS::RootedValue evaluated(cx);
    if (!init_global(cx, global) || !run_source(m, name, source, len, &compiled, &evaluated) ||
        !settle(m, &evaluated)) {
        fail(e, compiled ? LOGIC_E_RUNTIME : LOGIC_E_SYNTAX, err);
        jsw_module_free(m);
        return nullptr;
    }
    return m;
}

extern "C" void jsw_module_free(jsw_module *m)
{
    if (!m) return;
    delete m;
}

static bool find_entry(jsw_module *m, const char *entry, JS::MutableHandleValue fn)
{
    JSContext *cx = m->eng->cx;
    bool found = false;
    if (m->exports && JS_HasProperty(cx, m->exports, entry, &found) && found &&
        JS_GetProperty(cx, m->exports, entry, fn) && fn.isObject() &&
        JS::IsCallable(&fn.toObject()))
        return true;
    if (m->is_wasm) return false; /* a WebAssembly module's entry points are its exports */
    if (JS_HasOwnProperty(cx, m->global, entry, &found) && found &&
        JS_GetProperty(cx, m->global, entry, fn) && fn.isObject() &&
        JS::IsCallable(&fn.toObject()))
        return true;
    return false;
}

extern "C" bool jsw_module_has(jsw_module *m, const char *entry)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx);
    bool ok = find_entry(m, entry, &fn);
    JS_ClearPendingException(cx);
    return ok;
}

/* ---- calls -------------------------------------------------------------------------------- */

static bool parse_json(JSContext *cx, struct slice text, JS::MutableHandleValue v)
{
    JS::RootedString s(cx, JS_NewStringCopyUTF8N(cx, JS::UTF8Chars(text.ptr, text.len)));
    return s && JS_ParseJSON(cx, s, v);
}

/* Writes v's JSON (null for undefined, functions, symbols) to w. */
static int write_json(jsw_module *m, JS::MutableHandleValue v, jsw_write_fn *w, void *w_arg,
                      logic_error *err)
{
    JSContext *cx = m->eng->cx;
    jsw_utf8_sink s = {w, w_arg, 0, false, 0};
    if (!JS_Stringify(cx, v, nullptr, JS::NullHandleValue, on_json, &s)) {
        if (!s.is_stopped) return fail(m->eng, LOGIC_E_OUTPUT, err);
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_OUTPUT, "output_limit: the result exceeds the output budget", "");
    }
    if (s.written == 0 && !w(w_arg, "null", 4))
        return fail_with(err, LOGIC_E_OUTPUT, "output_limit", "");
    return 0;
}

/* Calls fn with argv after resetting Math.random; settles a returned promise. */
static bool invoke(jsw_module *m, JS::HandleValue fn, const JS::HandleValueArray &argv,
                   JS::MutableHandleValue rv)
{
    m->rng = JSW_RANDOM_SEED;
    return JS::Call(m->eng->cx, JS::UndefinedHandleValue, fn, argv, rv) && settle(m, rv);
}

extern "C" int jsw_call(jsw_module *m, const char *entry, const struct slice *args, size_t nargs,
                        jsw_write_fn *w, void *w_arg, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx);
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    JS::RootedValueVector argv(cx);
    JS::RootedValue v(cx);
    for (size_t i = 0; i < nargs; i++) {
        if (!parse_json(cx, args[i], &v)) return fail(m->eng, LOGIC_E_INVALID, err);
        if (!argv.append(v)) return fail(m->eng, LOGIC_E_MEMORY, err);
    }
    if (!invoke(m, fn, argv, &v)) return fail(m->eng, LOGIC_E_RUNTIME, err);
    return write_json(m, &v, w, w_arg, err);
}

extern "C" int jsw_fold(jsw_module *m, const char *entry, struct slice state,
                        const struct slice *events, size_t n, const struct slice *extra,
                        jsw_write_fn *w, void *w_arg, size_t *failed_at, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx);
    *failed_at = n; /* no event's failure */
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    JS::RootedValueArray<3> argv(cx);
    if (!parse_json(cx, state, argv[0]) || (extra && !parse_json(cx, *extra, argv[2])))
        return fail(m->eng, LOGIC_E_INVALID, err);
    JS::RootedValue rv(cx);
    for (size_t i = 0; i < n; i++) {
        *failed_at = i;
        if (!parse_json(cx, events[i], argv[1])) return fail(m->eng, LOGIC_E_INVALID, err);
        if (!invoke(m, fn, argv, &rv)) return fail(m->eng, LOGIC_E_RUNTIME, err);
        argv[0].set(rv);
    }
    *failed_at = n;
    return write_json(m, argv[0], w, w_arg, err);
}

/* ---- batches ------------------------------------------------------------------------------ */

/* Writes item i of a batch's results: a comma before all but the first, then v's JSON. */
static int write_item(jsw_module *m, size_t i, JS::MutableHandleValue v, jsw_write_fn *w,
                      void *w_arg, logic_error *err)
{
    if (i > 0 && !w(w_arg, ",", 1))
        return fail_with(err, LOGIC_E_OUTPUT, "output_limit: the results exceed the output budget",
                         "");
    return write_json(m, v, w, w_arg, err);
}

extern "C" int jsw_map(jsw_module *m, const char *entry, const struct slice *events, size_t n,
                       jsw_write_fn *w, void *w_arg, size_t *failed_at, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx);
    *failed_at = n; /* no event's failure */
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    JS::RootedValueArray<1> argv(cx);
    JS::RootedValue rv(cx);
    for (size_t i = 0; i < n; i++) {
        *failed_at = i;
        if (!parse_json(cx, events[i], argv[0])) return fail(m->eng, LOGIC_E_INVALID, err);
        if (!invoke(m, fn, argv, &rv)) return fail(m->eng, LOGIC_E_RUNTIME, err);
        int rc = write_item(m, i, &rv, w, w_arg, err);
        if (rc) return rc;
    }
    *failed_at = n;
    return 0;
}

extern "C" void jsw_batch_drop(jsw_module *m)
{
    m->batch_states = nullptr;
    m->batch_initial = nullptr;
}

/* Makes the batch's Map and parses its starting states, or keeps those of the batch going on
 * (states NULL). */
static int begin_keyed(jsw_module *m, const struct slice *states, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    if (!states) {
        if (m->batch_states) return 0;
        return fail_with(err, LOGIC_E_INVALID, "no keyed batch to continue", "");
    }
    JS::RootedValue v(cx);
    bool is_array = false;
    if (!parse_json(cx, *states, &v)) return fail(m->eng, LOGIC_E_INVALID, err);
    if (!v.isObject() || !JS::IsArrayObject(cx, v, &is_array) || is_array) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_INVALID, "states: not a JSON object", "");
    }
    JS::RootedObject map(cx, JS::NewMapObject(cx));
    if (!map) return fail(m->eng, LOGIC_E_MEMORY, err);
    m->batch_initial = &v.toObject();
    m->batch_states = map;
    return 0;
}

/* The batch's state of key (a string): the Map's, else the starting states' own member of
 * that name, else null. */
static bool state_of(jsw_module *m, JS::HandleValue key, JS::MutableHandleValue state)
{
    JSContext *cx = m->eng->cx;
    bool has = false;
    if (!JS::MapHas(cx, m->batch_states, key, &has)) return false;
    if (has) return JS::MapGet(cx, m->batch_states, key, state);
    JS::RootedString name(cx, key.toString());
    JS::RootedId id(cx);
    if (!JS_StringToId(cx, name, &id) || !JS_HasOwnPropertyById(cx, m->batch_initial, id, &has))
        return false;
    if (!has) {
        state.setNull();
        return true;
    }
    return JS_GetPropertyById(cx, m->batch_initial, id, state);
}

static int fold_keyed(jsw_module *m, const char *entry, const struct slice *states,
                      const struct slice *keys, const struct slice *events, size_t n,
                      jsw_write_fn *w, void *w_arg, size_t *failed_at, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JS::RootedValue fn(cx);
    *failed_at = n; /* no event's failure */
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    int rc = begin_keyed(m, states, err);
    if (rc) return rc;
    JS::RootedValueArray<2> argv(cx);
    JS::RootedValue key(cx), rv(cx);
    for (size_t i = 0; i < n; i++) {
        *failed_at = i;
        JSString *k = JS_NewStringCopyUTF8N(cx, JS::UTF8Chars(keys[i].ptr, keys[i].len));
        if (!k) return fail(m->eng, LOGIC_E_INVALID, err);
        key.setString(k);
        if (!state_of(m, key, argv[0])) return fail(m->eng, LOGIC_E_MEMORY, err);
        if (!parse_json(cx, events[i], argv[1])) return fail(m->eng, LOGIC_E_INVALID, err);
        if (!invoke(m, fn, argv, &rv)) return fail(m->eng, LOGIC_E_RUNTIME, err);
        if (rv.isUndefined()) rv.setNull(); /* as its JSON would come back in a call */
        if (!JS::MapSet(cx, m->batch_states, key, rv)) return fail(m->eng, LOGIC_E_MEMORY, err);
        if ((rc = write_item(m, i, &rv, w, w_arg, err))) return rc;
    }
    *failed_at = n;
    return 0;
}

extern "C" int jsw_fold_keyed(jsw_module *m, const char *entry, const struct slice *states,
                              const struct slice *keys, const struct slice *events, size_t n,
                              bool keep, jsw_write_fn *w, void *w_arg, size_t *failed_at,
                              logic_error *err)
{
    JSAutoRealm ar(m->eng->cx, m->global);
    if (states) jsw_batch_drop(m);
    int rc = fold_keyed(m, entry, states, keys, events, n, w, w_arg, failed_at, err);
    if (rc || !keep) jsw_batch_drop(m);
    return rc;
}

/* ---- ctx: host calls during jsw_call_ctx -------------------------------------------------- */

/* The JSON text of a host call's arguments, within a cap. */
struct host_args {
    char *p;
    size_t len;
    size_t cap;
    size_t limit;
};

static bool on_host_args(void *arg, const char *p, size_t n)
{
    auto *a = static_cast<host_args *>(arg);
    if (n > a->limit - a->len) return false;
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->len + n) cap *= 2;
        auto *grown = static_cast<char *>(realloc(a->p, cap));
        if (!grown) return false;
        a->p = grown;
        a->cap = cap;
    }
    memcpy(a->p + a->len, p, n);
    a->len += n;
    return true;
}

/* Encodes the arguments of a ctx call as a JSON array into a; false with an exception. */
static bool encode_host_args(JSContext *cx, const JS::CallArgs &args, const char *op,
                             host_args *a)
{
    JS::RootedObject arr(cx, JS::NewArrayObject(cx, args));
    if (!arr) return false;
    JS::RootedValue v(cx, JS::ObjectValue(*arr));
    jsw_utf8_sink s = {on_host_args, a, 0, false, 0};
    if (JS_Stringify(cx, &v, nullptr, JS::NullHandleValue, on_json, &s)) return true;
    if (!s.is_stopped) return false;
    JS_ClearPendingException(cx);
    JS_ReportErrorUTF8(cx, "ctx.%s: the arguments exceed %zu bytes as JSON", op, a->limit);
    return false;
}

/* ctx.<op>(...): reserved slot 0 holds op. Encodes the arguments, asks the host (which blocks
 * until the server answers), and returns its answer parsed, or throws "ctx.<op>: <why>". */
static bool native_ctx(JSContext *cx, unsigned argc, JS::Value *vp)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    jsw_module *m = current_module(cx);
    JS::RootedString name(cx, js::GetFunctionNativeReserved(&args.callee(), 0).toString());
    JS::UniqueChars op = JS_EncodeStringToUTF8(cx, name);
    if (!op) return false;
    if (!m->host) {
        JS_ReportErrorUTF8(cx, "ctx.%s: the call that received ctx has ended", op.get());
        return false;
    }
    if (m->host_calls >= JSW_MAX_HOST_CALLS) {
        JS_ReportErrorUTF8(cx, "ctx.%s: more than %d host calls in one call", op.get(),
                           (int)JSW_MAX_HOST_CALLS);
        return false;
    }
    m->host_calls++;
    host_args a = {nullptr, 0, 0, m->host->args_cap};
    if (!encode_host_args(cx, args, op.get(), &a)) {
        free(a.p);
        return false;
    }
    struct slice answer = {"null", 4};
    char why[256] = "";
    struct slice text = {a.p, a.len}; /* JSON.stringify of an array wrote at least "[]" */
    int rc = m->host->fn(m->host->arg, op.get(), text, &answer, why, sizeof why);
    free(a.p);
    if (rc) {
        JS_ReportErrorUTF8(cx, "ctx.%s: %s", op.get(), why[0] ? why : "failed");
        return false;
    }
    if (parse_json(cx, answer, args.rval())) return true;
    if (JS_IsThrowingOutOfMemory(cx)) return false;
    JS_ClearPendingException(cx);
    JS_ReportErrorUTF8(cx, "ctx.%s: the server's answer is not JSON", op.get());
    return false;
}

/* The ctx object: one function per host operation. */
static bool make_ctx(JSContext *cx, const jsw_host *host, JS::MutableHandleValue ctx)
{
    JS::RootedObject obj(cx, JS_NewPlainObject(cx));
    if (!obj) return false;
    for (size_t i = 0; i < host->nops; i++) {
        char op[JSW_ENTRY_NAME_BYTES];
        size_t n = host->ops[i].len < sizeof op - 1 ? host->ops[i].len : sizeof op - 1;
        memcpy(op, host->ops[i].ptr, n);
        op[n] = 0;
        JSFunction *fn = js::DefineFunctionWithReserved(cx, obj, op, native_ctx, 0,
                                                        JSPROP_ENUMERATE);
        JSString *s = fn ? JS_NewStringCopyZ(cx, op) : nullptr;
        if (!s) return false;
        js::SetFunctionNativeReserved(JS_GetFunctionObject(fn), 0, JS::StringValue(s));
    }
    ctx.setObject(*obj);
    return true;
}

extern "C" int jsw_call_ctx(jsw_module *m, const char *entry, const struct slice *args,
                            size_t nargs, const jsw_host *host, jsw_write_fn *w, void *w_arg,
                            logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx);
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    JS::RootedValueVector argv(cx);
    JS::RootedValue v(cx);
    for (size_t i = 0; i < nargs; i++) {
        if (!parse_json(cx, args[i], &v)) return fail(m->eng, LOGIC_E_INVALID, err);
        if (!argv.append(v)) return fail(m->eng, LOGIC_E_MEMORY, err);
    }
    if (!make_ctx(cx, host, &v) || !argv.append(v)) return fail(m->eng, LOGIC_E_MEMORY, err);
    m->host = host;
    m->host_calls = 0;
    bool ok = invoke(m, fn, argv, &v);
    m->host = nullptr;
    if (!ok) return fail(m->eng, LOGIC_E_RUNTIME, err);
    return write_json(m, &v, w, w_arg, err);
}

/* ---- WebAssembly -------------------------------------------------------------------------- */

/* WebAssembly[name] of m's global. */
static bool wasm_class(jsw_module *m, const char *name, JS::MutableHandleValue out)
{
    JSContext *cx = m->eng->cx;
    JS::RootedValue ns(cx);
    if (!JS_GetProperty(cx, m->global, "WebAssembly", &ns)) return false;
    if (!ns.isObject()) {
        JS_ReportErrorASCII(cx, "this engine has no WebAssembly support");
        return false;
    }
    JS::RootedObject obj(cx, &ns.toObject());
    return JS_GetProperty(cx, obj, name, out);
}

/* The module's export called name, or undefined. */
static bool wasm_export(jsw_module *m, const char *name, JS::MutableHandleValue out)
{
    return JS_GetProperty(m->eng->cx, m->exports, name, out);
}

/* new WebAssembly.Module(bytes) into m->compiled. */
static bool wasm_compile(jsw_module *m, const uint8_t *bytes, size_t len)
{
    JSContext *cx = m->eng->cx;
    JS::RootedValue module_class(cx);
    if (!wasm_class(m, "Module", &module_class)) return false;
    JS::RootedObject buffer(cx, JS::NewArrayBuffer(cx, len));
    if (!buffer) return false;
    {
        JS::AutoCheckCannotGC nogc;
        bool is_shared;
        memcpy(JS::GetArrayBufferData(buffer, &is_shared, nogc), bytes, len);
    }
    JS::RootedValueArray<1> argv(cx);
    JS::RootedObject module(cx);
    argv[0].setObject(*buffer);
    if (!JS::Construct(cx, module_class, argv, &module)) return false;
    m->compiled = module;
    return true;
}

/* new WebAssembly.Instance(m->compiled, {}); keeps its exports, memory, alloc and dealloc. */
static bool wasm_instantiate(jsw_module *m)
{
    JSContext *cx = m->eng->cx;
    JS::RootedValue instance_class(cx), v(cx);
    if (!wasm_class(m, "Instance", &instance_class)) return false;
    JS::RootedValueArray<1> argv(cx);
    JS::RootedObject instance(cx);
    argv[0].setObject(*m->compiled);
    if (!JS::Construct(cx, instance_class, argv, &instance) ||
        !JS_GetProperty(cx, instance, "exports", &v))
        return false;
    if (!v.isObject()) {
        JS_ReportErrorASCII(cx, "the instance has no exports");
        return false;
    }
    m->exports = &v.toObject();
    if (!wasm_export(m, "memory", &v)) return false;
    if (!v.isObject()) {
        JS_ReportErrorASCII(cx, "the module exports no memory");
        return false;
    }
    m->memory = &v.toObject();
    return wasm_export(m, "alloc", &m->alloc) && wasm_export(m, "dealloc", &m->dealloc);
}

extern "C" jsw_module *jsw_wasm_new(jsw_engine *e, const char *name, const uint8_t *bytes,
                                    size_t len, logic_error *err)
{
    JSContext *cx = e->cx;
    JS::RealmOptions options;
    options.creationOptions().setNewCompartmentAndZone();
    JS::RootedObject global(cx, JS_NewGlobalObject(cx, &global_class, nullptr,
                                                   JS::FireOnNewGlobalHook, options));
    if (!global) {
        fail(e, LOGIC_E_MEMORY, err);
        return nullptr;
    }
    auto *m = new jsw_module(cx);
    m->eng = e;
    m->global = global;
    m->is_wasm = true;
    JSAutoRealm ar(cx, global);
    JS::SetRealmPrivate(js::GetContextRealm(cx), m);
    bool is_compiled = false;
    if (!JS::InitRealmStandardClasses(cx) || !(is_compiled = wasm_compile(m, bytes, len)) ||
        !wasm_instantiate(m)) {
        fail(e, is_compiled ? LOGIC_E_RUNTIME : LOGIC_E_SYNTAX, err);
        jsw_module_free(m);
        return nullptr;
    }
    (void)name;
    return m;
}

extern "C" int jsw_wasm_reset(jsw_module *m, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    m->exports = nullptr;
    m->memory = nullptr;
    m->alloc.setUndefined();
    m->dealloc.setUndefined();
    JS_GC(cx); /* the old instance's memory goes before the new one's is reserved */
    if (wasm_instantiate(m)) return 0;
    return fail(m->eng, LOGIC_E_MEMORY, err);
}

/* The memory's current buffer (a new object after each growth). */
static bool wasm_buffer(jsw_module *m, JS::MutableHandleObject out)
{
    JS::RootedValue v(m->eng->cx);
    if (!JS_GetProperty(m->eng->cx, m->memory, "buffer", &v)) return false;
    if (!v.isObject() || !JS::IsArrayBufferObject(&v.toObject())) {
        JS_ReportErrorASCII(m->eng->cx, "the memory has no buffer");
        return false;
    }
    out.set(&v.toObject());
    return true;
}

extern "C" size_t jsw_wasm_memory_bytes(jsw_module *m)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedObject buffer(cx);
    if (!wasm_buffer(m, &buffer)) {
        JS_ClearPendingException(cx);
        return 0;
    }
    return JS::GetArrayBufferByteLength(buffer);
}

/* Copies arg into the memory at ptr; false when it does not fit there. */
static bool wasm_copy_in(jsw_module *m, uint32_t ptr, const char *arg, size_t len)
{
    JS::RootedObject buffer(m->eng->cx);
    if (!wasm_buffer(m, &buffer)) return false;
    JS::AutoCheckCannotGC nogc;
    bool is_shared;
    size_t size = JS::GetArrayBufferByteLength(buffer);
    if ((uint64_t)ptr + len > size) return false;
    if (len) memcpy(JS::GetArrayBufferData(buffer, &is_shared, nogc) + ptr, arg, len);
    return true;
}

/* Writes the memory's bytes [ptr, ptr + len) to w. */
static int wasm_copy_out(jsw_module *m, uint32_t ptr, uint32_t len, jsw_write_fn *w,
                         void *w_arg, logic_error *err)
{
    JS::RootedObject buffer(m->eng->cx);
    if (!wasm_buffer(m, &buffer)) return fail(m->eng, LOGIC_E_RUNTIME, err);
    JS::AutoCheckCannotGC nogc;
    bool is_shared;
    size_t size = JS::GetArrayBufferByteLength(buffer);
    if ((uint64_t)ptr + len > size) {
        memset(err, 0, sizeof *err);
        err->kind = LOGIC_E_OUTPUT;
        snprintf(err->message, sizeof err->message, "the result (%u bytes at %u) lies outside "
                 "the memory of %zu bytes", len, ptr, size);
        return ERR_INVALID;
    }
    if (!w(w_arg, (const char *)JS::GetArrayBufferData(buffer, &is_shared, nogc) + ptr, len))
        return fail_with(err, LOGIC_E_OUTPUT, "output_limit: the result exceeds the output budget",
                         "");
    return 0;
}

/* Calls fn(a, b) with two i32 arguments. */
static bool wasm_call2(jsw_module *m, JS::HandleValue fn, uint32_t a, uint32_t b,
                       JS::MutableHandleValue rv)
{
    JS::RootedValueArray<2> argv(m->eng->cx);
    argv[0].setInt32((int32_t)a);
    argv[1].setInt32((int32_t)b);
    return JS::Call(m->eng->cx, JS::UndefinedHandleValue, fn, argv, rv);
}

extern "C" int jsw_wasm_invoke(jsw_module *m, const char *entry, const char *arg, size_t len,
                               jsw_write_fn *w, void *w_arg, logic_error *err)
{
    JSContext *cx = m->eng->cx;
    JSAutoRealm ar(cx, m->global);
    JS::RootedValue fn(cx), rv(cx);
    if (!find_entry(m, entry, &fn)) {
        JS_ClearPendingException(cx);
        return fail_with(err, LOGIC_E_MISSING, "missing entry point: ", entry);
    }
    if (m->eng->stopped.load()) return fail(m->eng, LOGIC_E_CPU, err); /* between calls */
    if (len > INT32_MAX) return fail_with(err, LOGIC_E_INVALID, "the arguments exceed 2 GiB", "");
    JS::RootedValueArray<1> one(cx);
    one[0].setInt32((int32_t)len);
    if (!JS::Call(cx, JS::UndefinedHandleValue, m->alloc, one, &rv))
        return fail(m->eng, LOGIC_E_RUNTIME, err);
    uint32_t ptr = rv.isInt32() ? (uint32_t)rv.toInt32() : 0;
    if (!wasm_copy_in(m, ptr, arg, len)) {
        if (JS_IsExceptionPending(cx)) return fail(m->eng, LOGIC_E_RUNTIME, err);
        return fail_with(err, LOGIC_E_RUNTIME, "alloc returned a place outside the memory", "");
    }
    if (!wasm_call2(m, fn, ptr, (uint32_t)len, &rv)) return fail(m->eng, LOGIC_E_RUNTIME, err);
    int64_t r = 0;
    if (!rv.isBigInt() || !JS::BigIntFits(rv.toBigInt(), &r))
        return fail_with(err, LOGIC_E_OUTPUT, "the entry point did not return an i64: ", entry);
    uint32_t rptr = (uint32_t)((uint64_t)r >> 32), rlen = (uint32_t)r;
    int rc = wasm_copy_out(m, rptr, rlen, w, w_arg, err);
    if (rc) return rc;
    if (m->dealloc.isObject() &&
        (!wasm_call2(m, m->dealloc, ptr, (uint32_t)len, &rv) ||
         !wasm_call2(m, m->dealloc, rptr, rlen, &rv)))
        return fail(m->eng, LOGIC_E_RUNTIME, err);
    return 0;
}
