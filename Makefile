# Site I/O suite: build, test, run.
#
#   make            build every binary into build/bin/
#   make run        start the demo site (private redis-server, simulated plant, I/O server)
#   make test       unit tests, fuzz smoke run, system tests
#   make deps       install the Debian packages the build, tests and demo need
#   make SANITIZE=1 build into build/asan/ with ASan and UBSan
#
# Layout: common/src/*.c and the generated protobuf code form libscada.a;
# every folder services/NAME/ is one binary (scada-NAME, or scadactl);
# tests/unit/test_*.c are one cmocka program each.

PKGS      := libczmq libzmq libprotobuf-c libmodbus hiredis yaml-0.1
CC        ?= cc
OPT       ?= -O2
ifeq ($(SANITIZE),1)
BUILD     ?= build/asan
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD     ?= build
SANFLAGS  :=
endif
GEN       := $(BUILD)/gen
CFLAGS    += -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
             -Icommon/include -I$(GEN) $(SANFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS   += $(SANFLAGS)

PROTOS    := $(wildcard proto/*.proto)
PROTO_C   := $(patsubst proto/%.proto,$(GEN)/%.pb-c.c,$(PROTOS))
PROTO_H   := $(PROTO_C:.c=.h)
COMMON_C  := $(wildcard common/src/*.c)
LIB_OBJ   := $(patsubst common/src/%.c,$(BUILD)/obj/common/%.o,$(COMMON_C)) \
             $(patsubst $(GEN)/%.c,$(BUILD)/obj/gen/%.o,$(PROTO_C))
LIB       := $(BUILD)/libscada.a

SERVICES  := $(notdir $(wildcard services/*))
binname    = $(if $(filter scadactl,$(1)),scadactl,scada-$(1))
BINS      := $(foreach s,$(SERVICES),$(BUILD)/bin/$(call binname,$(s)))

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: all bins deps run test test-asan unit fuzz-smoke system bench clean format tools compose-test
.SECONDARY:

all: $(BINS) $(UNIT_BINS)

# The service binaries and scadactl only (what the container image needs).
bins: $(BINS)

deps:
	@bash mk/deps.sh

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<

$(BUILD)/obj/gen/%.o: $(GEN)/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/common/%.o: common/src/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# One binary per services/NAME folder.
define service_rule
$(BUILD)/obj/services/$(1)/%.o: services/$(1)/%.c $(PROTO_H)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -Iservices/$(1) -MMD -MP -c $$< -o $$@
$(BUILD)/bin/$(call binname,$(1)): $(patsubst services/$(1)/%.c,$(BUILD)/obj/services/$(1)/%.o,$(wildcard services/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

# Unit tests may include a service's sources directly (tests/unit/test_x.c can
# #include "../../services/ioserver/foo.c"), so they see services/ headers too.
$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iservices/ioserver -Iservices/devsim -Iservices/scadactl -Iservices/broker -MMD -MP -MF $@.d \
	    -o $@ $< $(LIB) $(LDLIBS) -lcmocka $(LDFLAGS)

# Fuzz targets (tests/fuzz/README.md): clang libFuzzer with ASan and UBSan (a
# UBSan report stops the run). The library sources and the generated protobuf
# code are compiled once for all targets (coverage, no main) into an archive,
# so a target that defines a module itself (it #includes common/src/x.c or
# replaces slog) gets its own copy and not the archive's. A target may also
# #include a service's .c files to reach its static handlers.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Icommon/include -I$(GEN) \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIB    := $(BUILD)/fuzz-obj/libscada-fuzz.a
FUZZ_OBJ    := $(patsubst common/src/%.c,$(BUILD)/fuzz-obj/common/%.o,$(COMMON_C)) \
               $(patsubst $(GEN)/%.c,$(BUILD)/fuzz-obj/gen/%.o,$(PROTO_C))
$(BUILD)/fuzz-obj/common/%.o: common/src/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(BUILD)/fuzz-obj/gen/%.o: $(GEN)/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB) $(PROTO_H)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< $(FUZZ_LIB) $(LDLIBS)

tools: all

unit: $(UNIT_BINS)
	@bash tests/unit/run.sh $(BUILD)/tests $(T)

fuzz-smoke: $(FUZZ_BINS)
	@bash tests/fuzz/run.sh $(BUILD)/fuzz 20

system: all
	@bash tests/system/run.sh $(T)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory system

# The unit and system tests again on the ASan/UBSan build (build/asan/).
# .ci/run runs it after `make test`.
test-asan: deps
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@$(MAKE) --no-print-directory SANITIZE=1 unit
	@BUILD=build/asan bash tests/system/run.sh $(T)

# The demo site in containers, checked from outside (needs root: installs
# and starts docker when missing). .ci/run runs it after `make test`.
compose-test: deps
	@bash tests/compose/run.sh

run: deps
	@$(MAKE) --no-print-directory all
	@bash deploy/run.sh $(SITE)

bench: all
	@bash bench/run.sh

format:
	clang-format -i $(wildcard common/include/*.h common/src/*.c services/*/*.c services/*/*.h tests/unit/*.c tests/fuzz/*.c)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
