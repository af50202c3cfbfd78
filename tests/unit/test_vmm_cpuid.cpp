// Unit tests for libktstr/vmm per-vCPU CPUID patching (vmm.md sections 3.3, 16).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "ktstr/x86.h"

using namespace ktstr;
using namespace ktstr::vmm;

namespace {

kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d, bool indexed = false) {
    kvm_cpuid_entry2 e{};
    e.function = fn;
    e.index = idx;
    e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    e.eax = a;
    e.ebx = b;
    e.ecx = c;
    e.edx = d;
    return e;
}

// A host CPUID as KVM_GET_SUPPORTED_CPUID reports it (values picked to make
// every untouched bit visible).
std::vector<kvm_cpuid_entry2> host(const char *vendor) {
    uint32_t v[3];
    std::memcpy(v, vendor, 12);   // ebx, edx, ecx order: "Genu" "ineI" "ntel"
    std::vector<kvm_cpuid_entry2> h;
    h.push_back(leaf(0, 0, 0x1F, v[0], v[2], v[1]));
    h.push_back(leaf(1, 0, 0x000A0F12, 0xAABB0800, 0x80002001 | (1u << 13), 0x078BFBFF & ~(1u << 28)));
    // Cache leaves: L1d (level 1, type 1), L2 (level 2), L3 (level 3), terminator.
    for (uint32_t fn : {0x4u, 0x8000001Du}) {
        h.push_back(leaf(fn, 0, (1 << 5) | 1 | 0xFC000000u | 0x03FFC000u, 0x11, 0x22, 0x33, true));
        h.push_back(leaf(fn, 1, (2 << 5) | 3, 0, 0, 0, true));
        h.push_back(leaf(fn, 2, (3 << 5) | 3, 0, 0, 0, true));
        h.push_back(leaf(fn, 3, 0, 0, 0, 0, true));
    }
    h.push_back(leaf(0xA, 0, 0x07300805, 0xFF, 0, 0x603));
    for (uint32_t fn : {0xBu, 0x1Fu})
        for (uint32_t i = 0; i < 3; ++i) h.push_back(leaf(fn, i, 9, 9, 9, 9, true));
    h.push_back(leaf(0x40000000, 0, 0x40000001, 0x4B4D564B, 0x564B4D56, 0x4D));
    h.push_back(leaf(0x80000001, 0, 0, 0, 0x1, 0));
    h.push_back(leaf(0x80000008, 0, 0x3030, 0, 0xFFFF, 0));
    h.push_back(leaf(0x8000001E, 0, 1, 2, 3, 4));
    return h;
}

const kvm_cpuid_entry2 &get(const std::vector<kvm_cpuid_entry2> &c, uint32_t fn, uint32_t idx = 0) {
    const kvm_cpuid_entry2 *e = cpuid_find(c, fn, idx);
    REQUIRE(e != nullptr);
    return *e;
}

} // namespace

TEST_CASE("vendor detection") {
    CHECK(cpuid_vendor(host("GenuineIntel")) == CpuVendor::intel);
    CHECK(cpuid_vendor(host("AuthenticAMD")) == CpuVendor::amd);
    CHECK(cpuid_vendor(host("SomethingElse")) == CpuVendor::other);
}

