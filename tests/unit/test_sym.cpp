// Unit tests for libktstr/sym: ELF symbols and BTF layouts of the fixture
// vmlinux, synthetic BTF for the awkward kinds, IKCONFIG and CONFIG_HZ.
// Fixture offsets below were read independently with pahole(1) from the
// same vmlinux (pahole -C rq vmlinux, ...).
#include <doctest/doctest.h>

#include <cstdlib>
#include <unistd.h>

#include <bpf/btf.h>
#include <zlib.h>

#include "ktstr/monitor.h"
#include "ktstr/sym.h"

using namespace ktstr;
using namespace ktstr::sym;

namespace {

std::string fixture_vmlinux() {
    std::string dir = getenv("KTSTR_FIXTURES") ? getenv("KTSTR_FIXTURES") : "../shared/fixtures/linux-6.12";
    std::string p = dir + "/vmlinux";
    return access(p.c_str(), R_OK) == 0 ? p : "";
}

#define NEED_FIXTURE()                                                    \
    std::string vmlinux = fixture_vmlinux();                              \
    if (vmlinux.empty()) {                                                \
        MESSAGE("fixture vmlinux not found: skipped");                    \
        return;                                                           \
    }

std::string gzip(const std::string &in) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(compressBound(uLong(in.size())) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(in.data()));
    zs.avail_in = uInt(in.size());
    zs.next_out = reinterpret_cast<Bytef *>(out.data());
    zs.avail_out = uInt(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

} // namespace

TEST_CASE("ELF symbols of the fixture vmlinux") {
    NEED_FIXTURE();
    ElfSymbols e = ElfSymbols::load(vmlinux);
    CHECK(e.find("runqueues") == 0x2f780);                       // per-CPU: offset in .data..percpu
    CHECK(e.find("__per_cpu_offset") == 0xffffffff8279d240ull);
    CHECK(e.find("linux_banner") == 0xffffffff8234f2a0ull);
    CHECK(e.find("map_idr") == 0xffffffff82f61940ull);           // a file-scope static ('d')
    CHECK(e.find("_text") == 0xffffffff81000000ull);
    CHECK_FALSE(e.find("no_such_symbol_anywhere"));
    CHECK_THROWS_WITH_AS(e.require("no_such_symbol_anywhere", "hint"), doctest::Contains("no_such_symbol_anywhere"), Error);
    auto banner = e.cstring_at(*e.find("linux_banner"));
    REQUIRE(banner);
    CHECK(starts_with(*banner, "Linux version 6.12.118 "));
    CHECK(banner->back() == '\n');
    CHECK(e.bytes_at(*e.find("linux_banner"), 6) == std::string("Linux "));
    CHECK_FALSE(e.bytes_at(0x1000, 4));                          // not in any section
}

TEST_CASE("not a vmlinux: clear input errors") {
    CHECK_THROWS_WITH_AS(ElfSymbols::load("/nonexistent/vmlinux"), doctest::Contains("/nonexistent/vmlinux"), Error);
    CHECK_THROWS_WITH_AS(ElfSymbols::load("/etc/passwd"), doctest::Contains("not an ELF"), Error);
    // /bin/ls is an ELF without a symbol table (Debian strips it)
    CHECK_THROWS_WITH_AS(ElfSymbols::load("/bin/ls"), doctest::Contains("no symbol table"), Error);
    try {
        ElfSymbols::load("/bin/ls");
    } catch (const Error &e) {
        CHECK(e.exit_code() == 2);
        CHECK(std::string(e.what()).find('\n') == std::string::npos);
    }
}

TEST_CASE("BTF of the fixture: struct rq, scx_rq, sched_domain, BPF objects") {
    NEED_FIXTURE();
    Btf btf = Btf::parse(vmlinux);
    CHECK(btf.offset_of("rq", "nr_running") == 4);
    CHECK(btf.offset_of("rq", "clock") == 3088);
    CHECK(btf.offset_of("rq", "cpu") == 3288);
    CHECK(btf.offset_of("rq", "sd") == 3192);
    auto scx = btf.member("rq", "scx");
    REQUIRE(scx);
    CHECK(scx->offset == 2280);
    int scx_rq = btf.resolve_to_struct(scx->type_id);
    CHECK(btf.name_of(scx_rq) == "scx_rq");
    CHECK(btf.size_of(scx_rq) == 480);
    CHECK(btf.member(scx_rq, "nr_running")->offset == 120);
    CHECK(btf.member(scx_rq, "flags")->offset == 124);
    CHECK(btf.offset_of("scx_dispatch_q", "nr") == 32);
    CHECK(btf.offset_of("sched_domain", "level") == 64);
    CHECK(btf.offset_of("sched_domain", "span_weight") == 288);
    CHECK(btf.offset_of("sched_domain", "max_newidle_lb_cost") == 104);
    CHECK(btf.offset_of("bpf_array", "value") == 256);          // inside an anonymous union of structs
    CHECK(btf.offset_of("bpf_map", "name") == 88);

    monitor::KernelOffsets o = monitor::resolve_offsets(btf);
    CHECK(o.scx);
    CHECK(o.scx_nr_running == 2280 + 120);
    CHECK(o.scx_flags == 2280 + 124);
    CHECK(o.scx_local_dsq_nr == 2280 + 0 + 32);
    CHECK(o.events == monitor::KernelOffsets::Events::none);    // 6.12: no scx_sched event counters
    CHECK(o.schedstat);
    CHECK(o.pcount == 3720);
    CHECK(o.run_delay == 3728);
    CHECK(o.ttwu_local == 3776);
    REQUIRE(o.domain);
    CHECK(o.domain->parent == 0);
    CHECK(o.domain->flags == 60);
    REQUIRE(o.domain->newidle);                                  // backported to 6.12.118
    CHECK((*o.domain->newidle)[0] == 88);
    CHECK((*o.domain->newidle)[2] == 96);
    CHECK(o.idr);
    CHECK(o.idr_xa_head == 8);
    CHECK(o.idr_next == 20);
    CHECK(o.xa_node_slots == 40);
    CHECK(o.bpf_map);
    CHECK(o.array_value == 256);
    CHECK(o.bpf_prog);
    CHECK(o.prog_aux == 56);
    CHECK(o.aux_verified_insns == 944);
    CHECK(o.aux_name == 968);
}

TEST_CASE("a vmlinux without BTF is refused with the Kconfig hint") {
    CHECK_THROWS_WITH_AS(Btf::parse("/bin/ls"), doctest::Contains("CONFIG_DEBUG_INFO_BTF"), Error);
}

namespace {
// Synthetic BTF built with libbpf's writer API.
struct Synth {
    struct btf *b = btf__new_empty();
    int u32 = btf__add_int(b, "u32", 4, 0);
    int u64 = btf__add_int(b, "u64", 8, 0);
    int s64 = btf__add_int(b, "s64", 8, BTF_INT_SIGNED);
    int u8 = btf__add_int(b, "u8", 1, 0);
};
} // namespace

TEST_CASE("synthetic BTF: anonymous unions, bitfields, type tags, duplicate names") {
    Synth s;
    // struct inner { u32 a; u32 target; };
    int inner = btf__add_struct(s.b, "inner", 8);
    btf__add_field(s.b, "a", s.u32, 0, 0);
    btf__add_field(s.b, "target", s.u32, 32, 0);
    // union { struct inner; u64 alias; } (anonymous), behind a const and a typedef
    int anon = btf__add_union(s.b, nullptr, 8);
    btf__add_field(s.b, nullptr, inner, 0, 0);
    btf__add_field(s.b, "alias", s.u64, 0, 0);
    int cnst = btf__add_const(s.b, anon);
    int tdef = btf__add_typedef(s.b, "anon_t", cnst);
    int tagged = btf__add_type_tag(s.b, "rcu", inner);
    int ptr = btf__add_ptr(s.b, tagged);
    // struct outer { u8 bits:3; u8 more:5; u32 word; <anon> at 64; inner *p; }
    int outer = btf__add_struct(s.b, "outer", 32);
    btf__add_field(s.b, "bits", s.u8, 0, 3);
    btf__add_field(s.b, "more", s.u8, 3, 5);
    btf__add_field(s.b, "word", s.u32, 32, 0);
    btf__add_field(s.b, nullptr, tdef, 64, 0);
    btf__add_field(s.b, "p", ptr, 128, 0);
    // two structs named "bucket": only one has "head"
    int b1 = btf__add_struct(s.b, "bucket", 4);
    btf__add_field(s.b, "other", s.u32, 0, 0);
    int b2 = btf__add_struct(s.b, "bucket", 16);
    btf__add_field(s.b, "lock", s.u64, 0, 0);
    btf__add_field(s.b, "head", s.u64, 64, 0);
    Btf btf(s.b);

    CHECK(btf.find_struct("outer") == outer);
    CHECK(btf.offset_of("outer", "word") == 4);
    CHECK(btf.offset_of("outer", "target") == 8 + 4);       // through the anonymous union (typedef+const)
    CHECK(btf.offset_of("outer", "alias") == 8);
    CHECK(btf.offset_of("outer", "a") == 8);
    CHECK_FALSE(btf.offset_of("outer", "more"));             // a bitfield at bit 3: not byte addressable
    CHECK_FALSE(btf.offset_of("outer", "bits"));             // a bitfield, even at bit 0
    CHECK_FALSE(btf.offset_of("outer", "missing"));
    CHECK_FALSE(btf.offset_of("nosuch", "a"));
    auto p = btf.member(outer, "p");
    REQUIRE(p);
    CHECK(p->offset == 16);
    CHECK(btf.resolve_to_struct(p->type_id) == inner);       // ptr -> type_tag -> struct
    CHECK(btf.resolve_to_struct(s.u32) == 0);
    CHECK(btf.find_structs("bucket") == std::vector<int>{b1, b2});
    CHECK_FALSE(btf.member(b1, "head"));
    CHECK(btf.member(b2, "head")->offset == 8);
}

TEST_CASE("synthetic BTF: kflag bitfield encoding still yields byte offsets for plain members") {
    Synth s;
    int st = btf__add_struct(s.b, "kf", 16);
    btf__add_field(s.b, "flag", s.u32, 0, 1);                // bitfield => kflag layout for the struct
    btf__add_field(s.b, "x", s.u64, 64, 0);
    Btf btf(s.b);
    const btf_type *t = btf__type_by_id(btf.raw(), __u32(st));
    CHECK(btf_kflag(t));
    CHECK(btf.offset_of("kf", "x") == 8);
}

namespace {
// A minimal kernel BTF with rq, and scx_sched in the 6.16 or 6.18 layout.
Btf event_btf(bool v618, bool old_slice_name, bool drop_required) {
    Synth s;
    int rq = btf__add_struct(s.b, "rq", 16);
    btf__add_field(s.b, "nr_running", s.u32, 0, 0);
    btf__add_field(s.b, "clock", s.u64, 64, 0);
    const char *names[] = {"SCX_EV_SELECT_CPU_FALLBACK", "SCX_EV_DISPATCH_LOCAL_DSQ_OFFLINE", "SCX_EV_DISPATCH_KEEP_LAST",
                           "SCX_EV_ENQ_SKIP_EXITING", "SCX_EV_ENQ_SKIP_MIGRATION_DISABLED",
                           old_slice_name ? "SCX_EV_ENQ_SLICE_DFL" : "SCX_EV_REFILL_SLICE_DFL"};
    int n = drop_required ? 4 : 6;
    int stats = btf__add_struct(s.b, "scx_event_stats", 8 * n);
    for (int i = 0; i < n; i++) btf__add_field(s.b, names[drop_required && i >= 1 ? i + 1 : i], s.s64, 64 * i, 0);
    int target = stats;
    if (v618) {
        int pcpu = btf__add_struct(s.b, "scx_sched_pcpu", 16 + 8 * n);
        btf__add_field(s.b, "flags", s.u64, 0, 0);
        btf__add_field(s.b, "event_stats", stats, 128, 0);
        target = pcpu;
    }
    int ptr = btf__add_ptr(s.b, btf__add_type_tag(s.b, "percpu", target));
    btf__add_struct(s.b, "scx_sched", 32);
    btf__add_field(s.b, "ops", s.u64, 0, 0);
    btf__add_field(s.b, v618 ? "pcpu" : "event_stats_cpu", ptr, 64, 0);
    btf__add_field(s.b, "watchdog_timeout", s.u64, 128, 0);
    (void)rq;
    return Btf(s.b);
}
} // namespace

TEST_CASE("scx event counter layouts: 6.18 pcpu, 6.16 event_stats_cpu, aliases, required set") {
    using monitor::KernelOffsets;
    auto o18 = monitor::resolve_offsets(event_btf(true, false, false));
    CHECK(o18.events == KernelOffsets::Events::v6_18);
    CHECK(o18.scx_sched_pcpu == 8);
    CHECK(o18.event_stats_off == 16);
    CHECK(o18.event_off[0] == 0);
    CHECK(o18.event_off[2] == 16);
    CHECK(o18.event_off[7] == 40);                           // refill_slice_dfl
    CHECK_FALSE(o18.event_off[8]);                            // bypass_duration: absent, optional
    CHECK(o18.scx_sched_watchdog_timeout == 16);
    CHECK_FALSE(o18.scx);                                     // no rq.scx in this BTF
    auto o16 = monitor::resolve_offsets(event_btf(false, true, false));
    CHECK(o16.events == KernelOffsets::Events::v6_16);
    CHECK(o16.event_stats_off == 0);
    CHECK(o16.event_off[7] == 40);                            // found under the old name SCX_EV_ENQ_SLICE_DFL
    auto none = monitor::resolve_offsets(event_btf(true, false, true));
    CHECK(none.events == KernelOffsets::Events::none);        // a required counter is missing
}

TEST_CASE("struct rq is required, the rest degrades") {
    Synth s;
    btf__add_struct(s.b, "task_struct", 8);
    Btf no_rq(s.b);
    CHECK_THROWS_WITH_AS(monitor::resolve_offsets(no_rq), doctest::Contains("no struct rq"), Error);
    Synth t;
    int rq = btf__add_struct(t.b, "rq", 8);
    btf__add_field(t.b, "nr_running", t.u32, 0, 0);
    (void)rq;
    Btf no_clock(t.b);
    CHECK_THROWS_WITH_AS(monitor::resolve_offsets(no_clock), doctest::Contains("clock"), Error);
    // sched_domain with only some newidle members: none of them are used
    Synth u;
    int rq2 = btf__add_struct(u.b, "rq", 24);
    btf__add_field(u.b, "nr_running", u.u32, 0, 0);
    btf__add_field(u.b, "clock", u.u64, 64, 0);
    btf__add_field(u.b, "sd", u.u64, 128, 0);
    btf__add_struct(u.b, "sched_domain", 64);
    const char *f[] = {"parent", "level", "flags", "span_weight", "balance_interval", "nr_balance_failed",
                       "max_newidle_lb_cost", "newidle_call", "newidle_success"};
    for (int i = 0; i < 9; i++) btf__add_field(u.b, f[i], u.u64, 64 * i, 0);
    (void)rq2;
    auto o = monitor::resolve_offsets(Btf(u.b));
    REQUIRE(o.domain);
    CHECK_FALSE(o.domain->newidle);
    CHECK_FALSE(o.domain->name);
    CHECK(o.domain->max_newidle_lb_cost == 48);
    CHECK_FALSE(o.schedstat);
    CHECK_FALSE(o.idr);
}

TEST_CASE("IKCONFIG and CONFIG_HZ") {
    std::string cfg = "#\n# comment\nCONFIG_HZ_1000=y\n  CONFIG_HZ=300  \n# CONFIG_FOO is not set\nCONFIG_S=\"x y\"\n";
    std::string image = std::string("junk\0junk", 9) + "IKCFG_ST" + gzip(cfg) + "IKCFG_ED" + "tail";
    auto got = extract_ikconfig(image);
    REQUIRE(got);
    CHECK(*got == cfg);
    CHECK(config_value(cfg, "CONFIG_HZ") == "300");           // not CONFIG_HZ_1000
    CHECK(config_value(cfg, "CONFIG_HZ_1000") == "y");
    CHECK_FALSE(config_value(cfg, "CONFIG_FOO"));
    CHECK(config_value(cfg, "CONFIG_S") == "\"x y\"");
    CHECK_FALSE(extract_ikconfig("no marker here"));
    CHECK_FALSE(extract_ikconfig(std::string("IKCFG_ST") + "not gzip at all"));
    CHECK(resolve_hz(100u, nullptr).hz == 100);
    CHECK(resolve_hz(100u, nullptr).source == "explicit");
}

TEST_CASE("CONFIG_HZ of the fixture comes from its IKCONFIG") {
    NEED_FIXTURE();
    ElfSymbols e = ElfSymbols::load(vmlinux);
    HzResult hz = resolve_hz(std::nullopt, &e);
    CHECK(hz.hz == 1000);
    CHECK(hz.source == "ikconfig");
}
