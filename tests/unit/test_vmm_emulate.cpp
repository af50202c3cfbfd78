// Unit tests for libktstr/vmm userspace emulation of refused instructions and
// guest page walks (host-quirk layer), and quirk detection modes.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "ktstr/kvm.h"
#include "ktstr/x86.h"

using namespace ktstr;
using namespace ktstr::vmm;

namespace {

// 1 MiB of fake guest physical memory.
struct FakeRam {
    std::vector<uint8_t> bytes = std::vector<uint8_t>(1 << 20, 0);
    GuestMemoryAccess access() {
        GuestMemoryAccess m;
        m.read = [this](uint64_t gpa, void *buf, size_t len) {
            if (gpa + len > bytes.size()) return false;
            std::memcpy(buf, bytes.data() + gpa, len);
            return true;
        };
        m.write = [this](uint64_t gpa, const void *buf, size_t len) {
            if (gpa + len > bytes.size()) return false;
            std::memcpy(bytes.data() + gpa, buf, len);
            return true;
        };
        return m;
    }
    void put64(uint64_t gpa, uint64_t v) { std::memcpy(bytes.data() + gpa, &v, 8); }
};

kvm_sregs paging_off() { return kvm_sregs{}; }

EmulationOutcome run(std::vector<uint8_t> code, kvm_regs &r, FakeRam &ram, const kvm_sregs &s = paging_off()) {
    return emulate_refused_instruction(code.data(), code.size(), r, s, ram.access());
}

} // namespace

TEST_CASE("clac / stac") {
    FakeRam ram;
    kvm_regs r{};
    r.rip = 0x1000;
    r.rflags = 0x40202;   // AC | IF | 2
    auto o = run({0x0F, 0x01, 0xCA, 0x90}, r, ram);
    CHECK(o.kind == EmulationOutcome::Kind::handled);
    CHECK(o.name == "clac");
    CHECK(o.length == 3);
    CHECK(r.rip == 0x1003);
    CHECK(r.rflags == 0x202);
    o = run({0x0F, 0x01, 0xCB}, r, ram);
    CHECK(o.name == "stac");
    CHECK(r.rflags == 0x40202);
    CHECK(r.rip == 0x1006);
}

TEST_CASE("int3 asks for #BP after advancing RIP") {
    FakeRam ram;
    kvm_regs r{};
    r.rip = 0x2000;
    auto o = run({0xCC}, r, ram);
    CHECK(o.kind == EmulationOutcome::Kind::inject_breakpoint);
    CHECK(r.rip == 0x2001);
}

