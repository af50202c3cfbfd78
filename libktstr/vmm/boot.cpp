// libktstr/vmm: x86 boot: memory layout, e820, kernel images, zero page,
// boot GDT and identity page tables.
#include "ktstr/x86.h"

#include <algorithm>

#include <cerrno>
#include <cstring>

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "ktstr/util.h"

namespace ktstr::vmm {

using namespace le;

// ---- memory layout -------------------------------------------------------------

MemoryLayout plan_memory(const Topology &topo, uint64_t mem_mb, uint64_t shm_size) {
    if (mem_mb == 0) fail(ErrorKind::usage, "memory: 0 MiB is not a machine (give --memory in MiB, e.g. 512)");
    const uint64_t MiB = 1 << 20;
    MemoryLayout m;
    m.mem_size = mem_mb * MiB;
    std::vector<uint64_t> node_mb = topo.node_memory_mb(mem_mb);
    uint64_t sum = 0;
    for (uint64_t n : node_mb) sum += n;
    if (sum != mem_mb)
        fail(ErrorKind::usage, "memory: the topology's nodes hold ", sum, " MiB but the machine has ", mem_mb, " MiB");
    for (uint32_t n = 0; n < node_mb.size(); ++n)
        if (node_mb[n] == 0 && topo.llcs_of_node(n) > 0)
            fail(ErrorKind::usage, "memory: ", mem_mb, " MiB over ", node_mb.size(), " NUMA nodes leaves node ", n,
                 " (which has CPUs) without memory");

    // RAM ranges in GPA order.
    struct Range { uint64_t gpa, size; };
    std::vector<Range> ranges;
    uint64_t low = std::min(m.mem_size, LOW_RAM_LIMIT);
    ranges.push_back({0, low});
    m.low_end = low;
    if (m.mem_size > LOW_RAM_LIMIT) {
        ranges.push_back({HIGH_RAM_GPA, m.mem_size - LOW_RAM_LIMIT});
        m.high_end = HIGH_RAM_GPA + (m.mem_size - LOW_RAM_LIMIT);
    }
    // Lay the nodes over the RAM bytes in order; a node crossing 3 GiB becomes two regions.
    size_t r = 0;
    uint64_t used_in_range = 0, ram_offset = 0;
    for (uint32_t n = 0; n < node_mb.size(); ++n) {
        uint64_t left = node_mb[n] * MiB;
        while (left > 0) {
            uint64_t take = std::min(left, ranges[r].size - used_in_range);
            m.regions.push_back({ranges[r].gpa + used_in_range, take, ram_offset, n});
            left -= take;
            used_in_range += take;
            ram_offset += take;
            if (used_in_range == ranges[r].size && r + 1 < ranges.size()) {
                ++r;
                used_in_range = 0;
            }
        }
    }

    if (shm_size > 0) {
        if (shm_size < 40) fail(ErrorKind::usage, "shared memory region of ", shm_size, " bytes: at least 40 needed");
        if (shm_size % 4096)
            fail(ErrorKind::usage, "shared memory region size 0x", std::hex, shm_size, " is not a multiple of 4 KiB");
        uint64_t top_range = m.high_end ? m.high_end - HIGH_RAM_GPA : m.low_end;
        // It must sit inside the top RAM range and leave the kernel room to live.
        if (shm_size >= top_range || shm_size + 64 * MiB > m.mem_size)
            fail(ErrorKind::usage, "shared memory region of ", shm_size / MiB, " MiB does not fit in ", mem_mb,
                 " MiB of RAM (it needs 64 MiB of ordinary RAM beside it, inside the top RAM range)");
        m.shm_size = shm_size;
        m.shm_base = (m.high_end ? m.high_end : m.low_end) - shm_size;
    }
    return m;
}

// ---- e820 ----------------------------------------------------------------------

std::vector<E820Entry> e820_table(const MemoryLayout &m) {
    std::vector<E820Entry> out;
    out.push_back({0, EBDA_GPA, E820_RAM});
    uint64_t low_usable = m.low_end, high_usable = m.high_end;
    if (m.shm_size) (m.high_end ? high_usable : low_usable) -= m.shm_size;
    if (low_usable > HIGH_MEMORY_GPA) out.push_back({HIGH_MEMORY_GPA, low_usable - HIGH_MEMORY_GPA, E820_RAM});
    if (m.high_end && high_usable > HIGH_RAM_GPA) out.push_back({HIGH_RAM_GPA, high_usable - HIGH_RAM_GPA, E820_RAM});
    if (m.shm_size) out.push_back({m.shm_base, m.shm_size, E820_RESERVED});
    return out;
}

// ---- kernel images ---------------------------------------------------------------

namespace {

BootImage parse_elf(BootImage k) {
    const std::string &d = k.data;
    auto bad = [&](const std::string &why) { fail(ErrorKind::input, k.path, ": ELF kernel: ", why); };
    if (d.size() < sizeof(Elf64_Ehdr)) bad("file too short for an ELF header");
    Elf64_Ehdr eh;
    std::memcpy(&eh, d.data(), sizeof eh);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) bad("not ELF64 (a 64-bit vmlinux is needed)");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) bad("not little-endian");
    if (eh.e_machine != EM_X86_64) bad(cat("e_machine ", eh.e_machine, " is not x86_64 (62)"));
    if (eh.e_phentsize != sizeof(Elf64_Phdr)) bad("unexpected program header size");
    if (eh.e_phoff > d.size() || uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > d.size() - eh.e_phoff)
        bad("program headers lie outside the file");
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, d.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_offset > k.file_size || ph.p_filesz > k.file_size - ph.p_offset)
            bad(cat("segment ", i, " lies outside the file"));
        if (ph.p_memsz < ph.p_filesz) bad(cat("segment ", i, " has p_memsz < p_filesz"));
        if (ph.p_paddr >= LOW_RAM_LIMIT || ph.p_memsz > LOW_RAM_LIMIT - ph.p_paddr)
            bad(cat("segment ", i, " at physical 0x", std::hex, ph.p_paddr, " is not below 3 GiB"));
        k.segments.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
        k.end = std::max(k.end, ph.p_paddr + ph.p_memsz);
    }
    if (k.segments.empty()) bad("no PT_LOAD segment");
    k.entry = eh.e_entry;
    // A vmlinux links its entry at the kernel's virtual address; boot the physical one.
    if (k.entry >= 0xFFFFFFFF80000000ull) k.entry -= 0xFFFFFFFF80000000ull;
    bool inside = false;
    for (auto &s : k.segments) inside |= k.entry >= s.gpa && k.entry < s.gpa + s.mem_size;
    if (!inside) bad(cat("entry point 0x", std::hex, eh.e_entry, " is not inside a loaded segment"));
    k.kind = BootImage::Kind::elf;
    k.cmdline_max = 2047;   // COMMAND_LINE_SIZE - 1 on x86
    return k;
}

