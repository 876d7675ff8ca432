# Annals build. `make run` and `make test` install what they need first (scripts/deps.sh).
CC      ?= cc
DEBUG   ?= 0
SANITIZE ?=
WERROR  ?=
PKGS    := jansson libcrypto
CFLAGS  := -std=gnu17 -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wvla -Wformat=2 -fno-omit-frame-pointer -pthread -Isrc \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := -llmdb $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lcrypto) -pthread
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
LIB_SRC := $(wildcard src/util/*.c src/json/*.c src/store/*.c src/engine/*.c src/http/*.c src/api/*.c)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOLS   := $(BUILD)/bench/commit_ceiling

.PHONY: all deps run test unit integration bench clean format
all: $(BUILD)/annals

deps:
	@bash scripts/deps.sh

$(BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libannals.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/annals: $(BUILD)/main.o $(BUILD)/libannals.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libannals.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libannals.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libannals.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libannals.a $(LDLIBS)

run: deps $(BUILD)/annals
	./$(BUILD)/annals serve

unit: $(UNIT_BIN)
	@python3 tests/run_unit.py $(UNIT_BIN)

integration: $(BUILD)/annals
	@ANNALS_BIN=./$(BUILD)/annals python3 tests/integration/run.py

SAN_UNITS := $(UNIT_SRC:tests/unit/%.c=build-san/tests/%)

# Every tier: unit and integration tests on the optimised build, then again on a build with
# AddressSanitizer and UndefinedBehaviorSanitizer (any report fails the run).
test: deps
	@$(MAKE) --no-print-directory WERROR=1 $(BUILD)/annals $(UNIT_BIN)
	@$(MAKE) --no-print-directory WERROR=1 SANITIZE=address,undefined build-san/annals $(SAN_UNITS)
	@python3 tests/run_all.py --bin ./$(BUILD)/annals --san-bin ./build-san/annals \
		--san-units $(SAN_UNITS) -- $(UNIT_BIN)

bench: 
	@bash scripts/deps.sh --bench
	@$(MAKE) --no-print-directory $(BUILD)/annals $(TOOLS)
	@bash bench/run.sh ./$(BUILD)/annals ./$(BUILD)/bench/commit_ceiling

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d
