// Unit tests for libktstr/kconfig: parser, fragments and hash, merge, Kconfig
// expressions and tree scan, validation.
#include <doctest/doctest.h>

#include "temp_dir.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <sys/stat.h>

#include "ktstr/kconfig.h"

using namespace ktstr;
namespace kc = ktstr::kconfig;

namespace {

std::string error_of(const std::function<void()> &f) {
    try {
        f();
    } catch (const Error &e) {
        CHECK(e.exit_code() == 2);
        return e.what();
    }
    FAIL("no error thrown");
    return {};
}

bool contains(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

bool any_contains(const std::vector<std::string> &v, const std::string &needle) {
    return std::any_of(v.begin(), v.end(), [&](const std::string &s) { return contains(s, needle); });
}

// A scratch directory removed at scope exit.

kc::Fragment frag(const std::string &name, const std::string &text) { return {name, text}; }

} // namespace

// ---- parser ---------------------------------------------------------------------------

TEST_CASE("parser: every value form, comments, blank lines, CRLF") {
    kc::Config c = kc::parse("# a comment\r\n"
                             "\n"
                             "CONFIG_A=y\r\n"
                             "CONFIG_B=m\n"
                             "CONFIG_C=n\n"
                             "# CONFIG_D is not set\r\n"
                             "CONFIG_E=\"say \\\"hi\\\" \\\\ there\"\n"
                             "CONFIG_F=512\n"
                             "CONFIG_G=-1\n"
                             "CONFIG_H=0xdead000000000000\n"
                             "CONFIG_I=\"\"\n"
                             "# CONFIG_PREEMPT=y\n"        // a commented-out opt-in stays a comment
                             "   \t\n",
                             "t.config");
    REQUIRE(c.entries.size() == 9);
    CHECK(c.find("A")->value == "y");
    CHECK(c.find("B")->value == "m");
    CHECK(c.find("C")->value == "n");
    CHECK(c.find("D")->value == "n");
    CHECK(c.find("D")->line == 6);
    CHECK(c.find("E")->kind == kc::Entry::Kind::string);
    CHECK(c.find("E")->value == "say \"hi\" \\ there");
    CHECK(kc::display_value(*c.find("E")) == "\"say \\\"hi\\\" \\\\ there\"");
    CHECK(c.find("F")->kind == kc::Entry::Kind::number);
    CHECK(c.find("G")->value == "-1");
    CHECK(c.find("H")->kind == kc::Entry::Kind::hex);
    CHECK(c.find("I")->value.empty());
    CHECK(kc::display_value(*c.find("D")) == "is not set");
    CHECK(c.find("PREEMPT") == nullptr);
    CHECK(c.warnings.empty());
}

TEST_CASE("parser: a duplicate keeps the later value and warns with file and lines") {
    kc::Config c = kc::parse("CONFIG_X=y\nCONFIG_Y=1\n# CONFIG_X is not set\n", "dup.config");
    CHECK(c.entries.size() == 2);
    CHECK(c.entries[0].name == "X");   // first-appearance order
    CHECK(c.find("X")->value == "n");
    CHECK(c.find("X")->line == 3);
    REQUIRE(c.warnings.size() == 1);
    CHECK(contains(c.warnings[0], "dup.config:3"));
    CHECK(contains(c.warnings[0], "again (line 1)"));
}

TEST_CASE("parser: malformed lines name file, line and text") {
    for (const char *bad : {"FOO=y", "CONFIG_X", "CONFIG_X=", "CONFIG_X=yes", "CONFIG_X=\"open",
                            "CONFIG_X=\"a\" trailing", "CONFIG_=y", "CONFIG_X-Y=y", "CONFIG_X=0xZZ", "CONFIG_X=1 2"}) {
        std::string msg = error_of([&] { kc::parse(std::string("CONFIG_OK=y\n") + bad + "\n", "bad.config"); });
        CAPTURE(bad);
        CHECK(contains(msg, "bad.config:2: malformed line '"));
        CHECK(contains(msg, std::string("'") + bad + "'"));
    }
}

TEST_CASE("parser: only-arch tags") {
    kc::Config c = kc::parse("# only-arch aarch64: A CONFIG_B\n# only-arch x86_64: C\nCONFIG_A=y\n", "f");
    CHECK(c.only_arch.at("A") == kc::Arch::aarch64);
    CHECK(c.only_arch.at("B") == kc::Arch::aarch64);
    CHECK(c.only_arch.at("C") == kc::Arch::x86_64);
    CHECK(contains(error_of([] { kc::parse("\n# only-arch sparc: A\n", "f"); }), "f:2: unknown architecture 'sparc'"));
    CHECK(contains(error_of([] { kc::parse("# only-arch aarch64\n", "f"); }), "f:1: malformed line"));
}

TEST_CASE("architectures") {
    CHECK(kc::parse_arch("x86_64") == kc::Arch::x86_64);
    CHECK(kc::parse_arch("arm64") == kc::Arch::aarch64);
    CHECK(std::string(kc::make_arch(kc::Arch::aarch64)) == "arm64");
    CHECK(std::string(kc::kernel_arch_dir(kc::Arch::x86_64)) == "x86");
    CHECK(contains(error_of([] { kc::parse_arch("riscv"); }), "unknown architecture 'riscv' (valid: x86_64, aarch64)"));
}

// ---- the fragment, the hash, merging ----------------------------------------------------

TEST_CASE("embedded fragment: parses, asks for every critical option, tags the arch-only ones") {
    std::string_view text = kc::embedded_fragment();
    REQUIRE(!text.empty());
    CHECK(text.back() == '\n');
    kc::Config c = kc::parse(text, "ktstr.kconfig");
    CHECK(c.warnings.empty());
    for (auto &crit : kc::critical_options()) {
        CAPTURE(crit.name);
        REQUIRE(c.find(crit.name));
        CHECK(c.find(crit.name)->value == "y");
    }
    for (const char *arm : {"HW_PERF_EVENTS", "ARM_PMUV3", "SERIAL_OF_PLATFORM", "SERIAL_AMBA_PL011",
                            "SERIAL_AMBA_PL011_CONSOLE"})
        CHECK(c.only_arch.at(arm) == kc::Arch::aarch64);
    for (const char *x86 : {"X86_FRED", "EARLY_PRINTK", "HYPERVISOR_GUEST", "X86_X2APIC", "PCI_MMCONFIG"})
        CHECK(c.only_arch.at(x86) == kc::Arch::x86_64);
    // Every tag names an option the fragment sets.
    for (auto &[sym, arch] : c.only_arch) CHECK(c.find(sym) != nullptr);
}

TEST_CASE("hash: CRC-32 of the effective text, 8 lowercase hex") {
    // The CRC-32 check value: crc32("123456789") = 0xcbf43926.
    CHECK(kc::fragment_hash({frag("base", "123456789")}) == "cbf43926");
    // No extras: the hash of the base bytes alone.
    auto base_only = kc::load_fragments({});
    CHECK(kc::fragment_hash(base_only) == hex8(crc32_of(kc::embedded_fragment())));
    CHECK(kc::effective_fragment(base_only) == kc::embedded_fragment());
}

TEST_CASE("effective fragment: a newline between parts only where missing; order matters") {
    CHECK(kc::effective_fragment({frag("b", "A"), frag("x", "B\n"), frag("y", "C")}) == "A\nB\nC");
    CHECK(kc::effective_fragment({frag("b", "A\n"), frag("x", "B")}) == "A\nB");
    CHECK(kc::effective_fragment({frag("b", ""), frag("x", "B")}) == "B");
    auto ab = kc::fragment_hash({frag("b", "base\n"), frag("x", "CONFIG_A=y\n"), frag("y", "CONFIG_B=y\n")});
    auto ba = kc::fragment_hash({frag("b", "base\n"), frag("y", "CONFIG_B=y\n"), frag("x", "CONFIG_A=y\n")});
    CHECK(ab != ba);
    // Comments count: the hash never normalises.
    CHECK(kc::fragment_hash({frag("b", "# a\n")}) != kc::fragment_hash({frag("b", "# b\n")}));
    CHECK(kc::fragment_hash({frag("b", "base\n"), frag("x", "CONFIG_A=y\n")}) ==
          hex8(crc32_of(std::string_view("base\nCONFIG_A=y\n"))));
}

TEST_CASE("merge: a later fragment overrides, tags accumulate") {
    kc::Config r = kc::requested_config({frag("base", "CONFIG_A=y\nCONFIG_B=y\n"),
                                         frag("x.kconfig", "# CONFIG_A is not set\nCONFIG_C=m\n# only-arch aarch64: C\n")});
    CHECK(r.entries.size() == 3);
    CHECK(r.find("A")->value == "n");
    CHECK(r.find("A")->file == "x.kconfig");
    CHECK(r.find("B")->file == "base");
    CHECK(r.only_arch.at("C") == kc::Arch::aarch64);
    CHECK(r.warnings.empty());   // overriding across files is the point of extras, not a duplicate
}

TEST_CASE("extras that turn a critical option off are rejected with file, line and option") {
    auto msg = error_of([] {
        kc::reject_critical_disables({frag("base", "# CONFIG_SCHED_CLASS_EXT is not set\n"),
                                      frag("ok.kconfig", "# CONFIG_BPF_JIT is not set\n"),
                                      frag("off.kconfig", "# fine\n# CONFIG_DEBUG_INFO_BTF is not set\n")});
    });
    CHECK(contains(msg, "off.kconfig:2:"));
    CHECK(contains(msg, "CONFIG_DEBUG_INFO_BTF"));
    CHECK(contains(error_of([] { kc::reject_critical_disables({frag("b", ""), frag("m.kconfig", "CONFIG_CGROUPS=m\n")}); }),
                   "m.kconfig:1: extra fragment sets critical option CONFIG_CGROUPS to 'm'"));
    CHECK_NOTHROW(kc::reject_critical_disables({frag("b", ""), frag("x", "CONFIG_BPF=y\n# CONFIG_SOUND is not set\n")}));
}

TEST_CASE("load_fragments: a missing or malformed extra is bad input naming it") {
    CHECK(contains(error_of([] { kc::load_fragments({"/nonexistent/x.kconfig"}); }), "/nonexistent/x.kconfig"));
    TempDir d;
    d.write("bad.kconfig", "CONFIG_A=y\nCONFIG_B\n");
    CHECK(contains(error_of([&] { kc::load_fragments({d.path + "/bad.kconfig"}); }), "bad.kconfig:2: malformed line 'CONFIG_B'"));
}

// ---- expressions -----------------------------------------------------------------------------

TEST_CASE("expressions: tristate logic and comparisons against a .config") {
    kc::Config c = kc::parse("CONFIG_Y=y\nCONFIG_M=m\n# CONFIG_N is not set\nCONFIG_V=124\nCONFIG_S=\"abc\"\n", "c");
    CHECK(kc::eval_expr("Y", c) == 2);
    CHECK(kc::eval_expr("M", c) == 1);
    CHECK(kc::eval_expr("N", c) == 0);
    CHECK(kc::eval_expr("ABSENT", c) == 0);
    CHECK(kc::eval_expr("Y && M", c) == 1);   // min
    CHECK(kc::eval_expr("N || M", c) == 1);   // max
    CHECK(kc::eval_expr("!M", c) == 1);       // 2 - m
    CHECK(kc::eval_expr("!N && (Y || N)", c) == 2);
    CHECK(kc::eval_expr("V >= 116", c) == 2);
    CHECK(kc::eval_expr("V >= 125", c) == 0);
    CHECK(kc::eval_expr("V != 124", c) == 0);
    CHECK(kc::eval_expr("S = \"abc\"", c) == 2);
    CHECK(kc::eval_expr("Y=y", c) == 2);
    CHECK(kc::eval_expr("M=y", c) == 0);
    CHECK(kc::eval_expr("$(success,false)", c) == 2);   // unknowable: never blamed
    CHECK_THROWS_AS(kc::eval_expr("A && (B", c), Error);
}

TEST_CASE("expressions: explaining why a dependency is false") {
    kc::Config c = kc::parse("CONFIG_BPF_SYSCALL=y\n# CONFIG_BPF_JIT is not set\nCONFIG_PAHOLE_VERSION=0\n"
                             "CONFIG_DEBUG_INFO_REDUCED=y\n", "c");
    std::vector<std::string> off;
    auto why = kc::explain_false("BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF", c, &off);
    REQUIRE(why.size() == 2);
    CHECK(why[0] == "BPF_JIT is off (is not set)");
    CHECK(why[1] == "DEBUG_INFO_BTF is off (not in the .config)");
    CHECK(off == std::vector<std::string>{"BPF_JIT", "DEBUG_INFO_BTF"});
    CHECK(kc::explain_false("PAHOLE_VERSION >= 116", c) ==
          std::vector<std::string>{"PAHOLE_VERSION >= 116 is false (PAHOLE_VERSION=0)"});
    CHECK(kc::explain_false("!DEBUG_INFO_REDUCED", c) == std::vector<std::string>{"DEBUG_INFO_REDUCED=y must be off"});
    CHECK(kc::explain_false("BPF_SYSCALL", c).empty());
    auto alt = kc::explain_false("KPROBE_EVENTS || UPROBE_EVENTS", c);
    REQUIRE(alt.size() == 1);
    CHECK(contains(alt[0], "none of its alternatives holds"));
}

// ---- Kconfig tree scan -----------------------------------------------------------------------

namespace {

// A miniature kernel tree with the shapes that matter: an arch-only symbol, a
// select-only bus symbol, if-blocks, help text that looks like keywords, a
// hidden prompt, and a symbol whose dependency is generic.
void write_mini_tree(const TempDir &d, const std::string &at = "") {
    d.write(at + "Makefile", "# top\n");
    d.write(at + "Kconfig", "mainmenu \"mini\"\nsource \"arch/$(SRCARCH)/Kconfig\"\nsource \"drivers/Kconfig\"\n"
                       "source \"init/Kconfig\"\n");
    d.write(at + "arch/x86/Kconfig", "config X86\n\tdef_bool y\n\tselect PCI_BUS\n"
                                "config X86_ONLY\n\tbool \"x86 thing\"\n");
    d.write(at + "arch/x86/Kconfig.debug", "config EARLY_CONSOLE\n\tbool \"early\"\n");
    d.write(at + "arch/arm64/Kconfig", "config ARM64\n\tdef_bool y\n\tselect AMBA_BUS\n"
                                  "config PMU_EVENTS\n\tdef_bool y\n");
    d.write(at + "drivers/Kconfig", "config AMBA_BUS\n\tbool\n\nif AMBA_BUS\nconfig AMBA_THING\n\tbool \"amba\"\nendif\n"
                               "config PCI_BUS\n\tbool\n"
                               "config UART_DT\n\ttristate \"dt uart\"\n\tdepends on SERIAL && OF\n"
                               "\thelp\n\t  depends on NOTHING_REAL\n\t  config FAKE\n\n\t  more help\n"
                               "config SERIAL\n\ttristate \"serial\"\n"
                               "config OF\n\tbool \"device tree\"\n"
                               "config PMU_V3\n\tbool \"pmu\"\n\tdepends on PMU_EVENTS && (ARM64 || X86_ONLY)\n"
                               "config CONSOLE_PL\n\tbool \"console\"\n\tdepends on AMBA_THING=y\n"
                               "config TEXT_CONSOLE\n\tbool \"text console\" if EXPERT || !X86\n\tdefault y\n"
                               "config WLAN\n\tbool \"wlan\"\n\tselect RADIO\n"
                               "config RADIO\n\tbool \"radio\"\n");
    d.write(at + "init/Kconfig", "osource \"arch/$(SRCARCH)/Kconfig.debug\"\nmenu \"sched\"\n\tdepends on CORE\nconfig SCX\n\tbool \"scx\"\n\tdepends on BPF_JIT && BTF\n"
                            "endmenu\nconfig CORE\n\tdef_bool y\nconfig BPF_JIT\n\tbool \"jit\"\nconfig BTF\n\tbool \"btf\"\n"
                            "\tdepends on PAHOLE_VERSION >= 116\nconfig PAHOLE_VERSION\n\tint\n\tdefault 0\n"
                            "config EXPERT\n\tbool \"expert\"\n");
}

} // namespace

TEST_CASE("Kconfig scan: architecture ownership is derived from declarations, dependencies and selects") {
    TempDir d;
    write_mini_tree(d);
    kc::KconfigDb db = kc::KconfigDb::scan(d.path);
    CHECK(db.from_tree());
    CHECK(db.declares("SCX"));
    CHECK_FALSE(db.declares("FAKE"));   // inside help text
    using V = std::vector<std::string>;
    CHECK(db.only_on("X86_ONLY") == V{"x86"});
    CHECK(db.only_on("EARLY_CONSOLE") == V{"x86"});   // via osource "arch/$(SRCARCH)/Kconfig.debug"
    CHECK(db.only_on("PMU_EVENTS") == V{"arm64"});
    CHECK(db.only_on("AMBA_BUS") == V{"arm64"});     // no prompt, no default: only where selected
    CHECK(db.only_on("AMBA_THING") == V{"arm64"});   // inside "if AMBA_BUS"
    CHECK(db.only_on("CONSOLE_PL") == V{"arm64"});   // "depends on AMBA_THING=y"
    CHECK(db.only_on("PMU_V3") == V{"arm64"});       // PMU_EVENTS && (ARM64 || X86_ONLY)
    CHECK(db.only_on("UART_DT") == std::nullopt);    // OF has a prompt everywhere: not arch-owned
    CHECK(db.only_on("SERIAL") == std::nullopt);
    CHECK(db.depends("UART_DT", kc::Arch::x86_64) == V{"SERIAL && OF"});
    CHECK(db.depends("SCX", kc::Arch::x86_64) == V{"CORE", "BPF_JIT && BTF"});   // menu condition first

    kc::Config cfg = kc::parse("CONFIG_X86=y\nCONFIG_TEXT_CONSOLE=y\nCONFIG_WLAN=y\nCONFIG_RADIO=y\n", "c");
    auto forced = db.why_forced_on("TEXT_CONSOLE", kc::Arch::x86_64, cfg);
    REQUIRE(forced.size() == 1);
    CHECK(contains(forced[0], "prompt shows only if EXPERT || !X86"));
    CHECK(db.why_forced_on("RADIO", kc::Arch::x86_64, cfg) == V{"selected by WLAN=y"});
}

TEST_CASE("Kconfig scan: not a kernel tree is bad input") {
    TempDir d;
    CHECK(contains(error_of([&] { kc::KconfigDb::scan(d.path); }), "not a kernel source tree (missing Makefile or Kconfig)"));
    CHECK(contains(error_of([] { kc::KconfigDb::scan("/nonexistent-tree"); }), "/nonexistent-tree: not a directory"));
}

// ---- validation ----------------------------------------------------------------------------------

namespace {

const kc::Finding *find_finding(const std::vector<kc::Finding> &v, const std::string &name) {
    for (auto &f : v)
        if (f.name == name) return &f;
    return nullptr;
}

// A .config that keeps every critical option, so tests see only what they change.
std::string healthy_config() {
    std::string s;
    for (auto &c : kc::critical_options()) s += cat("CONFIG_", c.name, "=y\n");
    return s;
}

} // namespace

TEST_CASE("validate: every kind of difference, and what counts as satisfied") {
    kc::Config requested = kc::requested_config({frag("f", "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\nCONFIG_D=m\n"
                                                          "# CONFIG_E is not set\n# CONFIG_F is not set\n"
                                                          "CONFIG_G=512\nCONFIG_H=\"x\"\nCONFIG_I=0x10\nCONFIG_J=y\n")});
    kc::Config final_config = kc::parse(healthy_config() + "CONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=y\n"
                                        "CONFIG_E=y\nCONFIG_G=64\nCONFIG_H=\"x\"\nCONFIG_I=0x10\nCONFIG_J=y\n", "final");
    kc::Validation v = kc::validate(final_config, requested, kc::Arch::x86_64);
    CHECK(v.requested == 10);
    CHECK(v.satisfied == 4);   // F absent = off, H, I, J equal
    CHECK(v.ok());
    auto status = [&](const char *n) { auto *f = find_finding(v.differing, n); return f ? f->status : "ok"; };
    CHECK(status("A") == "missing");
    CHECK(find_finding(v.differing, "A")->actual == "(absent)");
    CHECK(status("B") == "demoted");
    CHECK(status("C") == "not_set");
    CHECK(status("D") == "promoted");
    CHECK(status("E") == "enabled");
    CHECK(status("F") == "ok");
    CHECK(status("G") == "different");
    CHECK(find_finding(v.differing, "G")->origin == "f:7");
    CHECK(v.differing.size() == 6);
}

TEST_CASE("validate: a lost critical option fails and names the off dependency (built-in knowledge)") {
    kc::Config requested = kc::requested_config(kc::load_fragments({}));
    std::string cfg = healthy_config();
    // DEBUG_INFO_BTF and SCHED_CLASS_EXT dropped because pahole was missing.
    for (const char *gone : {"CONFIG_DEBUG_INFO_BTF=y\n", "CONFIG_SCHED_CLASS_EXT=y\n"})
        cfg.erase(cfg.find(gone), std::string(gone).size());
    cfg += "CONFIG_PAHOLE_VERSION=0\nCONFIG_BPF_JIT=y\n";
    kc::Validation v = kc::validate(kc::parse(cfg, "final"), requested, kc::Arch::x86_64);
    CHECK_FALSE(v.ok());
    REQUIRE(v.critical_lost.size() == 2);
    auto *scx = find_finding(v.critical_lost, "SCHED_CLASS_EXT");
    auto *btf = find_finding(v.critical_lost, "DEBUG_INFO_BTF");
    REQUIRE(scx);
    REQUIRE(btf);
    CHECK(scx->critical);
    CHECK(std::find(scx->off_dependencies.begin(), scx->off_dependencies.end(), "DEBUG_INFO_BTF") != scx->off_dependencies.end());
    CHECK(any_contains(scx->causes, "needs BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF: DEBUG_INFO_BTF is off"));
    CHECK(any_contains(btf->causes, "PAHOLE_VERSION >= 116 is false (PAHOLE_VERSION=0)"));
    CHECK(any_contains(btf->causes, "pahole was missing when the kernel was configured"));
    CHECK(any_contains(scx->causes, "pahole was missing"));   // nested: why DEBUG_INFO_BTF is off
    CHECK(!v.notes.empty());
    ojson j = kc::to_json(v);
    CHECK(j["schema"] == "ktstr.kconfig-validate/1");
    CHECK(j["ok"] == false);
    CHECK(j["critical_lost"].size() == 2);
}

TEST_CASE("validate: too-old pahole is named with its version; =m counts as lost for a critical option") {
    kc::Config requested = kc::requested_config({frag("f", "CONFIG_DEBUG_INFO_BTF=y\n")});
    std::string cfg = healthy_config();
    cfg.erase(cfg.find("CONFIG_DEBUG_INFO_BTF=y\n"), 24);
    cfg.replace(cfg.find("CONFIG_SERIAL_8250=y"), 20, "CONFIG_SERIAL_8250=m");
    cfg += "CONFIG_PAHOLE_VERSION=115\n";
    kc::Validation v = kc::validate(kc::parse(cfg, "final"), requested, kc::Arch::x86_64);
    auto *btf = find_finding(v.critical_lost, "DEBUG_INFO_BTF");
    REQUIRE(btf);
    CHECK(any_contains(btf->causes, "pahole 1.15 is too old"));
    auto *uart = find_finding(v.critical_lost, "SERIAL_8250");
    REQUIRE(uart);
    CHECK(uart->status == "demoted");
    CHECK(uart->actual == "m");
}

TEST_CASE("validate: only-arch options are skipped on the other architecture only, and only when unmet") {
    kc::Config requested = kc::requested_config(
        {frag("f", "# only-arch aarch64: PL011 DTUART\nCONFIG_PL011=y\nCONFIG_DTUART=y\n# only-arch x86_64: X2APIC\nCONFIG_X2APIC=y\n")});
    kc::Config final_config = kc::parse(healthy_config() + "CONFIG_DTUART=y\n", "final");
    kc::Validation x86 = kc::validate(final_config, requested, kc::Arch::x86_64);
    REQUIRE(x86.skipped.size() == 1);
    CHECK(x86.skipped[0].name == "PL011");
    CHECK(x86.skipped[0].basis == "fragment");
    CHECK(x86.skipped[0].arches == std::vector<std::string>{"aarch64"});
    CHECK(x86.satisfied == 1);                          // DTUART is set: satisfied, not skipped
    CHECK(find_finding(x86.differing, "X2APIC"));       // x86's own option is checked on x86
    kc::Validation arm = kc::validate(final_config, requested, kc::Arch::aarch64);
    REQUIRE(arm.skipped.size() == 1);
    CHECK(arm.skipped[0].name == "X2APIC");
    CHECK(find_finding(arm.differing, "PL011"));
}

TEST_CASE("validate with a tree: ownership from Kconfig; predating sched_ext is named") {
    TempDir d;
    write_mini_tree(d);
    kc::KconfigDb db = kc::KconfigDb::scan(d.path);
    kc::Config requested = kc::requested_config({frag("f", "CONFIG_PMU_V3=y\nCONFIG_UART_DT=y\nCONFIG_SCHED_CLASS_EXT=y\n")});
    std::string cfg_text = healthy_config();
    cfg_text.erase(cfg_text.find("CONFIG_SCHED_CLASS_EXT=y\n"), 25);
    kc::Config final_config = kc::parse(cfg_text + "CONFIG_SERIAL=y\n# CONFIG_OF is not set\n", "final");
    kc::Validation v = kc::validate(final_config, requested, kc::Arch::x86_64, &db);
    REQUIRE(v.skipped.size() == 1);
    CHECK(v.skipped[0].name == "PMU_V3");
    CHECK(v.skipped[0].basis == "kconfig-tree");
    CHECK(v.skipped[0].arches == std::vector<std::string>{"aarch64"});
    auto *uart = find_finding(v.differing, "UART_DT");   // possible on x86: a real difference, with its cause
    REQUIRE(uart);
    CHECK(uart->causes == std::vector<std::string>{"needs SERIAL && OF: OF is off (is not set)"});
    auto *scx = find_finding(v.critical_lost, "SCHED_CLASS_EXT");
    REQUIRE(scx);
    CHECK(any_contains(scx->causes, "this kernel predates sched_ext"));
}

// ---- apply (with a stand-in for make: the kconfig steps without a kernel) ----------------------------

namespace {

// A "make" that records its target, writes .config like the real steps would
// (defconfig: a base config; olddefconfig: keeps the appended text), and fails
// or hangs on request.
std::string fake_make(const TempDir &d, const std::string &olddefconfig_action) {
    d.write("fake-make.sh", "#!/bin/sh\n"
                            "out=.; tree=.\n"
                            "while [ $# -gt 0 ]; do case $1 in -C) tree=$2; out=$2; shift;; O=*) out=${1#O=};;\n"
                            "  defconfig) printf 'CONFIG_BASE=y\\n' > \"$out/.config\";;\n"
                            "  olddefconfig) " + olddefconfig_action + ";;\n"
                            "esac; shift; done\n");
    std::string path = d.path + "/fake-make.sh";
    ::chmod(path.c_str(), 0755);
    return path;
}

kc::ApplyOptions apply_options(const TempDir &d, const std::string &make, const std::string &fragment) {
    kc::ApplyOptions opt;
    opt.tree = d.path + "/tree";
    opt.out = d.path + "/out";
    opt.make = make;
    opt.timeout_seconds = 20;
    opt.fragments = {frag("base", fragment)};
    return opt;
}

} // namespace

TEST_CASE("apply: defconfig, append, olddefconfig, validate; a second run changes nothing") {
    TempDir d;
    write_mini_tree(d, "tree/");
    auto opt = apply_options(d, fake_make(d, "true"), "CONFIG_SERIAL=y\n");
    kc::ApplyResult r = kc::apply(opt);
    CHECK(r.changed);
    REQUIRE(r.steps.size() == 2);
    CHECK(r.steps[0].target == "defconfig");
    CHECK(r.steps[1].target == "olddefconfig");
    CHECK(read_file(d.path + "/out/.config") == "CONFIG_BASE=y\nCONFIG_SERIAL=y\n");
    CHECK_FALSE(r.validation.ok());   // the stand-in config lacks every critical option
    kc::ApplyResult again = kc::apply(opt);
    CHECK_FALSE(again.changed);
    CHECK(again.steps.empty());
    ojson j = kc::to_json(again, opt);
    CHECK(j["schema"] == "ktstr.kconfig-apply/1");
    CHECK(j["validation"]["schema"] == "ktstr.kconfig-validate/1");
}

TEST_CASE("apply: a failing or hanging make leaves nothing behind") {
    TempDir d;
    write_mini_tree(d, "tree/");
    SUBCASE("failure in a build directory apply created: the directory goes") {
        auto opt = apply_options(d, fake_make(d, "echo 'conf: boom' >&2; exit 2"), "CONFIG_SERIAL=y\n");
        try {
            kc::apply(opt);
            FAIL("no error");
        } catch (const Error &e) {
            CHECK(e.exit_code() == 3);
            CHECK(contains(e.what(), "make olddefconfig failed (exit 2)"));
        }
        CHECK_FALSE(std::filesystem::exists(opt.out));
    }
    SUBCASE("timeout in an existing build directory: the old .config comes back") {
        std::filesystem::create_directories(d.path + "/out");
        d.write("out/.config", "CONFIG_OLD=y\n");
        auto opt = apply_options(d, fake_make(d, "sleep 30"), "CONFIG_SERIAL=y\n");
        opt.timeout_seconds = 0.3;
        try {
            kc::apply(opt);
            FAIL("no error");
        } catch (const Error &e) {
            CHECK(e.exit_code() == 3);
            CHECK(contains(e.what(), "make olddefconfig timed out after 0.3 s"));
        }
        CHECK(read_file(d.path + "/out/.config") == "CONFIG_OLD=y\n");
    }
    SUBCASE("bad input is refused before anything is created") {
        auto opt = apply_options(d, fake_make(d, "true"), "CONFIG_SERIAL=y\n");
        opt.fragments.push_back(frag("off.kconfig", "# CONFIG_BPF_SYSCALL is not set\n"));
        CHECK(contains(error_of([&] { kc::apply(opt); }), "off.kconfig:1"));
        opt.fragments.pop_back();
        opt.tree = d.path + "/no-tree";
        CHECK(contains(error_of([&] { kc::apply(opt); }), "no-tree: not a directory"));
        CHECK_FALSE(std::filesystem::exists(opt.out));
    }
}