TEST_CASE("popcnt / lzcnt / tzcnt, register forms") {
    FakeRam ram;
    kvm_regs r{};
    r.rip = 0x1000;
    r.rbx = 0xF0F0'0000'0000'00FFull;
    r.rflags = 0x2 | 0x1 | 0x40;   // CF, ZF set before
    // popcnt rax, rbx: F3 48 0F B8 C3
    auto o = run({0xF3, 0x48, 0x0F, 0xB8, 0xC3}, r, ram);
    CHECK(o.kind == EmulationOutcome::Kind::handled);
    CHECK(o.name == "popcnt");
    CHECK(r.rax == 16);
    CHECK(r.rflags == 0x2);
    CHECK(r.rip == 0x1005);
    // popcnt eax, ebx (32-bit: upper half of rbx ignored, result zero-extends)
    r.rax = ~0ull;
    run({0xF3, 0x0F, 0xB8, 0xC3}, r, ram);
    CHECK(r.rax == 8);
    // popcnt r9d, ecx with ecx = 0 -> ZF
    r.rcx = 0;
    run({0xF3, 0x44, 0x0F, 0xB8, 0xC9}, r, ram);
    CHECK(r.r9 == 0);
    CHECK((r.rflags & 0x40) != 0);
    // tzcnt rdx, rbx = 0 (lowest bit set)
    run({0xF3, 0x48, 0x0F, 0xBC, 0xD3}, r, ram);
    CHECK(r.rdx == 0);
    CHECK((r.rflags & 0x40) != 0);   // ZF: result 0
    // lzcnt rdx, rbx = 0 (top bit set)
    run({0xF3, 0x48, 0x0F, 0xBD, 0xD3}, r, ram);
    CHECK(r.rdx == 0);
    // lzcnt ecx, ebx: 0x000000FF -> 24
    run({0xF3, 0x0F, 0xBD, 0xCB}, r, ram);
    CHECK(r.rcx == 24);
    // tzcnt of 0 -> operand size, CF
    r.rsi = 0;
    run({0xF3, 0x0F, 0xBC, 0xC6}, r, ram);
    CHECK(r.rax == 32);
    CHECK((r.rflags & 1) == 1);
    // 16-bit popcnt keeps the upper bits of the destination
    r.rax = 0xAAAA'0000ull;
    r.rbx = 0x7;
    run({0x66, 0xF3, 0x0F, 0xB8, 0xC3}, r, ram);
    CHECK(r.rax == 0xAAAA'0003ull);
}

TEST_CASE("popcnt with memory operands: base+disp, SIB, RIP-relative, through page tables") {
    FakeRam ram;
    kvm_regs r{};
    r.rip = 0x1000;
    uint64_t v = 0x0101010101010101ull;
    std::memcpy(ram.bytes.data() + 0x5010, &v, 8);
    r.rdi = 0x5000;
    // popcnt rax, [rdi+0x10]: F3 48 0F B8 47 10
    auto o = run({0xF3, 0x48, 0x0F, 0xB8, 0x47, 0x10}, r, ram);
    REQUIRE(o.kind == EmulationOutcome::Kind::handled);
    CHECK(r.rax == 8);
    CHECK(r.rip == 0x1006);
    // popcnt rax, [rdi + rcx*8]: F3 48 0F B8 04 CF, rcx = 2
    r.rcx = 2;
    run({0xF3, 0x48, 0x0F, 0xB8, 0x04, 0xCF}, r, ram);
    CHECK(r.rax == 8);
    // popcnt eax, [rip + 0x4000]: relative to the next instruction (0x1008)
    r.rip = 0x1000;
    uint32_t w = 0xFFFF;
    std::memcpy(ram.bytes.data() + 0x1008 + 0x4000, &w, 4);
    run({0xF3, 0x0F, 0xB8, 0x05, 0x00, 0x40, 0x00, 0x00}, r, ram);
    CHECK(r.rax == 16);
    CHECK(r.rip == 0x1008);

    // With paging: virtual 0xFFFFFFFF80005000 -> physical 0x7000 (4 KiB page).
    FakeRam pt;
    const uint64_t va = 0xFFFFFFFF80005000ull;
    pt.put64(0x1000 + ((va >> 39) & 511) * 8, 0x2000 | 3);
    pt.put64(0x2000 + ((va >> 30) & 511) * 8, 0x3000 | 3);
    pt.put64(0x3000 + ((va >> 21) & 511) * 8, 0x4000 | 3);
    pt.put64(0x4000 + ((va >> 12) & 511) * 8, 0x7000 | 3);
    pt.put64(0x7008, 0x3);
    kvm_sregs s{};
    s.cr0 = 0x80000001;
    s.cr3 = 0x1000;
    s.cr4 = 0x20;
    auto phys = guest_virt_to_phys(pt.access(), s, va + 8);
    REQUIRE(phys);
    CHECK(*phys == 0x7008);
    CHECK_FALSE(guest_virt_to_phys(pt.access(), s, 0x1234000));
    kvm_regs pr{};
    pr.rbx = va;
    run({0xF3, 0x48, 0x0F, 0xB8, 0x43, 0x08}, pr, pt, s);   // popcnt rax, [rbx+8]
    CHECK(pr.rax == 2);
    // gs: prefix adds the GS base.
    s.gs.base = va;
    kvm_regs gr{};
    run({0x65, 0xF3, 0x48, 0x0F, 0xB8, 0x04, 0x25, 0x08, 0, 0, 0}, gr, pt, s);   // popcnt rax, gs:[8]
    CHECK(gr.rax == 2);
    // A 2 MiB page.
    FakeRam big;
    big.put64(0x1000, 0x2000 | 3);
    big.put64(0x2000, 0x3000 | 3);
    big.put64(0x3000 + 1 * 8, 0x200000 | 0x83);
    kvm_sregs bs{};
    bs.cr0 = 0x80000001;
    bs.cr3 = 0x1000;
    auto p2 = guest_virt_to_phys(big.access(), bs, 0x212345);
    REQUIRE(p2);
    CHECK(*p2 == 0x212345);
}

TEST_CASE("unknown instructions are left alone") {
    FakeRam ram;
    kvm_regs r{};
    r.rip = 0x1000;
    kvm_regs before = r;
    auto o = run({0x0F, 0xC7, 0x0E}, r, ram);   // cmpxchg8b: not emulated
    CHECK(o.kind == EmulationOutcome::Kind::unknown);
    CHECK(std::memcmp(&r, &before, sizeof r) == 0);
    o = run({0xF3}, r, ram);   // truncated
    CHECK(o.kind == EmulationOutcome::Kind::unknown);
}

TEST_CASE("host quirk modes") {
    HostQuirks off = detect_host_quirks(QuirkMode::off);
    CHECK_FALSE(off.emulated);
    CHECK_FALSE(off.emulate_refused);
    CHECK_FALSE(off.noxsave);
    HostQuirks on = detect_host_quirks(QuirkMode::on);
    CHECK(on.emulated);
    CHECK(on.noxsave);
    std::string masks;
    for (auto &m : on.cpuid_masks) masks += cat(m.name, "=", m.function, ".", m.index, ":", m.bit, " ");
    CHECK(masks == "cx16=1.0:13 smap=7.0:20 popcnt=1.0:23 ");
    CHECK(off.cpuid_masks.empty());
    CHECK(on.emulate_refused);
    HostQuirks autod = detect_host_quirks(QuirkMode::auto_detect);
    CHECK_FALSE(autod.detection.empty());
    CHECK(autod.emulate_refused);
    CHECK(autod.noxsave == autod.emulated);
    CHECK(autod.cpuid_masks.empty() == !autod.emulated);   // hardware KVM: the guest sees every feature
}

TEST_CASE("KVM topology limit: APIC ids above 254 are rejected before any KVM call") {
    CHECK_NOTHROW(validate_kvm_topology(parse_topology("1n15l8c2t")));   // max APIC 239
    CHECK_THROWS_WITH_AS(validate_kvm_topology(parse_topology("1n14l9c2t")), doctest::Contains("433 exceeds 254"), Error);
}