BootImage parse_bzimage(BootImage k) {
    const std::string &d = k.data;
    auto bad = [&](const std::string &why) { fail(ErrorKind::input, k.path, ": bzImage: ", why); };
    if (d.size() < 0x1000) bad("file too short");
    const uint8_t *p = reinterpret_cast<const uint8_t *>(d.data());
    if (get16(p + 0x1FE) != 0xAA55) bad("no boot signature 0xAA55 at 0x1FE");
    if (get32(p + 0x202) != 0x53726448) bad("no \"HdrS\" magic at 0x202");
    k.protocol = get16(p + 0x206);
    if (k.protocol < 0x20C)
        bad(cat("boot protocol ", k.protocol >> 8, ".", k.protocol & 0xFF, " is too old (2.12 or later needed)"));
    if (!(p[0x211] & 1)) bad("loadflags bit LOADED_HIGH is clear (not a bzImage)");
    if (!(get16(p + 0x236) & 1)) bad("xloadflags bit XLF_KERNEL_64 is clear (no 64-bit entry point)");
    uint32_t setup_sects = p[0x1F1] ? p[0x1F1] : 4;
    uint64_t payload = uint64_t(setup_sects + 1) * 512;
    if (payload >= k.file_size) bad("setup_sects points past the end of the file");
    k.setup_header.assign(d.data() + 0x1F1, 0x26C - 0x1F1);
    uint32_t init_size = get32(p + 0x260);
    k.segments.push_back({HIGH_MEMORY_GPA, payload, k.file_size - payload, k.file_size - payload});
    k.entry = BZIMAGE_ENTRY_GPA;
    // The decompressor runs from 1 MiB and unpacks to 16 MiB (nokaslr): the
    // kernel then needs [16 MiB, 16 MiB + init_size).
    k.end = std::max<uint64_t>(HIGH_MEMORY_GPA + (k.file_size - payload), KERNEL_LOAD_GPA + init_size);
    uint32_t cmdline_size = get32(p + 0x238);
    k.cmdline_max = cmdline_size ? std::min<uint32_t>(cmdline_size, 2047) : 255;
    k.initrd_addr_max = get32(p + 0x22C);
    k.kind = BootImage::Kind::bzimage;
    return k;
}

} // namespace

