// libktstr/kbuild: strip a vmlinux down to what booting and the monitor need
// (spec 2.9, with the rule: keep the loadable segments).
//
// A vmlinux built with DEBUG_INFO is mostly DWARF (hundreds of MB).  The
// monitor needs .symtab/.strtab, .BTF and .rodata (IKCONFIG); the KVM VMM can
// boot the ELF through its 64-bit entry, so every loadable segment and the
// program headers stay too.  We never renumber sections: dropped ones become
// empty SHT_NOBITS headers, so every st_shndx, sh_link and sh_info stays valid.
// The file is rewritten as: [0, end of the loaded part) verbatim, then the
// kept non-loaded sections (.symtab, .strtab, .shstrtab, ...), then the
// section header table.
#include "ktstr/kbuild.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::kbuild {

namespace {

constexpr uint32_t SHT_RELR_ = 19;
constexpr uint32_t SHT_CREL_ = 0x40000014;

// A bounds-checked view of a little-endian ELF64 file in memory.
struct Elf64View {
    const uint8_t *base = nullptr;
    size_t size = 0;
    const Elf64_Ehdr *eh = nullptr;
    const Elf64_Shdr *sh = nullptr;
    size_t shnum = 0;
    size_t shstrndx = 0;

    // Empty string on success, else what is wrong.
    std::string open(const uint8_t *data, size_t len) {
        base = data;
        size = len;
        if (len < sizeof(Elf64_Ehdr) || std::memcmp(data, ELFMAG, SELFMAG) != 0) return "not an ELF file";
        eh = reinterpret_cast<const Elf64_Ehdr *>(data);
        if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
            return "not a little-endian 64-bit ELF file";
        if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr)) return "no section header table";
        if (eh->e_shoff > len || len - eh->e_shoff < sizeof(Elf64_Shdr)) return "section header table out of bounds";
        sh = reinterpret_cast<const Elf64_Shdr *>(data + eh->e_shoff);
        shnum = eh->e_shnum ? eh->e_shnum : sh[0].sh_size;   // extended numbering
        shstrndx = eh->e_shstrndx == SHN_XINDEX ? sh[0].sh_link : eh->e_shstrndx;
        if (shnum == 0 || shnum > (len - eh->e_shoff) / sizeof(Elf64_Shdr)) return "section header table out of bounds";
        if (shstrndx >= shnum) return "bad section name table index";
        for (size_t i = 0; i < shnum; ++i)
            if (sh[i].sh_type != SHT_NOBITS && (sh[i].sh_offset > len || sh[i].sh_size > len - sh[i].sh_offset))
                return cat("section ", i, " out of bounds");
        if (eh->e_phnum && (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
                            eh->e_phnum > (len - eh->e_phoff) / sizeof(Elf64_Phdr)))
            return "program header table out of bounds";
        return "";
    }
    const Elf64_Phdr *ph(size_t i) const {
        return reinterpret_cast<const Elf64_Phdr *>(base + eh->e_phoff) + i;
    }
    std::string_view name(size_t i) const {
        const Elf64_Shdr &s = sh[shstrndx];
        if (sh[i].sh_name >= s.sh_size) return {};
        const char *p = reinterpret_cast<const char *>(base + s.sh_offset + sh[i].sh_name);
        return std::string_view(p, strnlen(p, s.sh_size - sh[i].sh_name));
    }
    std::optional<size_t> find(std::string_view n) const {
        for (size_t i = 0; i < shnum; ++i)
            if (name(i) == n) return i;
        return std::nullopt;
    }
    std::string_view bytes(size_t i) const {
        if (sh[i].sh_type == SHT_NOBITS) return {};
        return std::string_view(reinterpret_cast<const char *>(base + sh[i].sh_offset), sh[i].sh_size);
    }
    // Names of .symtab symbols present among `wanted`.
    size_t symbol_count() const {
        auto st = find(".symtab");
        return st ? sh[*st].sh_size / sizeof(Elf64_Sym) : 0;
    }
    bool has_symbol(std::string_view want) const {
        auto st = find(".symtab");
        if (!st || sh[*st].sh_link >= shnum) return false;
        std::string_view strs = bytes(sh[*st].sh_link);
        std::string_view syms = bytes(*st);
        const auto *s = reinterpret_cast<const Elf64_Sym *>(syms.data());
        for (size_t i = 0, n = syms.size() / sizeof(Elf64_Sym); i < n; ++i) {
            if (s[i].st_name >= strs.size() || s[i].st_shndx == SHN_UNDEF) continue;
            const char *p = strs.data() + s[i].st_name;
            if (std::string_view(p, strnlen(p, strs.size() - s[i].st_name)) == want) return true;
        }
        return false;
    }
};

struct MappedFile {
    unique_fd fd;
    Mapping map;
    size_t size = 0;
    mode_t mode = 0644;
};

MappedFile map_file(const std::string &path) {
    MappedFile f;
    f.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f.fd) fail_errno(ErrorKind::environment, "cannot open " + path);
    struct stat st{};
    if (::fstat(f.fd.get(), &st) != 0) fail_errno(ErrorKind::environment, "cannot stat " + path);
    f.size = static_cast<size_t>(st.st_size);
    f.mode = st.st_mode & 0777;
    if (f.size) f.map = Mapping::map_fd(f.fd.get(), f.size, PROT_READ);
    return f;
}

bool dropped_section(const Elf64View &v, size_t i) {
    const Elf64_Shdr &s = v.sh[i];
    if (i == 0 || i == v.shstrndx || (s.sh_flags & SHF_ALLOC)) return false;
    std::string_view n = v.name(i);
    if (starts_with(n, ".debug_") || starts_with(n, ".zdebug_") || n == ".comment" || n == ".gnu_debuglink")
        return true;
    // Relocations for the linker/relocs tool; nothing at run time reads them.
    return s.sh_type == SHT_REL || s.sh_type == SHT_RELA || s.sh_type == SHT_RELR_ || s.sh_type == SHT_CREL_;
}