TEST_CASE("CPUID 1l4c2t cpu 3 (vmm.md section 16), Intel") {
    Topology t = parse_topology("1n1l4c2t");
    auto c = cpuid_for_vcpu(host("GenuineIntel"), t, 3);
    CHECK(t.apic_id(3) == 3);
    const auto &l1 = get(c, 1);
    CHECK(l1.ebx == 0x03080800);                        // apic 3, 8 logical, CLFLUSH 8 kept
    CHECK(l1.edx == 0x178BFBFF);                         // HTT (bit 28) set
    CHECK(l1.ecx == (0x80002001u | (1u << 13)));         // untouched (hypervisor bit kept)
    CHECK(get(c, 0xB, 0).eax == 1);
    CHECK(get(c, 0xB, 0).ebx == 2);
    CHECK(get(c, 0xB, 0).ecx == 0x100);
    CHECK(get(c, 0xB, 0).edx == 3);
    CHECK(get(c, 0xB, 1).eax == 3);
    CHECK(get(c, 0xB, 1).ebx == 8);
    CHECK(get(c, 0xB, 1).ecx == 0x201);
    CHECK(get(c, 0xB, 1).edx == 3);
    CHECK(get(c, 0xB, 2).eax == 0);
    CHECK(get(c, 0xB, 2).ebx == 0);
    CHECK(get(c, 0xB, 2).ecx == 2);
    CHECK(get(c, 0xB, 2).edx == 3);
    CHECK(get(c, 0x1F, 1).eax == 3);
    // Leaf 4: L1/L2 shared by the SMT siblings (1), L3 by the LLC (7); cores field 3.
    CHECK(((get(c, 4, 0).eax >> 14) & 0xFFF) == 1);
    CHECK(((get(c, 4, 1).eax >> 14) & 0xFFF) == 1);
    CHECK(((get(c, 4, 2).eax >> 14) & 0xFFF) == 7);
    CHECK((get(c, 4, 2).eax >> 26) == 3);
    CHECK((get(c, 4, 2).eax & 0x3FFF) == ((3 << 5) | 3));   // low bits untouched
    CHECK(((get(c, 4, 3).eax >> 14) & 0xFFF) == 0);
    // 0x8000001D is AMD's; untouched on Intel.
    CHECK(get(c, 0x8000001D, 2).eax == ((3 << 5) | 3));
    CHECK(get(c, 0x80000008).ecx == 0x3007);
    const auto &pmu = get(c, 0xA);
    CHECK((pmu.eax | pmu.ebx | pmu.ecx | pmu.edx) == 0);
    CHECK(get(c, 0x80000001).ecx == 1);                  // AMD-only bits not set on Intel
    CHECK(get(c, 0x8000001E).eax == 1);                  // untouched on Intel
}

TEST_CASE("CPUID AMD leaves, 2n4l3c2t cpu 19") {
    Topology t = parse_topology("2n4l3c2t");
    // cpu 19: llc 3 (node 1), core 0, thread 1; apic 3<<3 | 0<<1 | 1 = 25.
    auto c = cpuid_for_vcpu(host("AuthenticAMD"), t, 19);
    CHECK(t.apic_id(19) == 25);
    CHECK((get(c, 1).ebx >> 24) == 25);
    CHECK(((get(c, 1).ebx >> 16) & 0xFF) == 6);
    CHECK(((get(c, 0x8000001D, 2).eax >> 14) & 0xFFF) == 7);   // (1 << core_shift 3) - 1
    CHECK((get(c, 0x8000001D, 2).eax >> 26) == 3);              // (1 << bits(3)) - 1
    CHECK(get(c, 4, 0).eax == ((1u << 5) | 1 | 0xFC000000u | 0x03FFC000u));   // Intel leaf untouched on AMD
    CHECK(get(c, 0x80000001).ecx == (1u | 2u | (1u << 22)));
    CHECK(get(c, 0x80000008).ecx == ((3u << 12) | 5));
    const auto &e = get(c, 0x8000001E);
    CHECK(e.eax == 25);
    CHECK(e.ebx == ((1u << 8) | 0));
    CHECK(e.ecx == (1u | (1u << 8)));
    CHECK(e.edx == 0);
    CHECK(get(c, 0xB, 1).edx == 25);
}