BootImage parse_boot_image(std::string data, const std::string &path, uint64_t file_size) {
    BootImage k;
    k.path = path;
    k.data = std::move(data);
    k.file_size = file_size ? file_size : k.data.size();
    if (k.data.size() >= 4 && std::memcmp(k.data.data(), ELFMAG, SELFMAG) == 0) return parse_elf(std::move(k));
    if (k.data.size() >= 0x206 && std::memcmp(k.data.data() + 0x202, "HdrS", 4) == 0) return parse_bzimage(std::move(k));
    fail(ErrorKind::input, path, ": not a kernel image (neither an ELF vmlinux nor a bzImage with \"HdrS\" at 0x202)");
}

BootImage load_boot_image(const std::string &path) {
    // Only the headers are read here (64 KiB covers the bzImage setup header
    // and the ELF program headers); the segments go straight from the file
    // into guest RAM (GuestRam::load_file), so a 55 MB vmlinux is never held
    // in memory twice.
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail_errno(ErrorKind::input, cat("kernel ", path));
    struct stat st;
    if (fstat(fd.get(), &st) < 0) fail_errno(ErrorKind::input, cat("kernel ", path));
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, "kernel ", path, ": not a regular file");
    std::string head(std::min<uint64_t>(st.st_size, 64 * 1024), '\0');
    if (read_full(fd.get(), head.data(), head.size()) != head.size())
        fail(ErrorKind::input, "kernel ", path, ": short read");
    return parse_boot_image(std::move(head), path, uint64_t(st.st_size));
}

uint64_t place_initrd(const BootImage &k, const MemoryLayout &m, uint64_t initrd_size) {
    uint64_t low_usable = m.low_end - (m.high_end ? 0 : m.shm_size);
    uint64_t limit = std::min<uint64_t>(low_usable, k.initrd_addr_max + 1);
    if (INITRD_GPA >= k.end && INITRD_GPA + initrd_size <= limit) return INITRD_GPA;
    if (initrd_size <= limit) {
        uint64_t top = (limit - initrd_size) & ~uint64_t(0xFFF);
        if (top >= k.end) return top;
    }
    fail(ErrorKind::usage, "initramfs of ", (initrd_size + (1 << 20) - 1) >> 20, " MiB does not fit between the kernel (ends at ",
         k.end >> 20, " MiB) and the end of low RAM (", limit >> 20, " MiB): give the guest more memory");
}

// ---- zero page ---------------------------------------------------------------------