uint64_t align_up(uint64_t v, uint64_t a) { return a > 1 ? (v + a - 1) / a * a : v; }

// The stripped image in memory (vmlinux without DWARF is tens of MB).
std::string rewrite(const Elf64View &v) {
    uint64_t prefix = sizeof(Elf64_Ehdr);
    auto extend = [&](uint64_t end) { prefix = std::max(prefix, end); };
    if (v.eh->e_phnum) extend(v.eh->e_phoff + uint64_t(v.eh->e_phnum) * sizeof(Elf64_Phdr));
    for (size_t i = 0; i < v.eh->e_phnum; ++i) extend(v.ph(i)->p_offset + v.ph(i)->p_filesz);
    for (size_t i = 0; i < v.shnum; ++i)
        if ((v.sh[i].sh_flags & SHF_ALLOC) && v.sh[i].sh_type != SHT_NOBITS) extend(v.sh[i].sh_offset + v.sh[i].sh_size);
    prefix = std::min<uint64_t>(prefix, v.size);

    std::string out(reinterpret_cast<const char *>(v.base), prefix);
    std::vector<Elf64_Shdr> shdrs(v.sh, v.sh + v.shnum);
    for (size_t i = 1; i < v.shnum; ++i) {
        Elf64_Shdr &s = shdrs[i];
        if (dropped_section(v, i)) {
            s.sh_type = SHT_NOBITS;
            s.sh_flags = 0;
            s.sh_offset = prefix;
            s.sh_size = 0;
            s.sh_link = 0;
            s.sh_info = 0;
            continue;
        }
        if (s.sh_type == SHT_NOBITS || s.sh_offset + s.sh_size <= prefix) continue;   // already in place
        uint64_t at = align_up(out.size(), s.sh_addralign);
        out.resize(at, '\0');
        out.append(reinterpret_cast<const char *>(v.base + s.sh_offset), s.sh_size);
        s.sh_offset = at;
    }
    uint64_t shoff = align_up(out.size(), 8);
    out.resize(shoff, '\0');
    out.append(reinterpret_cast<const char *>(shdrs.data()), shdrs.size() * sizeof(Elf64_Shdr));
    auto *eh = reinterpret_cast<Elf64_Ehdr *>(out.data());
    eh->e_shoff = shoff;
    return out;
}

std::string btf_problem(const std::string &path) {
    struct btf *b = btf__parse_elf(path.c_str(), nullptr);
    long err = libbpf_get_error(b);
    if (!b || err) return cat("BTF does not load (libbpf: ", std::strerror(err ? static_cast<int>(-err) : errno), ")");
    bool ok = btf__type_cnt(b) > 1;
    btf__free(b);
    return ok ? "" : "BTF has no types";
}

} // namespace

std::string check_vmlinux_for_monitor(const std::string &path) {
    MappedFile f = map_file(path);
    Elf64View v;
    if (std::string e = v.open(f.map.data(), f.size); !e.empty()) return path + ": " + e;
    std::vector<std::string> missing;
    if (!v.symbol_count()) missing.push_back("no .symtab");
    else {
        std::vector<const char *> syms = {"runqueues", "prog_idr"};
        syms.push_back(v.eh->e_machine == EM_AARCH64 ? "swapper_pg_dir" : "init_top_pgt");
        for (const char *s : syms)
            if (!v.has_symbol(s)) missing.push_back(cat("symbol ", s, " missing"));
    }
    if (!v.find(".BTF")) missing.push_back("no .BTF section");
    else if (std::string p = btf_problem(path); !p.empty()) missing.push_back(p);
    auto ro = v.find(".rodata");
    if (!ro || v.bytes(*ro).find("IKCFG_ST") == std::string_view::npos)
        missing.push_back("IKCONFIG blob (IKCFG_ST) not in .rodata");
    std::string s;
    for (auto &m : missing) s += (s.empty() ? "" : "; ") + m;
    return s;
}

StripResult strip_vmlinux(const std::string &in, const std::string &out) {
    StripResult r;
    auto raw_copy = [&](const std::string &why) {
        std::error_code ec;
        std::filesystem::remove(out, ec);
        std::filesystem::copy_file(in, out, ec);
        if (ec) fail(ErrorKind::environment, "cannot copy ", in, " to ", out, ": ", ec.message());
        r.stripped = false;
        r.warning = why;
        r.output_size = r.input_size;
        return r;
    };
    MappedFile f = map_file(in);
    r.input_size = f.size;
    Elf64View v;
    if (std::string e = v.open(f.map.data(), f.size); !e.empty()) return raw_copy(cat(in, ": ", e));
    std::string image = rewrite(v);
    write_file_atomic(out, image, f.mode);
    r.output_size = image.size();

    // Accept only when the result still serves the monitor as well as the input did.
    Elf64View w;
    std::string e = w.open(reinterpret_cast<const uint8_t *>(image.data()), image.size());
    if (e.empty() && w.symbol_count() != v.symbol_count()) e = "symbol table changed";
    if (e.empty() && v.find(".BTF") && !btf_problem(in).size() && btf_problem(out).size()) e = btf_problem(out);
    if (e.empty()) {
        auto ri = v.find(".rodata"), ro = w.find(".rodata");
        if (ri && (!ro || v.bytes(*ri) != w.bytes(*ro))) e = ".rodata changed";
    }
    if (!e.empty()) return raw_copy("strip check failed: " + e);
    r.stripped = true;
    return r;
}

} // namespace ktstr::kbuild
