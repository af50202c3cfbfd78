// libktstr/vmm: userspace emulation of the few instructions an emulated KVM
// refuses (clac/stac, int3, popcnt/lzcnt/tzcnt), and guest page walks.
// Decoding follows the Intel SDM volume 2 (prefixes, REX, ModRM, SIB).
#include <bit>
#include <cstring>

#include "ktstr/x86.h"

namespace ktstr::vmm {

std::optional<uint64_t> guest_virt_to_phys(const GuestMemoryAccess &mem, const kvm_sregs &s, uint64_t gva) {
    if (!(s.cr0 & 0x80000000u)) return gva;
    const bool la57 = s.cr4 & (1u << 12);
    uint64_t table = s.cr3 & 0x000FFFFFFFFFF000ull;
    const uint64_t ADDR = 0x000FFFFFFFFFF000ull;
    for (int level = la57 ? 5 : 4; level >= 1; --level) {
        unsigned shift = 12 + 9 * (level - 1);
        uint64_t entry = 0;
        if (!mem.read(table + ((gva >> shift) & 0x1FF) * 8, &entry, 8)) return std::nullopt;
        if (!(entry & 1)) return std::nullopt;
        if ((level == 2 || level == 3) && (entry & 0x80)) {   // 2 MiB / 1 GiB page
            uint64_t page_mask = (1ull << shift) - 1;
            return (entry & ADDR & ~page_mask) | (gva & page_mask);
        }
        table = entry & ADDR;
    }
    return table | (gva & 0xFFF);
}

namespace {

constexpr uint64_t RFLAGS_CF = 1u << 0, RFLAGS_PF = 1u << 2, RFLAGS_AF = 1u << 4, RFLAGS_ZF = 1u << 6,
                   RFLAGS_SF = 1u << 7, RFLAGS_OF = 1u << 11, RFLAGS_AC = 1u << 18;

__u64 &gpr(kvm_regs &r, unsigned n) {
    __u64 *regs[16] = {&r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp, &r.rsi, &r.rdi,
                          &r.r8,  &r.r9,  &r.r10, &r.r11, &r.r12, &r.r13, &r.r14, &r.r15};
    return *regs[n & 15];
}

struct Decoder {
    const uint8_t *code;
    size_t n, pos = 0;
    bool ok = true;
    uint8_t next() {
        if (pos >= n) { ok = false; return 0; }
        return code[pos++];
    }
    int32_t imm32() {
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= uint32_t(next()) << (8 * i);
        return int32_t(v);
    }
};

// r/m operand of a ModRM byte: a register number or a guest virtual address.
struct Operand {
    bool is_reg = false;
    unsigned reg = 0;
    uint64_t gva = 0;
};

} // namespace

EmulationOutcome emulate_refused_instruction(const uint8_t *code, size_t n, kvm_regs &regs, const kvm_sregs &sregs,
                                             const GuestMemoryAccess &mem) {
    EmulationOutcome out;
    Decoder d{code, n};
    bool opsize16 = false, rep = false;
    uint64_t seg_base = 0;
    uint8_t rex = 0, b = 0;
    // Legacy prefixes, then REX (must come last).
    for (;;) {
        b = d.next();
        if (!d.ok) return out;
        if (b == 0x66) opsize16 = true;
        else if (b == 0xF3) rep = true;
        else if (b == 0xF2 || b == 0x2E || b == 0x3E || b == 0x26 || b == 0x36) {}
        else if (b == 0x64) seg_base = sregs.fs.base;
        else if (b == 0x65) seg_base = sregs.gs.base;
        else break;
    }
    if ((b & 0xF0) == 0x40) {
        rex = b;
        b = d.next();
    }
    if (b == 0xCC && !rex) {
        out.kind = EmulationOutcome::Kind::inject_breakpoint;
        out.name = "int3";
        out.length = unsigned(d.pos);
        regs.rip += d.pos;
        return out;
    }
    if (b != 0x0F) return out;
    uint8_t op = d.next();
    if (op == 0x01) {
        uint8_t m = d.next();
        if (m == 0xCA || m == 0xCB) {   // clac / stac
            out.name = m == 0xCA ? "clac" : "stac";
            if (m == 0xCA) regs.rflags &= ~RFLAGS_AC;
            else regs.rflags |= RFLAGS_AC;
            out.kind = EmulationOutcome::Kind::handled;
            out.length = unsigned(d.pos);
            regs.rip += d.pos;
        }
        return out;
    }
    if (!rep || (op != 0xB8 && op != 0xBC && op != 0xBD)) return out;

    // popcnt / tzcnt / lzcnt r, r/m
    uint8_t modrm = d.next();
    unsigned mod = modrm >> 6, reg = ((modrm >> 3) & 7) | ((rex & 4) << 1), rm = modrm & 7;
    Operand src;
    if (mod == 3) {
        src.is_reg = true;
        src.reg = rm | ((rex & 1) << 3);
    } else {
        uint64_t addr = 0;
        bool rip_relative = false;
        if (rm == 4) {   // SIB
            uint8_t sib = d.next();
            unsigned scale = sib >> 6, index = ((sib >> 3) & 7) | ((rex & 2) << 2), base = (sib & 7) | ((rex & 1) << 3);
            if (index != 4) addr += gpr(regs, index) << scale;
            if ((base & 7) == 5 && mod == 0) addr += uint64_t(int64_t(d.imm32()));
            else addr += gpr(regs, base);
        } else if (rm == 5 && mod == 0) {
            rip_relative = true;
        } else {
            addr += gpr(regs, rm | ((rex & 1) << 3));
        }
        if (mod == 1) addr += uint64_t(int64_t(int8_t(d.next())));
        else if (mod == 2 || rip_relative) addr += uint64_t(int64_t(d.imm32()));
        if (rip_relative) addr += regs.rip + d.pos;   // relative to the next instruction
        src.gva = addr + seg_base;
    }
    if (!d.ok) return out;
    unsigned bits = (rex & 8) ? 64 : opsize16 ? 16 : 32;
    uint64_t value = 0;
    if (src.is_reg) {
        value = gpr(regs, src.reg);
    } else {
        unsigned bytes = bits / 8;
        for (unsigned i = 0; i < bytes;) {   // may cross a page
            uint64_t va = src.gva + i;
            auto pa = guest_virt_to_phys(mem, sregs, va);
            if (!pa) return out;
            unsigned chunk = std::min<unsigned>(bytes - i, unsigned(0x1000 - (va & 0xFFF)));
            uint8_t buf[8];
            if (!mem.read(*pa, buf, chunk)) return out;
            for (unsigned j = 0; j < chunk; ++j) value |= uint64_t(buf[j]) << (8 * (i + j));
            i += chunk;
        }
    }
    uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    value &= mask;
    uint64_t result = 0;
    uint64_t flags = regs.rflags & ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
    if (op == 0xB8) {
        out.name = "popcnt";
        result = unsigned(std::popcount(value));
        if (value == 0) flags |= RFLAGS_ZF;
    } else {
        if (op == 0xBC) {
            out.name = "tzcnt";
            result = value == 0 ? bits : unsigned(std::countr_zero(value));
        } else {
            out.name = "lzcnt";
            result = value == 0 ? bits : unsigned(std::countl_zero(value)) - (64 - bits);
        }
        if (value == 0) flags |= RFLAGS_CF;
        if (result == 0) flags |= RFLAGS_ZF;
        // SF, OF, AF, PF are undefined for tzcnt/lzcnt; leave them cleared.
    }
    __u64 &dst = gpr(regs, reg);
    if (bits == 16) dst = (dst & ~0xFFFFull) | result;
    else dst = result;   // 32-bit results zero-extend
    regs.rflags = flags;
    out.kind = EmulationOutcome::Kind::handled;
    out.length = unsigned(d.pos);
    regs.rip += d.pos;
    return out;
}

} // namespace ktstr::vmm