std::vector<uint8_t> build_boot_params(const BootParamsInput &in) {
    std::vector<uint8_t> bp(4096, 0);
    if (in.kernel && !in.kernel->setup_header.empty()) put_bytes(bp, 0x1F1, in.kernel->setup_header);
    // Header fields a loader must (re)write, for bzImage and ELF alike.
    put16(bp, 0x1FE, 0xAA55);         // boot_flag
    put32(bp, 0x202, 0x53726448);     // "HdrS"
    if (!in.kernel || in.kernel->setup_header.empty()) put16(bp, 0x206, 0x020F);  // version we speak
    put8(bp, 0x210, 0xFF);            // type_of_loader: undefined
    put8(bp, 0x211, bp[0x211] | 0x01);  // loadflags: LOADED_HIGH
    put32(bp, 0x214, uint32_t(HIGH_MEMORY_GPA));  // code32_start
    put32(bp, 0x218, uint32_t(in.initrd_gpa));    // ramdisk_image
    put32(bp, 0x21C, uint32_t(in.initrd_size));   // ramdisk_size
    put32(bp, 0x228, uint32_t(CMDLINE_GPA));      // cmd_line_ptr
    put32(bp, 0x230, uint32_t(KERNEL_LOAD_GPA));  // kernel_alignment
    put32(bp, 0x238, in.cmdline_len);             // cmdline_size
    put64(bp, 0x070, ACPI_GPA);                   // acpi_rsdp_addr
    if (in.e820.size() > 128) fail(ErrorKind::input, "e820 table has ", in.e820.size(), " entries (at most 128)");
    put8(bp, 0x1E8, uint8_t(in.e820.size()));     // e820_entries
    for (size_t i = 0; i < in.e820.size(); ++i) {
        size_t off = 0x2D0 + 20 * i;
        put64(bp, off, in.e820[i].addr);
        put64(bp, off + 8, in.e820[i].size);
        put32(bp, off + 16, in.e820[i].type);
    }
    return bp;
}

// ---- GDT and page tables --------------------------------------------------------------

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
    return ((uint64_t(base) & 0xFF000000u) << 32) | ((uint64_t(flags) & 0xF0FF) << 40) |
           ((uint64_t(limit) & 0xF0000) << 32) | ((uint64_t(base) & 0xFFFFFF) << 16) | (uint64_t(limit) & 0xFFFF);
}

std::array<uint64_t, 4> boot_gdt() {
    return {0, gdt_entry(0xA09B, 0, 0xFFFFF), gdt_entry(0xC093, 0, 0xFFFFF), gdt_entry(0x808B, 0, 0xFFFFF)};
}

kvm_segment segment_from_descriptor(uint64_t d, uint16_t selector) {
    kvm_segment s{};
    s.base = ((d >> 16) & 0xFFFFFF) | (((d >> 56) & 0xFF) << 24);
    uint32_t limit = uint32_t((d & 0xFFFF) | (((d >> 48) & 0xF) << 16));
    s.g = (d >> 55) & 1;
    s.limit = s.g ? (limit << 12) | 0xFFF : limit;
    s.selector = selector;
    s.type = (d >> 40) & 0xF;
    s.s = (d >> 44) & 1;
    s.dpl = (d >> 45) & 3;
    s.present = (d >> 47) & 1;
    s.avl = (d >> 52) & 1;
    s.l = (d >> 53) & 1;
    s.db = (d >> 54) & 1;
    s.unusable = !s.present;
    return s;
}

std::vector<uint8_t> identity_page_tables() {
    std::vector<uint8_t> pt(3 * 4096, 0);
    put64(pt, 0, PDPT_GPA | 0x3);                 // PML4[0] -> PDPT, present+writable
    put64(pt, 0x1000, PD_GPA | 0x3);              // PDPT[0] -> PD
    for (uint64_t i = 0; i < 512; ++i) put64(pt, 0x2000 + 8 * i, (i << 21) | 0x83);  // 2 MiB pages
    return pt;
}

} // namespace ktstr::vmm
