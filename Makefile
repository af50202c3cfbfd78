# ktstr: build, test, install.  See README.md.
#
#   make                 libktstr (static + shared) and every tool
#   make test            unit tests + fast end-to-end tests (TCG real-kernel runs included)
#   make check           the same, built with ASan + UBSan
#   make e2e             every end-to-end test, the slow ones too
#   make bench           every benchmark, one table
#   make install PREFIX=/usr/local DESTDIR=
#   make deps            install the Debian packages (scripts/install-deps.sh)

VERSION   := 0.1.0
PREFIX    ?= /usr/local
DESTDIR   ?=
BUILD     ?= build
CXX       ?= g++
OPT       ?= -O2
SANITIZE  ?=

PKGS      := libbpf libelf liblz4 zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CPPFLAGS  += -Ilibktstr/include -DKTSTR_VERSION=\"$(VERSION)\" $(PKG_CFLAGS)
CXXFLAGS  += -std=c++20 -Wall -Wextra -Werror $(OPT) -g -fPIC -MMD -MP $(SANITIZE)
LDFLAGS   += $(SANITIZE)
LDLIBS    += $(PKG_LIBS) -lpthread

# Modules that the statically linked guest agent may use (no host-only code).
GUEST_MODULES := util wire scenario guest

LIB_SRCS   := $(sort $(wildcard libktstr/*/*.cpp))
LIB_ASMS   := $(sort $(wildcard libktstr/*/*.S))
LIB_OBJS   := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o) $(LIB_ASMS:%.S=$(BUILD)/obj/%.o)
# A static binary cannot carry the sanitizer runtimes: under SANITIZE the guest side is
# compiled a second time without them, into obj-guest/.
GUEST_OBJDIR := $(if $(SANITIZE),$(BUILD)/obj-guest,$(BUILD)/obj)
GUEST_OBJS := $(filter $(foreach m,$(GUEST_MODULES),$(GUEST_OBJDIR)/libktstr/$(m)/%),$(LIB_OBJS:$(BUILD)/obj/%=$(GUEST_OBJDIR)/%))

# tools/NAME.cpp -> $(BUILD)/bin/NAME ; tools/ktstr-guest*.cpp link statically
TOOL_SRCS  := $(sort $(wildcard tools/*.cpp))
TOOLS      := $(TOOL_SRCS:tools/%.cpp=$(BUILD)/bin/%)
HOST_TOOLS := $(filter-out $(BUILD)/bin/ktstr-guest%,$(TOOLS))
GUEST_TOOLS:= $(filter $(BUILD)/bin/ktstr-guest%,$(TOOLS))
SCRIPTS    := $(sort $(wildcard scripts/ktstr))

TEST_SRCS  := $(sort $(wildcard tests/unit/*.cpp))
TEST_OBJS  := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o)
UNIT       := $(BUILD)/bin/ktstr-unit

# tests/guests/NAME.S -> $(BUILD)/guests/NAME.elf: tiny KVM test guests (ELF64, tests/guests/guest.ld)
GUEST_PROGS := $(patsubst tests/guests/%.S,$(BUILD)/guests/%.elf,$(wildcard tests/guests/*.S))

STATIC_LIB := $(BUILD)/lib/libktstr.a
SHARED_LIB := $(BUILD)/lib/libktstr.so.$(VERSION)
GUEST_LIB  := $(BUILD)/lib/libktstr-guest.a

.PHONY: all test check e2e bench install uninstall clean deps unit guests
.DELETE_ON_ERROR:

all: $(STATIC_LIB) $(SHARED_LIB) $(TOOLS)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj-guest/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(filter-out -fsanitize=%,$(CXXFLAGS)) -c $< -o $@

# .S files may .incbin project files (the kconfig fragment); track them.
$(BUILD)/obj/%.o: %.S
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -MMD -MP -c $< -o $@

# -MMD does not see .incbin: the embedded fragment is a dependency by hand.
$(BUILD)/obj/libktstr/kconfig/embedded.o: kconfig/ktstr.kconfig

$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(GUEST_LIB): $(GUEST_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CXX) -shared -Wl,-soname,libktstr.so.$(VERSION) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf libktstr.so.$(VERSION) $(BUILD)/lib/libktstr.so

$(HOST_TOOLS): $(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

# The guest agent runs as PID 1 in an initramfs: static, no host libraries at run time.
$(GUEST_TOOLS): $(BUILD)/bin/%: $(GUEST_OBJDIR)/tools/%.o $(GUEST_LIB)
	@mkdir -p $(@D)
	$(CXX) -static -Wl,--strip-debug $(filter-out -fsanitize=%,$(LDFLAGS)) -o $@ $< $(GUEST_LIB) -lz -lpthread

$(UNIT): $(TEST_OBJS) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $(TEST_OBJS) $(STATIC_LIB) $(LDLIBS)

# The pkg-config file names PREFIX, so it is written at install time (a PREFIX
# given to make install must not meet a file generated with another one).
PC_TEXT = prefix=$(PREFIX)\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: ktstr\nDescription: ktstr scheduler test harness library\nVersion: $(VERSION)\nRequires.private: $(PKGS)\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lktstr\n

unit: $(UNIT)

guests: $(GUEST_PROGS)

$(BUILD)/guests/%.elf: tests/guests/%.S tests/guests/lib.inc tests/guests/guest.ld
	@mkdir -p $(@D)
	as --64 -I tests/guests -o $(@:.elf=.o) $<
	ld -m elf_x86_64 -T tests/guests/guest.ld -nostdlib --build-id=none -o $@ $(@:.elf=.o)

# KTSTR_SANITIZE tells e2e scripts that compile a client against libktstr.a which flags it needs.
test: all $(UNIT) guests
	@BUILD=$(BUILD) KTSTR_SANITIZE="$(SANITIZE)" scripts/run-tests.sh test

check:
	$(MAKE) BUILD=build-san OPT=-O1 SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

e2e: all $(UNIT) guests
	@BUILD=$(BUILD) KTSTR_SANITIZE="$(SANITIZE)" scripts/run-tests.sh e2e

bench: all guests
	@BUILD=$(BUILD) scripts/run-bench.sh

deps:
	scripts/install-deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include/ktstr $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7 \
	    $(DESTDIR)$(PREFIX)/libexec/ktstr
	install -m 755 $(HOST_TOOLS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(GUEST_TOOLS),install -m 755 $(GUEST_TOOLS) $(DESTDIR)$(PREFIX)/libexec/ktstr/)
	$(if $(SCRIPTS),install -m 755 $(SCRIPTS) $(DESTDIR)$(PREFIX)/bin/)
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libktstr.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libktstr.so
	install -m 644 libktstr/include/ktstr/*.h $(DESTDIR)$(PREFIX)/include/ktstr/
	printf '$(PC_TEXT)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ktstr.pc
	for s in 1 5 7; do f=$$(ls man/man$$s/*.$$s 2>/dev/null); \
	    [ -z "$$f" ] || install -m 644 $$f $(DESTDIR)$(PREFIX)/share/man/man$$s/; done

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj $(BUILD)/obj-guest -name '*.d' 2>/dev/null)
