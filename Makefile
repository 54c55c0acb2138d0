# Trainyard build: programs, WebAssembly UI, CUDA code, tests and runs.
# `make help` lists the targets. Output is quiet; `make V=1` shows every
# command. Objects carry -MMD dependency files, so header edits rebuild
# what includes them.

SHELL := /bin/bash
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
# Keep intermediate objects, such as the test support ones, between runs.
.SECONDARY:

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
# $(call say,TAG,WHAT) prints one short line unless V=1.
say = $(if $(filter 1,$(V)),,@printf '  %-7s %s\n' '$(1)' '$(2)';)

BUILD ?= build
CC := gcc
EMCC ?= emcc
# Debian's emcc runs its tools with node and looks for its modules here;
# a node installed outside Debian does not know that path.
EMCC_ENV := NODE_PATH=/usr/share/nodejs

# ---------------------------------------------------------------------------
# Optional features, probed once per make run.

NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) \
                    $(shell command -v nvcc 2>/dev/null))
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),)
GPU_COUNT := $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)

ifeq ($(MAKELEVEL),0)
$(info trainyard: nvcc $(if $(NVCC),$(NVCC),not found: CUDA code is not \
  built); GPU $(if $(filter-out 0,$(GPU_COUNT)),$(GPU_COUNT) found,none \
  found: GPU tests are skipped))
endif

# ---------------------------------------------------------------------------
# Flags. Package flags are looked up lazily, so that `make deps` and
# `make help` work before the packages are installed.

PKGS := libwebsockets sqlite3 libcjson libsodium yaml-0.1 libjpeg spng \
        libzip openblas zlib libssl libcrypto
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror
CPPFLAGS := -D_GNU_SOURCE -Icommon -Ikernels -Ibackend -I$(BUILD)/gen
BASE_CFLAGS = -std=c11 $(WARN) -g -fopenmp $(PKG_CFLAGS)
REL_CFLAGS = $(BASE_CFLAGS) -O2
# gcc leaves float-cast-overflow out of -fsanitize=undefined, and clang,
# which builds the fuzz targets, puts it in: converting a double outside
# an integer type's range is undefined behavior.
SAN_FLAGS := -fsanitize=address,undefined,float-cast-overflow \
             -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_CFLAGS = $(BASE_CFLAGS) -O1 $(SAN_FLAGS)
LDLIBS = -Wl,--as-needed $(PKG_LIBS) -lcivetweb -lhpdf -ldnnl -lm \
         -lpthread -fopenmp

REL := $(BUILD)/rel
ASAN := $(BUILD)/asan
BIN := $(BUILD)/bin

# ---------------------------------------------------------------------------
# Sources. Every .c file under these folders belongs to the shared library
# of its build variant, except main.c files, which become programs.

LIB_DIRS := common kernels/cpu kernels/ref backend/daemon backend/engine \
            gateway
