// libktstr/vmm: per-vCPU CPUID, patched so that the SMT/core/LLC layout the
// guest derives from CPUID agrees with the MADT/SRAT (vmm.md section 3.3).
#include <algorithm>
#include <cstring>

#include <cpuid.h>

#include "ktstr/x86.h"

namespace ktstr::vmm {

const kvm_cpuid_entry2 *cpuid_find(const std::vector<kvm_cpuid_entry2> &entries, uint32_t function, uint32_t index) {
    for (auto &e : entries)
        if (e.function == function && (e.index == index || !(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)))
            return &e;
    return nullptr;
}

CpuVendor cpuid_vendor(const std::vector<kvm_cpuid_entry2> &entries) {
    const kvm_cpuid_entry2 *l0 = cpuid_find(entries, 0);
    if (!l0) return CpuVendor::other;
    char v[13] = {};
    std::memcpy(v, &l0->ebx, 4);
    std::memcpy(v + 4, &l0->edx, 4);
    std::memcpy(v + 8, &l0->ecx, 4);
    if (!std::strcmp(v, "GenuineIntel")) return CpuVendor::intel;
    if (!std::strcmp(v, "AuthenticAMD") || !std::strcmp(v, "HygonGenuine")) return CpuVendor::amd;
    return CpuVendor::other;
}

bool cpuid_clear_bit(std::vector<kvm_cpuid_entry2> &entries, uint32_t function, CpuidReg reg, unsigned bit,
                     int64_t index) {
    bool was_set = false;
    for (auto &e : entries) {
        if (e.function != function || (index >= 0 && e.index != uint32_t(index))) continue;
        uint32_t *r = reg == CpuidReg::eax ? &e.eax : reg == CpuidReg::ebx ? &e.ebx : reg == CpuidReg::ecx ? &e.ecx : &e.edx;
        was_set |= (*r >> bit) & 1;
        *r &= ~(1u << bit);
    }
    return was_set;
}

namespace {

// EAX[25:14] (logical CPUs sharing the cache - 1) and EAX[31:26] (cores per package - 1)
// of a deterministic cache parameters leaf (0x4 Intel, 0x8000001D AMD).
void patch_cache_leaf(kvm_cpuid_entry2 &e, const Topology &t) {
    uint32_t level = (e.eax >> 5) & 7;
    uint32_t sharing = 0;
    if (level == 1 || level == 2) sharing = (1u << t.smt_shift()) - 1;
    else if (level == 3) sharing = (1u << t.core_shift()) - 1;
    uint32_t cores = (1u << topology_bits(t.cores_per_llc)) - 1;
    e.eax = (e.eax & 0x00003FFF) | ((sharing & 0xFFF) << 14) | ((cores & 0x3F) << 26);
}

// Extended topology (0xB, 0x1F): level 0 SMT, level 1 core (the LLC is the package).
void patch_topology_leaf(kvm_cpuid_entry2 &e, const Topology &t, uint32_t apic) {
    uint32_t tpl = t.cpus_per_llc();
    switch (e.index) {
    case 0: e.eax = t.smt_shift(); e.ebx = t.threads_per_core; e.ecx = 0x100; break;
    case 1: e.eax = t.core_shift(); e.ebx = tpl; e.ecx = 0x201; break;
    default: e.eax = 0; e.ebx = 0; e.ecx = e.index; break;
    }
    e.edx = apic;
}

} // namespace

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2> &supported, const Topology &t,
                                             uint32_t cpu) {
    std::vector<kvm_cpuid_entry2> out = supported;
    const CpuVendor vendor = cpuid_vendor(supported);
    const uint32_t apic = t.apic_id(cpu);
    const uint32_t tpl = t.cpus_per_llc();
    bool has_kvm_signature = false;
    for (auto &e : out) {
        switch (e.function) {
        case 0x1:
            e.ebx = (e.ebx & 0x0000FFFF) | (std::min<uint32_t>(tpl, 255) << 16) | ((apic & 0xFF) << 24);
            if (tpl > 1) e.edx |= 1u << 28;   // HTT: more than one logical CPU per package
            break;
        case 0x4:
            if (vendor != CpuVendor::amd) patch_cache_leaf(e, t);
            break;
        case 0x8000001D:
            if (vendor == CpuVendor::amd) patch_cache_leaf(e, t);
            break;
        case 0xB:
        case 0x1F:
            patch_topology_leaf(e, t, apic);
            break;
        case 0xA:
            e.eax = e.ebx = e.ecx = e.edx = 0;   // no PMU
            break;
        case 0x80000001:
            if (vendor == CpuVendor::amd && tpl > 1) e.ecx |= (1u << 1) | (1u << 22);   // CmpLegacy, TopoExt
            break;
        case 0x80000008:
            e.ecx = tpl > 1 ? (t.core_shift() << 12) | (tpl - 1) : 0;
            break;
        case 0x8000001E:
            if (vendor == CpuVendor::amd) {
                e.eax = apic;
                e.ebx = ((t.threads_per_core - 1) << 8) | (t.core_of_cpu(cpu) & 0xFF);
                e.ecx = t.node_of_cpu(cpu) | ((t.numa_nodes - 1) << 8);
                e.edx = 0;
            }
            break;
        case 0x40000000:
            has_kvm_signature = true;
            break;
        default: break;
        }
    }
    // The extended topology leaf needs its SMT and core levels and the
    // terminating invalid level whatever the host listed: KVM lists only 0xB.0
    // (all zero) when the host CPU has no such leaf (seen on an AMD host), and
    // patching what is there would leave the core level out.
    const kvm_cpuid_entry2 *leaf0 = cpuid_find(out, 0);
    const uint32_t max_basic = leaf0 ? leaf0->eax : 0;
    for (uint32_t fn : {0xBu, 0x1Fu}) {
        auto is_fn = [fn](const kvm_cpuid_entry2 &e) { return e.function == fn; };
        if (fn > max_basic) continue;                                              // beyond the CPU's leaves
        if (fn == 0x1F && std::none_of(out.begin(), out.end(), is_fn)) continue;   // 0x1F only where listed
        out.erase(std::remove_if(out.begin(), out.end(), is_fn), out.end());
        for (uint32_t level = 0; level < 3; ++level) {
            kvm_cpuid_entry2 e{};
            e.function = fn;
            e.index = level;
            e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
            patch_topology_leaf(e, t, apic);
            out.push_back(e);
        }
    }
    if (!has_kvm_signature) {
        kvm_cpuid_entry2 sig{};
        sig.function = 0x40000000;
        sig.eax = 0x40000001;
        sig.ebx = 0x4B4D564B;   // "KVMK"
        sig.ecx = 0x564B4D56;   // "VMKV"
        sig.edx = 0x4D;         // "M"
        out.push_back(sig);
    }
    return out;
}

