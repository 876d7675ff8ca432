# Annals build. `make run` and `make test` install what they need first (scripts/deps.sh).
CC      ?= cc
DEBUG   ?= 0
SANITIZE ?=
WERROR  ?=
PKGS    := jansson libssl libcrypto lua5.4 libzip libpcre2-8 sqlite3
CFLAGS  := -std=gnu17 -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wvla -Wformat=2 -fno-omit-frame-pointer -pthread -Isrc \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := -llmdb -lwslay -lcurl $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lssl -lcrypto -llua5.4 -lzip -lpcre2-8 -lsqlite3) -lm -pthread
ifeq ($(DEBUG),1)
CFLAGS  += -O0 -DDEBUG
endif
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif
ifneq ($(WERROR),)
CFLAGS  += -Werror
endif

BUILD   := build$(if $(SANITIZE),-san)
LIB_SRC := $(wildcard src/util/*.c src/json/*.c src/delivery/*.c src/backup/*.c src/store/*.c src/engine/*.c src/http/*.c src/gate/*.c src/ops/*.c src/api/*.c src/query/*.c src/auth/*.c src/dialect/*/*.c src/cli/*.c src/logic/*.c src/sql/*.c)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOLS   := $(BUILD)/bench/commit_ceiling $(BUILD)/bench/load_events $(BUILD)/bench/sse_fanout $(BUILD)/bench/loadgen

.PHONY: all deps run test unit integration bench clean format fuzz fuzz-replay fuzz-ci torture install uninstall
all: $(BUILD)/annals $(BUILD)/annals-jsworker

deps:
	@bash scripts/deps.sh

$(BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The OpenAPI schemas are linked in as they are (.incbin in openapi.c).
$(BUILD)/api/openapi.o build-fuzz/api/openapi.o: src/api/openapi_schemas.json

# htmx for the EvidentSource query builder, linked in too (.incbin in page.c), from the npm
# package assets/package-lock.json pins (scripts/deps.sh installs it; so does this rule).
HTMX_JS := assets/node_modules/htmx.org/dist/htmx.min.js
$(HTMX_JS): assets/package.json assets/package-lock.json
	cd assets && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@
$(BUILD)/dialect/evidentsource/page.o build-fuzz/dialect/evidentsource/page.o: $(HTMX_JS)

$(BUILD)/libannals.a: $(LIB_OBJ)
	ar rcs $@ $^

# The server's allocator is tcmalloc (docs/design/decisions.md), except under sanitizers,
# which bring their own. Tests and tools keep glibc's.
MALLOC_LIB := $(if $(SANITIZE),,-l:libtcmalloc_minimal.so.4)
$(BUILD)/annals: $(BUILD)/main.o $(BUILD)/libannals.a
	$(CC) $(LDFLAGS) -o $@ $^ $(MALLOC_LIB) $(LDLIBS)

# The JavaScript worker (src/logic/jsworker/, docs/design/jsworker.md): an executable of its
# own, kept out of libannals.a, and never sanitized (its RLIMIT_AS and seccomp filter leave no
# room for ASan's shadow memory; the engine library is not instrumented anyway). C++ only in
# shim.cc, built without RTTI or exceptions like the engine, and without DEBUG (it changes
# the engine headers' layouts). GCC 12 mistakes the engine's stack roots for dangling pointers.
JSW_SRC := $(wildcard src/logic/jsworker/*.c src/logic/jsworker/*.cc) \
           src/util/buf.c src/util/strmap.c src/json/jsonx.c src/json/validate.c
JSW_OBJ := $(patsubst src/%,$(BUILD)/jsw/%.o,$(basename $(JSW_SRC)))
JSW_CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS))
JSW_CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -Wno-dangling-pointer -fno-rtti -fno-exceptions \
           -fno-omit-frame-pointer -pthread -Isrc $(shell pkg-config --cflags mozjs-102 2>/dev/null) \
           $(if $(WERROR),-Werror)
JSW_LIBS := $(shell pkg-config --libs mozjs-102 2>/dev/null || echo -lmozjs-102) -pthread

$(BUILD)/jsw/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(JSW_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/jsw/%.o: src/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(JSW_CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/annals-jsworker: $(JSW_OBJ)
	$(CXX) -o $@ $^ $(JSW_LIBS)

# The JavaScript runtime's unit test starts the worker built beside it, and loads the
# WebAssembly modules of tests/wasm/, written as text and converted by wabt's wat2wasm.
WASM_TEST := $(patsubst tests/wasm/%.wat,$(BUILD)/tests/wasm/%.wasm,$(wildcard tests/wasm/*.wat))
$(BUILD)/tests/wasm/%.wasm: tests/wasm/%.wat
	@mkdir -p $(dir $@)
	wat2wasm $< -o $@
$(BUILD)/tests/logic_js_test: $(BUILD)/annals-jsworker $(WASM_TEST)
$(BUILD)/tests/logic_js_test: private CFLAGS += -DLOGIC_JS_TEST_WORKER='"$(abspath $(BUILD)/annals-jsworker)"' \
    -DLOGIC_JS_TEST_WASM='"$(abspath $(BUILD)/tests/wasm)"'

# The JSON Schema unit test reads the official test suite beside the repository (as the
# integration tests find JSONTestSuite); ANNALS_SHARED_TESTDATA overrides it at run time.
$(BUILD)/tests/schema_test: private CFLAGS += -DSCHEMA_TEST_SHARED='"$(abspath ../shared/testdata)"'

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libannals.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libannals.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libannals.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libannals.a $(LDLIBS)

run:
	@bash scripts/deps.sh --run
	@$(MAKE) --no-print-directory $(BUILD)/annals $(BUILD)/annals-jsworker
	./$(BUILD)/annals serve

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do ./$$t || exit 1; done

integration: $(BUILD)/annals $(BUILD)/annals-jsworker $(BUILD)/slow_dns.so $(BUILD)/fi_inject.so
	@ANNALS_BIN=./$(BUILD)/annals python3 tests/integration/run.py

SAN_UNITS := $(UNIT_SRC:tests/unit/%.c=build-san/tests/%)

# Test-only LD_PRELOAD interposers: record writes and syncs (tests/powerloss/), fail the Nth
# write or sync (tests/faults/).
$(BUILD)/pl_trace.so: tests/powerloss/trace.c
	$(CC) -shared -fPIC -O2 -o $@ $< -ldl -pthread

$(BUILD)/fi_inject.so: tests/faults/inject.c
	$(CC) -shared -fPIC -O2 -o $@ $< -ldl -pthread

# A resolver that takes 2 s for *.slow.test (tests/integration/test_webhooks.py).
$(BUILD)/slow_dns.so: tests/integration/slow_dns.c
	$(CC) -shared -fPIC -O2 -o $@ $< -ldl

# Every tier: unit and integration tests on the optimised build, then again on a build with
# AddressSanitizer and UndefinedBehaviorSanitizer (any report fails the run).
test: deps
	@$(MAKE) --no-print-directory WERROR=1 $(BUILD)/annals $(BUILD)/annals-jsworker $(UNIT_BIN) \
		$(BUILD)/pl_trace.so $(BUILD)/fi_inject.so $(BUILD)/slow_dns.so
	@$(MAKE) --no-print-directory WERROR=1 SANITIZE=address,undefined build-san/annals \
		build-san/annals-jsworker $(SAN_UNITS)
	@python3 tests/run_all.py --bin ./$(BUILD)/annals --san-bin ./build-san/annals \
		--fuzz-replay --fuzz-seconds $(FUZZ_CI_SECONDS) --powerloss 200 --faults \
		--san-units $(SAN_UNITS) -- $(UNIT_BIN)

# The long tier: see tests/torture.sh (about 45 minutes on 2 cores).
torture: deps
	@$(MAKE) --no-print-directory $(BUILD)/annals $(BUILD)/annals-jsworker $(UNIT_BIN) \
		$(BUILD)/pl_trace.so $(BUILD)/fi_inject.so $(BUILD)/slow_dns.so
	@dpkg-query -W valgrind >/dev/null 2>&1 || apt-get install -y -qq valgrind >/dev/null
	@bash tests/torture.sh

bench: 
	@bash scripts/deps.sh --bench
	@$(MAKE) --no-print-directory $(BUILD)/annals $(BUILD)/annals-jsworker $(TOOLS)
	@bash bench/run.sh ./$(BUILD)/annals ./$(BUILD)/bench/commit_ceiling ./$(BUILD)/bench/load_events

# libFuzzer targets (clang, ASan+UBSan): `make fuzz` fuzzes each for FUZZ_SECONDS with its
# corpus in tests/fuzz/corpus/<name>/ (new finds are added there); `make fuzz-replay` runs the
# corpora once; `make fuzz-ci` fuzzes each for FUZZ_CI_SECONDS without touching the corpora
# (both part of make test).
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJ := $(LIB_SRC:src/%.c=build-fuzz/%.o)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

build-fuzz/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -Wno-unused-command-line-argument -c $< -o $@

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

fuzz: $(FUZZ_BIN)
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS) keep $(FUZZ_BIN)

# make test's tier: each target for FUZZ_CI_SECONDS, new inputs kept out of the repository.
FUZZ_CI_SECONDS ?= 60
fuzz-ci: $(FUZZ_BIN)
	@bash tests/fuzz/run.sh $(FUZZ_CI_SECONDS) scratch $(FUZZ_BIN)

fuzz-replay: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f | sed 's/^fuzz_//'); \
	  $$f -runs=0 tests/fuzz/corpus/$$n >/dev/null 2>&1 || { echo "FAIL fuzz replay $$n"; exit 1; }; \
	  echo "PASS fuzz replay $$n ($$(ls tests/fuzz/corpus/$$n | wc -l) inputs)"; done

# `make install` (as root): the binary to $(PREFIX)/bin, the systemd unit to
# $(UNITDIR), and (unless DESTDIR is set, for packaging) the annals user and /var/lib/annals.
PREFIX  ?= /usr/local
UNITDIR ?= /etc/systemd/system
DESTDIR ?=
install: all
	install -D -m 0755 $(BUILD)/annals $(DESTDIR)$(PREFIX)/bin/annals
	install -D -m 0755 $(BUILD)/annals-jsworker $(DESTDIR)$(PREFIX)/bin/annals-jsworker
	install -D -m 0644 scripts/systemd/annals.service $(DESTDIR)$(UNITDIR)/annals.service
	sed -i 's|/usr/local/bin/annals|$(PREFIX)/bin/annals|' $(DESTDIR)$(UNITDIR)/annals.service
	@if [ -z "$(DESTDIR)" ]; then \
		id annals >/dev/null 2>&1 || useradd --system --home-dir /var/lib/annals --shell /usr/sbin/nologin annals; \
		install -d -m 0750 -o annals -g annals /var/lib/annals; \
		echo "installed: run 'systemctl daemon-reload && systemctl enable --now annals' to start it"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/annals $(DESTDIR)$(PREFIX)/bin/annals-jsworker \
		$(DESTDIR)$(UNITDIR)/annals.service

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d $(JSW_OBJ:.o=.d)

# The Tick unit test reads its golden cases from the source tree wherever it runs.
$(BUILD)/tests/tick_test: private CFLAGS += -DTICK_TEST_GOLDEN='"$(abspath tests/unit/golden/tick)"'