TEST_CASE("CPUID 0xB: both levels and the terminator even when KVM lists only 0xB.0 (an AMD host)") {
    // As KVM_GET_SUPPORTED_CPUID reported it on an AMD EPYC host: one all-zero
    // 0xB entry, no 0x1F.
    auto h = host("AuthenticAMD");
    h.erase(std::remove_if(h.begin(), h.end(), [](auto &e) { return e.function == 0xB || e.function == 0x1F; }), h.end());
    h.push_back(leaf(0xB, 0, 0, 0, 0, 1, true));
    Topology t = parse_topology("1n2l4c2t");
    auto c = cpuid_for_vcpu(h, t, 13);   // llc 1, core 2, thread 1: apic 8 | 4 | 1
    REQUIRE(t.apic_id(13) == 13);
    CHECK(std::count_if(c.begin(), c.end(), [](auto &e) { return e.function == 0xB; }) == 3);
    CHECK(cpuid_find(c, 0x1F, 0) == nullptr);   // not invented where the host has none
    const auto &smt = get(c, 0xB, 0), &core = get(c, 0xB, 1), &end = get(c, 0xB, 2);
    CHECK(smt.eax == 1);
    CHECK(smt.ebx == 2);
    CHECK(smt.ecx == 0x100);
    CHECK(core.eax == 3);
    CHECK(core.ebx == 8);
    CHECK(core.ecx == 0x201);
    CHECK(end.ebx == 0);
    CHECK(end.ecx == 2);   // level type 0: no more levels
    for (auto *e : {&smt, &core, &end}) {
        CHECK(e->edx == 13);
        CHECK(e->flags == KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
    }
    // A CPU whose basic leaves stop below 0xB gets none.
    auto low = h;
    for (auto &e : low)
        if (e.function == 0) e.eax = 0xA;
    auto c2 = cpuid_for_vcpu(low, t, 0);
    CHECK(cpuid_find(c2, 0xB, 1) == nullptr);
}

TEST_CASE("CPUID for one CPU, 1n1l1c1t") {
    Topology t = parse_topology("1n1l1c1t");
    auto c = cpuid_for_vcpu(host("GenuineIntel"), t, 0);
    CHECK(get(c, 1).ebx == 0x00010800);
    CHECK((get(c, 1).edx & (1u << 28)) == 0);
    CHECK(get(c, 0x80000008).ecx == 0);
    CHECK(get(c, 0xB, 0).eax == 0);
    CHECK(get(c, 0xB, 0).ebx == 1);
    CHECK(get(c, 0xB, 1).eax == 0);
    CHECK(get(c, 0xB, 1).ebx == 1);
    CHECK(((get(c, 4, 2).eax >> 14) & 0xFFF) == 0);
    CHECK((get(c, 4, 2).eax >> 26) == 0);
}

TEST_CASE("CPUID with x2APIC ids (1n14l9c2t cpu 251, apic 433)") {
    Topology t = parse_topology("1n14l9c2t");
    auto c = cpuid_for_vcpu(host("GenuineIntel"), t, 251);
    CHECK((get(c, 1).ebx >> 24) == (433 & 0xFF));
    CHECK(get(c, 0xB, 0).edx == 433);
    CHECK(get(c, 0xB, 1).eax == 5);
    CHECK(get(c, 0xB, 1).ebx == 18);
    CHECK(get(c, 0x1F, 2).edx == 433);
}

TEST_CASE("KVM signature leaf added when missing; feature masks") {
    auto h = host("GenuineIntel");
    std::erase_if(h, [](const kvm_cpuid_entry2 &e) { return e.function == 0x40000000; });
    auto c = cpuid_for_vcpu(h, parse_topology("1n1l1c1t"), 0);
    const auto &s = get(c, 0x40000000);
    char sig[13] = {};
    std::memcpy(sig, &s.ebx, 4);
    std::memcpy(sig + 4, &s.ecx, 4);
    std::memcpy(sig + 8, &s.edx, 4);
    CHECK(std::string(sig) == "KVMKVMKVM");
    CHECK(s.eax == 0x40000001);

    CHECK(cpuid_clear_bit(c, 1, CpuidReg::ecx, 13));     // CX16 was set
    CHECK((get(c, 1).ecx & (1u << 13)) == 0);
    CHECK_FALSE(cpuid_clear_bit(c, 1, CpuidReg::ecx, 13));
    // With a subleaf, only that subleaf: 0xB.1 keeps its bit when 0xB.0 loses it.
    CHECK(cpuid_clear_bit(c, 0xB, CpuidReg::ecx, 8, 0));
    CHECK((get(c, 0xB, 0).ecx & 0x100) == 0);
    CHECK((get(c, 0xB, 1).ecx & 0x200) != 0);
    CHECK_FALSE(cpuid_clear_bit(c, 0xB, CpuidReg::ecx, 8, 5));   // no such subleaf
}
