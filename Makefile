# Makefile: builds vtp-api, vtp-worker, vtp-migrate and vtp-token; runs the tests and the dev stack.
# One Makefile for the whole tree (no recursion into folders); libraries come from pkg-config.
# lib/ holds the frame grabbing and MagickWand code that vtp-api (cold thumbnails) and vtp-worker share,
# so every program links the media libraries.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
PYTHON  := /usr/bin/python3

PKGS        := fcgi json-c libjwt libpq libcrypto
MEDIA_PKGS  := libavformat libavcodec libavutil libswscale libswresample MagickWand
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) $(MEDIA_PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
MEDIA_LIBS  := $(shell pkg-config --libs $(MEDIA_PKGS) 2>/dev/null)
VERSION     := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wwrite-strings -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -I. -DVTP_VERSION='"$(VERSION)"' $(WARNINGS) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS   := $(PKG_LIBS) $(MEDIA_LIBS) -lpthread -lm
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# Every .c in a folder belongs to its program; main() lives in the file named below.
LIB_SRC    := $(sort $(wildcard lib/*.c))
API_SRC    := $(filter-out fcgi/main.c,$(sort $(wildcard fcgi/*.c)))
WORKER_SRC := $(filter-out worker/main.c,$(sort $(wildcard worker/*.c)))
SQL_FILES  := $(sort $(wildcard sql/[0-9]*.sql))
GEN_SRC    := $(BUILD)/gen/migrations.c
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(sort $(wildcard tests/unit/test_*.c)))

PROGRAMS := vtp-api vtp-worker vtp-migrate vtp-token
MAIN_vtp-api     := fcgi/main.c
MAIN_vtp-worker  := worker/main.c
MAIN_vtp-migrate := tools/vtp-migrate.c
MAIN_vtp-token   := tools/vtp-token.c

# obj(VARIANT, SOURCES): the object files of one build variant (release or asan).
obj = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(2))
CORE_OBJ      := $(call obj,release,$(LIB_SRC) $(GEN_SRC))
API_OBJ       := $(call obj,release,$(API_SRC))
ASAN_CORE_OBJ := $(call obj,asan,$(LIB_SRC) $(GEN_SRC))
ASAN_API_OBJ  := $(call obj,asan,$(API_SRC))
WORKER_OBJ      := $(call obj,release,$(WORKER_SRC))
ASAN_WORKER_OBJ := $(call obj,asan,$(WORKER_SRC))

# Keep the objects that pattern rules chain through (unit tests, fuzzers).
.SECONDARY:

.PHONY: all test unit integration run stop install clean deps fuzz fuzz-smoke lint-openapi bench
.DEFAULT_GOAL := all

all: $(addprefix $(BUILD)/,$(PROGRAMS)) www/vendor/hls.min.js

# The web UI's HLS player, pinned by package-lock.json and copied into www/ so
# that nothing is fetched at run time (www/vendor/ is a build product).
HLS_JS := node_modules/hls.js/dist/hls.min.js
www/vendor/hls.min.js: package-lock.json
	@test -f $(HLS_JS) || npm ci --no-audit --no-fund
	@mkdir -p $(dir $@)
	cp $(HLS_JS) $@

$(BUILD)/vtp-api: $(call obj,release,$(MAIN_vtp-api)) $(API_OBJ) $(CORE_OBJ)
$(BUILD)/vtp-worker: $(call obj,release,$(MAIN_vtp-worker)) $(WORKER_OBJ) $(CORE_OBJ)
$(BUILD)/vtp-migrate: $(call obj,release,$(MAIN_vtp-migrate)) $(CORE_OBJ)
$(BUILD)/vtp-token: $(call obj,release,$(MAIN_vtp-token)) $(CORE_OBJ)
$(BUILD)/vtp-worker $(BUILD)/asan/vtp-worker: LDLIBS += $(MEDIA_LIBS)
$(addprefix $(BUILD)/,$(PROGRAMS)):
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The same programs built with AddressSanitizer and UBSan, for the tests.
$(BUILD)/asan/vtp-api: $(call obj,asan,$(MAIN_vtp-api)) $(ASAN_API_OBJ) $(ASAN_CORE_OBJ)
$(BUILD)/asan/vtp-worker: $(call obj,asan,$(MAIN_vtp-worker)) $(ASAN_WORKER_OBJ) $(ASAN_CORE_OBJ)
$(BUILD)/asan/vtp-migrate: $(call obj,asan,$(MAIN_vtp-migrate)) $(ASAN_CORE_OBJ)
$(BUILD)/asan/vtp-token: $(call obj,asan,$(MAIN_vtp-token)) $(ASAN_CORE_OBJ)
$(addprefix $(BUILD)/asan/,$(PROGRAMS)):
	$(CC) $(SANITIZE) -o $@ $^ $(LDLIBS)

# Unit tests: one binary per tests/unit/test_*.c, linked with everything but main().
$(BUILD)/asan/tests/%: $(BUILD)/asan/tests/unit/%.o $(ASAN_API_OBJ) $(ASAN_WORKER_OBJ) $(ASAN_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SANITIZE) -o $@ $^ $(LDLIBS) $(MEDIA_LIBS) $(shell pkg-config --libs cmocka libcrypto 2>/dev/null)

$(BUILD)/release/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O1 $(SANITIZE) -MMD -MP -c -o $@ $<


$(GEN_SRC): $(SQL_FILES) tools/embed-sql.sh
	@mkdir -p $(dir $@)
	tools/embed-sql.sh $@ $(SQL_FILES)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

deps:
	deploy/install-deps

# test installs what is missing first, then builds (in a second make, so
# pkg-config sees the libraries just installed) and runs every suite.
test: deps
	$(MAKE) --no-print-directory unit fuzz-smoke integration

unit: all $(addprefix $(BUILD)/asan/,$(PROGRAMS)) $(addprefix $(BUILD)/asan/tests/,$(UNIT_TESTS))
	@set -e; for t in $(UNIT_TESTS); do \
		echo "== unit: $$t"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/asan/tests/$$t; \
	done

integration: all $(addprefix $(BUILD)/asan/,$(PROGRAMS))
	VTP_BUILD_DIR=$(BUILD)/asan $(PYTHON) -m pytest -p no:cacheprovider -q tests/integration

# Fuzzing (libFuzzer, clang): one target per parser that sees outside input,
# tests/fuzz/fuzz_*.c, seeds in tests/fuzz/corpus/<name>/. `make fuzz` runs
# each for FUZZ_SECONDS (e.g. `make fuzz FUZZ_SECONDS=600`, or one target:
# `make fuzz FUZZ_TARGETS=fuzz_sdp`); `make test` runs each for
# FUZZ_SMOKE_SECONDS, about 20 s for the seven targets.
FUZZ_CC      := clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 2
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_OBJ     := $(call obj,fuzz,$(API_SRC) $(LIB_SRC) $(GEN_SRC))

$(BUILD)/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(ALL_CFLAGS) -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) -MMD -MP -c -o $@ $<

$(BUILD)/fuzz/bin/%: $(BUILD)/fuzz/tests/fuzz/%.o $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

# run_fuzz(SECONDS): runs every target on a copy of its seeds; a crash fails.
define run_fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t#fuzz_}; work=$(BUILD)/fuzz/corpus/$$name; mkdir -p $$work $(BUILD)/fuzz/artifacts; \
		cp tests/fuzz/corpus/$$name/* $$work/ 2>/dev/null || true; \
		echo "== fuzz: $$t for $(1) s"; \
		if ! $(BUILD)/fuzz/bin/$$t -max_total_time=$(1) -max_len=16384 -timeout=10 \
			-artifact_prefix=$(BUILD)/fuzz/artifacts/$$t- $$work >$(BUILD)/fuzz/$$t.log 2>&1; then \
			tail -n 40 $(BUILD)/fuzz/$$t.log; exit 1; \
		fi; \
		grep -E '^Done [0-9]+ runs' $(BUILD)/fuzz/$$t.log; \
	done
endef

fuzz: $(addprefix $(BUILD)/fuzz/bin/,$(FUZZ_TARGETS))
	$(call run_fuzz,$(FUZZ_SECONDS))

fuzz-smoke: $(addprefix $(BUILD)/fuzz/bin/,$(FUZZ_TARGETS))
	$(call run_fuzz,$(FUZZ_SMOKE_SECONDS))

# Benchmarks print figures and ratios against baselines of the same run; not part of test.
bench: all $(BUILD)/bench/min_responder
	$(PYTHON) bench/queue_bench.py
	$(PYTHON) bench/ingest_bench.py
	$(PYTHON) bench/analytics_bench.py
	$(PYTHON) bench/transcode_bench.py
	$(PYTHON) bench/playable_bench.py
	$(PYTHON) bench/thumbnail_bench.py
	$(PYTHON) bench/record_bench.py
	$(PYTHON) bench/api_bench.py --rss

# The API benchmark's baseline: a libfcgi responder that does no work per request.
$(BUILD)/bench/min_responder: bench/min_responder.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(shell pkg-config --libs fcgi) -lpthread

lint-openapi:
	npm run --silent lint:openapi

run: deps
	$(MAKE) --no-print-directory all
	deploy/devstack run

stop:
	deploy/devstack stop

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/vtp/www $(DESTDIR)$(PREFIX)/share/vtp/deploy
	install -m 0755 $(addprefix $(BUILD)/,$(PROGRAMS)) $(DESTDIR)$(PREFIX)/bin/
	cp -R www/. $(DESTDIR)$(PREFIX)/share/vtp/www/
	install -m 0644 apache-vtp.conf deploy/nginx-vtp.conf.in deploy/htaccess.example $(DESTDIR)$(PREFIX)/share/vtp/deploy/

clean:
	rm -rf $(BUILD) www/vendor