# Built into the gateway's TLS compatibility libraries, not the library.
TLS_COMPAT_SRC := gateway/tls_compat.c
LIB_SRCS := $(filter-out %/main.c $(TLS_COMPAT_SRC),\
              $(wildcard $(addsuffix /*.c,$(LIB_DIRS))))
GEN_SRCS := $(BUILD)/gen/schema_sql.c
PROGRAMS := backend gateway train
backend_MAIN := backend/daemon/main.c
gateway_MAIN := gateway/main.c
train_MAIN := backend/engine/main.c

REL_LIB := $(REL)/libtrainyard.a
ASAN_LIB := $(ASAN)/libtrainyard.a
REL_OBJS := $(patsubst %.c,$(REL)/%.o,$(LIB_SRCS) $(GEN_SRCS))
ASAN_OBJS := $(patsubst %.c,$(ASAN)/%.o,$(LIB_SRCS) $(GEN_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(ASAN)/tests/%,$(UNIT_SRCS))
INTEG_SRCS := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(patsubst tests/integration/%.c,$(ASAN)/tests/%,$(INTEG_SRCS))
# Each libFuzzer target, linked with tests/fuzz/replay.c instead of
# libFuzzer: a test program that runs the target's seed corpus once.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(ASAN)/fuzz-replay/%,\
                      $(FUZZ_SRCS))
TEST_SUPPORT := $(wildcard tests/support/*.c)
TEST_SUPPORT_OBJS := $(patsubst tests/support/%.c,$(ASAN)/tests-support/%.o,\
                       $(TEST_SUPPORT))
# Code that fuzz targets share, and the tests' WebSocket client, in an
# archive that every target links, as scripts/fuzz.sh builds them.
FUZZ_SUPPORT_SRCS := $(wildcard tests/fuzz/support/*.c)
FUZZ_SUPPORT_OBJS := $(patsubst tests/fuzz/support/%.c,\
                       $(ASAN)/fuzz-support/%.o,$(FUZZ_SUPPORT_SRCS)) \
                     $(ASAN)/tests-support/wsclient.o
FUZZ_SUPPORT_LIB := $(ASAN)/libfuzz-support.a

CUDA_SRCS := $(wildcard kernels/cuda/*.cu)
CUDA_OBJS := $(patsubst %.cu,$(BUILD)/cuda/%.o,$(CUDA_SRCS))
CUDA_TEST_SRCS := $(wildcard tests/cuda/test_*.c)
CUDA_TEST_BINS := $(patsubst tests/cuda/%.c,$(BUILD)/cuda/tests/%,\
                    $(CUDA_TEST_SRCS))
NVCC_FLAGS := -O2 -std=c++17 -Ikernels -Icommon \
              -Xcompiler -Wall,-Wextra,-Werror \
              -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 \
            -lcudart -lcublas -lcudnn -lstdc++
# The engine's CUDA kernel table (host code, compiled by nvcc so that only
# builds with nvcc see it) and the kernels it calls. Programs linked with
# these accept device=0; without them device.c rejects it with a message.
ENGINE_CUDA_OBJS := $(BUILD)/cuda/backend/engine/device_cuda.o $(CUDA_OBJS)

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

UI_SRCS := $(wildcard wasm-ui/src/*.c)
UI_STATIC := $(wildcard wasm-ui/static/*)
UI_OUT := $(BUILD)/ui

# ---------------------------------------------------------------------------
# Targets.

.PHONY: all deps ui cuda test run bench clean format help

all: $(addprefix $(BIN)/,$(PROGRAMS))

help:
	@echo 'Trainyard make targets:'
	@echo '  make             build the programs into $(BIN)/'
	@echo '  make deps        install the Debian and npm packages needed'
	@echo '  make deps-debian install only the Debian packages, as make run does'
	@echo '  make ui          build the WebAssembly UI into $(UI_OUT)/'
	@echo '  make cuda        compile and link the CUDA code (needs nvcc)'
	@echo '  make test        install, build and run every test'
	@echo '  make run         start backend and gateway on port 8080'
	@echo '  make bench       run the CPU benchmarks against PyTorch'
	@echo '  make fuzz        build and run the libFuzzer targets'
	@echo '                   (FUZZ_SECONDS each, default 60)'
	@echo '                   (data in $$TRAINYARD_DATA, default ./var)'
	@echo '  make format      format the C sources with clang-format'
	@echo '  make clean       remove $(BUILD)/'
	@echo 'Variables: V=1 prints full commands; BUILD=DIR moves output.'

deps:
	$(Q)scripts/deps.sh

# Building and running need only the Debian packages. The npm ones are for
# the browser tests.
.PHONY: deps-debian
deps-debian:
	$(Q)scripts/deps.sh --no-npm

# Generated sources: the SQL migrations, embedded so that the backend
# binary carries the schema it expects.
$(BUILD)/gen/schema_sql.c: $(sort $(wildcard schema/db/*.sql)) \
                           scripts/embed.sh
	$(call say,EMBED,$@)
	$(Q)mkdir -p $(@D)
	$(Q)scripts/embed.sh schema_sql $(sort $(wildcard schema/db/*.sql)) >$@

$(REL)/%.o: %.c
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(REL_CFLAGS) -MMD -MP -c $< -o $@

$(ASAN)/%.o: %.c
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

$(REL_LIB): $(REL_OBJS)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(ASAN_LIB): $(ASAN_OBJS)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# Release programs in $(BIN), sanitizer builds of the same programs in
# $(ASAN)/bin for the integration tests.
$(BIN)/%: $(REL_LIB) $(REL)/obj-main/%.o
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(REL_CFLAGS) $(REL)/obj-main/$*.o $(REL_LIB) $(LDLIBS) -o $@

$(ASAN)/bin/%: $(ASAN_LIB) $(ASAN)/obj-main/%.o
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ASAN_CFLAGS) $(ASAN)/obj-main/$*.o $(ASAN_LIB) $(LDLIBS) -o $@

# The OpenSSL 1.1 compatibility libraries that let civetweb 1.15 serve
# TLS with OpenSSL 3 (gateway/tls_compat.c). The gateway loads them from
# lib/trainyard/ beside its bin folder, so each gateway build has a copy.
# Their SONAMEs are the names that civetweb passes to dlopen.
TLS_COMPAT_FLAGS := -std=c11 $(WARN) -O2 -fPIC -shared -Wl,--no-as-needed
tls_compat = $(1)/lib/trainyard/libssl-compat.so \
             $(1)/lib/trainyard/libcrypto-compat.so
$(BIN)/gateway: $(call tls_compat,$(BUILD))
$(ASAN)/bin/gateway: $(call tls_compat,$(ASAN))

%/lib/trainyard/libssl-compat.so: $(TLS_COMPAT_SRC)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TLS_COMPAT_FLAGS) -Wl,-soname,libssl.so $< -lssl -lcrypto \
	    -o $@

%/lib/trainyard/libcrypto-compat.so: $(TLS_COMPAT_SRC)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(TLS_COMPAT_FLAGS) -DTLS_COMPAT_CRYPTO \
	    -Wl,-soname,libcrypto.so $< -lcrypto -o $@

define main_rules
$(REL)/obj-main/$(1).o: $($(1)_MAIN)
	$$(call say,CC,$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$$(CC) $$(CPPFLAGS) $$(REL_CFLAGS) -MMD -MP -c $$< -o $$@
$(ASAN)/obj-main/$(1).o: $($(1)_MAIN)
	$$(call say,CC-SAN,$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$$(CC) $$(CPPFLAGS) $$(ASAN_CFLAGS) -MMD -MP -c $$< -o $$@
endef
$(foreach p,$(PROGRAMS),$(eval $(call main_rules,$(p))))

$(ASAN)/tests/%: tests/unit/%.c $(TEST_SUPPORT_OBJS) $(ASAN_LIB)
	$(call say,TEST-CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Itests/support $(ASAN_CFLAGS) -MMD -MP $< \
	    $(TEST_SUPPORT_OBJS) $(ASAN_LIB) $(LDLIBS) -lcmocka -o $@

$(ASAN)/tests/%: tests/integration/%.c $(TEST_SUPPORT_OBJS) $(ASAN_LIB)
	$(call say,TEST-CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Itests/support $(ASAN_CFLAGS) -MMD -MP $< \
	    $(TEST_SUPPORT_OBJS) $(ASAN_LIB) $(LDLIBS) -lcmocka -o $@

$(ASAN)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c \
                       $(FUZZ_SUPPORT_LIB) $(ASAN_LIB)
	$(call say,TEST-CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Igateway -Itests/fuzz/support -Itests/support \
	    $(ASAN_CFLAGS) -DFUZZ_CORPUS='"$(CURDIR)/tests/fuzz/corpus/$*"' \
	    -MMD -MP $< tests/fuzz/replay.c $(FUZZ_SUPPORT_LIB) $(ASAN_LIB) \
	    $(LDLIBS) -lcmocka -o $@

$(ASAN)/fuzz-support/%.o: tests/fuzz/support/%.c
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Igateway -Itests/support $(ASAN_CFLAGS) -MMD -MP \
	    -c $< -o $@

$(FUZZ_SUPPORT_LIB): $(FUZZ_SUPPORT_OBJS)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(ASAN)/tests-support/%.o: tests/support/%.c
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -Itests/support $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

# CUDA: device code through nvcc, host test programs through gcc without
# sanitizers (the CUDA runtime and AddressSanitizer do not mix).
$(BUILD)/cuda/%.o: %.cu
	$(call say,NVCC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/cuda/tests/%: tests/cuda/%.c $(ENGINE_CUDA_OBJS) $(REL_LIB)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -I$(CUDA_HOME)/include $(REL_CFLAGS) -MMD -MP $< \
	    $(ENGINE_CUDA_OBJS) $(REL_LIB) $(LDLIBS) -lcmocka $(CUDA_LIBS) -o $@

# With nvcc, the release train program and the training benchmark are
# linked with CUDA support; these rules take the place of the generic
# ones. The sanitizer build of train stays CPU-only. The CUDA tests run
# $(BIN)/train, so `make cuda` builds it too.
ifneq ($(NVCC),)
$(BIN)/train: $(REL_LIB) $(REL)/obj-main/train.o $(ENGINE_CUDA_OBJS)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(REL_CFLAGS) $(REL)/obj-main/train.o $(ENGINE_CUDA_OBJS) \
	    $(REL_LIB) $(LDLIBS) $(CUDA_LIBS) -o $@

$(BUILD)/bench/train_cpu: bench/train_cpu.c $(ENGINE_CUDA_OBJS) $(REL_LIB)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(REL_CFLAGS) -MMD -MP $< $(ENGINE_CUDA_OBJS) \
	    $(REL_LIB) $(LDLIBS) $(CUDA_LIBS) -o $@

cuda: $(CUDA_TEST_BINS) $(BIN)/train $(BUILD)/bench/train_cpu
else
cuda:
	@echo 'make cuda: nvcc not found (looked in /usr/local/cuda/bin and' \
	      'PATH); install the CUDA toolkit to build the CUDA code'
	@exit 1
endif

# The WebAssembly UI: C compiled by emcc, plus the static HTML and CSS.
UI_FILES := $(UI_OUT)/app.js $(UI_OUT)/app.wasm \
            $(patsubst wasm-ui/static/%,$(UI_OUT)/%,$(UI_STATIC))
# Each file also as FILE.gz, which civetweb sends with Content-Encoding:
# gzip to browsers that accept it.
ui: $(UI_FILES) $(addsuffix .gz,$(UI_FILES))

$(UI_OUT)/app.wasm: $(UI_OUT)/app.js

$(UI_OUT)/%.gz: $(UI_OUT)/%
	$(call say,GZIP,$@)
	$(Q)gzip -9 -n -c $< >$@

$(UI_OUT)/app.js: $(UI_SRCS) $(wildcard wasm-ui/src/*.h wasm-ui/src/*.js)
	$(call say,EMCC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(EMCC_ENV) $(EMCC) -std=c11 $(WARN) -O2 $(UI_SRCS) \
	    --js-library wasm-ui/src/dom.js \
	    -s ALLOW_MEMORY_GROWTH=1 -s ENVIRONMENT=web \
	    -s EXPORTED_FUNCTIONS='["_main","_free","_malloc"]' -o $@

$(UI_OUT)/%: wasm-ui/static/%
	$(call say,COPY,$@)
	$(Q)mkdir -p $(@D)
	$(Q)cp $< $@

TEST_PROGS := $(addprefix $(ASAN)/bin/,$(PROGRAMS))

# The UI's JSON reader, tested natively under the sanitizers.
UI_TEST_BIN := $(ASAN)/bin/ui_json_test
$(UI_TEST_BIN): wasm-ui/tests/json_test.c wasm-ui/src/json.c wasm-ui/src/json.h
	$(call say,CC-SAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=c11 $(WARN) $(SAN_FLAGS) -g -Iwasm-ui/src \
	    wasm-ui/tests/json_test.c wasm-ui/src/json.c -o $@

# The browser test drives Chromium against the release programs and UI.
E2E_TESTS := tests/e2e/ui.test.mjs

test: deps
	$(Q)$(MAKE) --no-print-directory test-build
	$(if $(NVCC),,@echo 'SKIP cuda tests: nvcc not found (looked in' \
	    '/usr/local/cuda/bin and PATH)')
	$(Q)BUILD=$(BUILD) NVCC='$(NVCC)' GPU_COUNT=$(GPU_COUNT) \
	    scripts/run-tests.sh $(UNIT_BINS) $(FUZZ_REPLAY_BINS) $(INTEG_BINS) \
	    $(if $(NVCC),$(CUDA_TEST_BINS)) $(UI_TEST_BIN) $(E2E_TESTS)

.PHONY: test-build
test-build: $(UNIT_BINS) $(FUZZ_REPLAY_BINS) $(INTEG_BINS) $(TEST_PROGS) \
            $(UI_TEST_BIN) all ui \
            $(if $(NVCC),$(CUDA_TEST_BINS) $(BIN)/train)

run: deps-debian
	$(Q)$(MAKE) --no-print-directory all ui
	$(Q)BUILD=$(BUILD) scripts/run.sh

# Benchmarks: one program per bench/*.c, built like the release programs.
$(BUILD)/bench/%: bench/%.c $(REL_LIB)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(REL_CFLAGS) -MMD -MP $< $(REL_LIB) $(LDLIBS) -o $@

bench: deps-debian
	$(Q)$(MAKE) --no-print-directory all $(BENCH_BINS)
	$(Q)BUILD=$(BUILD) bench/run-cpu.sh

# libFuzzer targets of every parser of outside input (docs/FUZZING.md).
.PHONY: fuzz
fuzz: deps-debian
	$(Q)BUILD=$(BUILD) scripts/fuzz.sh

format:
	$(Q)clang-format -i $(shell git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
