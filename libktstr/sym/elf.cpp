// libktstr/sym: ELF symbol table and section bytes of a vmlinux (libelf).
#include "ktstr/sym.h"

#include <cstring>

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>

namespace ktstr::sym {

namespace {

struct ElfHandle {
    Elf *elf = nullptr;
    ~ElfHandle() { if (elf) elf_end(elf); }
};

std::string elf_err() { return elf_errmsg(-1) ? elf_errmsg(-1) : "unknown libelf error"; }

} // namespace

ElfSymbols ElfSymbols::load(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail_errno(ErrorKind::input, cat("vmlinux '", path, "'"));
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) fail_errno(ErrorKind::input, cat("vmlinux '", path, "'"));
    if (!S_ISREG(st.st_mode) || st.st_size < 64)
        fail(ErrorKind::input, "vmlinux '", path, "': not an ELF file (not a regular file or too small)");

    ElfSymbols out;
    out.path_ = path;
    out.file_ = read_file(path);

    if (elf_version(EV_CURRENT) == EV_NONE) fail(ErrorKind::environment, "libelf: ", elf_err());
    ElfHandle h;
    h.elf = elf_memory(out.file_.data(), out.file_.size());
    if (!h.elf || elf_kind(h.elf) != ELF_K_ELF)
        fail(ErrorKind::input, "vmlinux '", path, "': not an ELF file");
    if (gelf_getclass(h.elf) != ELFCLASS64)
        fail(ErrorKind::input, "vmlinux '", path, "': not a 64-bit ELF file");

    size_t shstrndx = 0;
    if (elf_getshdrstrndx(h.elf, &shstrndx) != 0)
        fail(ErrorKind::input, "vmlinux '", path, "': bad section headers: ", elf_err());
    bool have_symtab = false;
    for (Elf_Scn *scn = elf_nextscn(h.elf, nullptr); scn; scn = elf_nextscn(h.elf, scn)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh)) continue;
        if ((sh.sh_flags & SHF_ALLOC) && sh.sh_type == SHT_PROGBITS && sh.sh_addr != 0 &&
            sh.sh_offset + sh.sh_size <= out.file_.size())
            out.sections_.push_back({sh.sh_addr, sh.sh_size, sh.sh_offset});
        if (sh.sh_type != SHT_SYMTAB) continue;
        have_symtab = true;
        Elf_Data *data = elf_getdata(scn, nullptr);
        if (!data || sh.sh_entsize == 0) continue;
        size_t n = sh.sh_size / sh.sh_entsize;
        out.symbols_.reserve(n);
        for (size_t i = 0; i < n; i++) {
            GElf_Sym s;
            if (!gelf_getsym(data, int(i), &s) || s.st_value == 0 || s.st_name == 0) continue;
            const char *name = elf_strptr(h.elf, sh.sh_link, s.st_name);
            if (!name || !*name) continue;
            out.symbols_.emplace(name, s.st_value);   // emplace keeps the first one
        }
    }
    if (!have_symtab || out.symbols_.empty())
        fail(ErrorKind::input, "vmlinux '", path,
             "': no symbol table (stripped? keep .symtab/.strtab when stripping a vmlinux)");
    return out;
}

ElfSymbols ElfSymbols::from_table(std::unordered_map<std::string, uint64_t> table) {
    ElfSymbols out;
    out.path_ = "<table>";
    out.symbols_ = std::move(table);
    return out;
}

std::optional<uint64_t> ElfSymbols::find(std::string_view name) const {
    auto it = symbols_.find(std::string(name));
    if (it == symbols_.end()) return std::nullopt;
    return it->second;
}

uint64_t ElfSymbols::require(std::string_view name, std::string_view hint) const {
    if (auto v = find(name)) return *v;
    fail(ErrorKind::input, "vmlinux '", path_, "': symbol ", name, " not found (", hint, ")");
}

std::optional<std::string> ElfSymbols::bytes_at(uint64_t vaddr, size_t len) const {
    for (const auto &s : sections_) {
        if (vaddr < s.addr || vaddr - s.addr > s.size || s.size - (vaddr - s.addr) < len) continue;
        return file_.substr(s.file_offset + (vaddr - s.addr), len);
    }
    return std::nullopt;
}

std::optional<std::string> ElfSymbols::cstring_at(uint64_t vaddr, size_t max) const {
    for (const auto &s : sections_) {
        if (vaddr < s.addr || vaddr - s.addr >= s.size) continue;
        size_t avail = std::min<uint64_t>(s.size - (vaddr - s.addr), max);
        std::string_view v(file_.data() + s.file_offset + (vaddr - s.addr), avail);
        size_t nul = v.find('\0');
        if (nul == std::string_view::npos) return std::nullopt;
        return std::string(v.substr(0, nul));
    }
    return std::nullopt;
}

} // namespace ktstr::sym