std::vector<kvm_cpuid_entry2> host_cpuid_entries() {
    std::vector<kvm_cpuid_entry2> out;
    auto query = [&](uint32_t fn, uint32_t idx, bool indexed) {
        kvm_cpuid_entry2 e{};
        unsigned a, b, c, d;
        __cpuid_count(fn, idx, a, b, c, d);
        e.function = fn;
        e.index = idx;
        e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
        e.eax = a;
        e.ebx = b;
        e.ecx = c;
        e.edx = d;
        out.push_back(e);
        return e;
    };
    // Leaves with subleaves: how many to list.
    auto subleaves = [](uint32_t fn) -> uint32_t {
        switch (fn) {
        case 0x4: case 0x8000001D: return 8;   // cache levels (stop at type 0 below)
        case 0x7: case 0x14: case 0x17: case 0x18: return 2;
        case 0xB: case 0x1F: return 4;
        case 0xD: return 64;
        case 0xF: case 0x10: case 0x12: return 4;
        default: return 0;
        }
    };
    for (uint32_t base : {0u, 0x80000000u}) {
        unsigned max = __get_cpuid_max(base, nullptr);
        if (max < base || max > base + 0x40) continue;
        for (uint32_t fn = base; fn <= max; ++fn) {
            uint32_t n = subleaves(fn);
            if (n == 0) {
                query(fn, 0, false);
                continue;
            }
            for (uint32_t i = 0; i < n; ++i) {
                kvm_cpuid_entry2 e = query(fn, i, true);
                bool cache_leaf = fn == 0x4 || fn == 0x8000001D;
                if (cache_leaf && (e.eax & 0x1F) == 0) break;   // no more cache levels
            }
        }
    }
    for (auto &e : out) {
        switch (e.function) {
        case 0x1:
            e.ecx |= 1u << 31;                              // running under a hypervisor
            e.ecx &= ~((1u << 3) | (1u << 5) | (1u << 27));  // no MONITOR, VMX, OSXSAVE (KVM computes it)
            break;
        case 0x80000001:
            e.ecx &= ~((1u << 2) | (1u << 23));             // no SVM, no core performance counters
            break;
        case 0x6: e.eax = e.ebx = e.ecx = e.edx = 0; break;  // no thermal/power management
        default: break;
        }
    }
    // KVM's own leaves: signature, no paravirt features promised.
    kvm_cpuid_entry2 sig{};
    sig.function = 0x40000000;
    sig.eax = 0x40000001;
    sig.ebx = 0x4B4D564B;
    sig.ecx = 0x564B4D56;
    sig.edx = 0x4D;
    out.push_back(sig);
    kvm_cpuid_entry2 features{};
    features.function = 0x40000001;
    out.push_back(features);
    return out;
}

} // namespace ktstr::vmm
