// libktstr/sym: what the host needs from a kernel's vmlinux: ELF symbols
// (libelf), the bytes behind them (banner), the embedded config (IKCONFIG,
// CONFIG_HZ) and BTF struct layouts (libbpf's BTF API).
//
// Everything here reads files only; nothing touches guest memory.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ktstr/util.h"

struct btf;

namespace ktstr::sym {

// ---- ELF symbols -------------------------------------------------------------

// The symbol table of an ELF file plus the contents of its allocated
// PROGBITS sections (so link-time bytes such as linux_banner can be compared
// with guest memory).
class ElfSymbols {
public:
    // Throws Error(input) naming the path when it is not a readable 64-bit ELF
    // or carries no .symtab ("stripped").
    static ElfSymbols load(const std::string &path);

    const std::string &path() const { return path_; }
    // First symbol of that name with a nonzero value (locals included:
    // map_idr, prog_idr are file-scope statics).
    std::optional<uint64_t> find(std::string_view name) const;
    // Same, throwing Error(input) "<path>: symbol NAME not found (HINT)".
    uint64_t require(std::string_view name, std::string_view hint) const;
    size_t symbol_count() const { return symbols_.size(); }

    // Link-time bytes at [vaddr, vaddr+len) from an allocated section with
    // file contents; nullopt when not (fully) backed by the file.
    std::optional<std::string> bytes_at(uint64_t vaddr, size_t len) const;
    // NUL-terminated string at vaddr, without the NUL (at most max bytes).
    std::optional<std::string> cstring_at(uint64_t vaddr, size_t max = 4096) const;
    // The whole file (for IKCONFIG scans).
    std::string_view file_bytes() const { return file_; }

    // For tests: build from a name->value table (no file behind it).
    static ElfSymbols from_table(std::unordered_map<std::string, uint64_t> table);

private:
    struct Section { uint64_t addr, size, file_offset; };
    std::string path_;
    std::string file_;
    std::vector<Section> sections_;
    std::unordered_map<std::string, uint64_t> symbols_;
};

// ---- kernel config (IKCONFIG) and HZ -------------------------------------------

// The .config text embedded by CONFIG_IKCONFIG: the gzip stream right after
// the marker "IKCFG_ST".  nullopt when absent or not inflatable.
std::optional<std::string> extract_ikconfig(std::string_view image);
// Value of "NAME=value" in .config text (first match, trimmed, quotes kept);
// nullopt when missing or "# NAME is not set".
std::optional<std::string> config_value(std::string_view config_text, std::string_view name);

struct HzResult {
    uint32_t hz = 250;
    std::string source;   // "explicit", "ikconfig", ".config <path>", "host", "default"
};
// CONFIG_HZ by the spec's order: explicit -> IKCONFIG in the vmlinux ->
// .config in up to 4 parent directories of the vmlinux -> host /boot config
// (only when no vmlinux path is given) -> 250.
HzResult resolve_hz(std::optional<uint32_t> explicit_hz, const ElfSymbols *vmlinux);

// ---- BTF ---------------------------------------------------------------------------

struct Member {
    uint64_t offset = 0;     // bytes from the start of the outermost struct
    int type_id = 0;         // the member's declared type (unresolved)
};

// An owned libbpf `struct btf` with the lookups the monitor needs.
class Btf {
public:
    // Raw BTF or an ELF's .BTF.  Throws Error(input) "<path>: no BTF (rebuild
    // with CONFIG_DEBUG_INFO_BTF=y)" when absent.
    static Btf parse(const std::string &path);
    // Standalone BTF blob (e.g. a BPF program's BTF copied from the guest).
    static Btf from_bytes(const void *data, size_t size);
    // Takes ownership (tests build BTF with libbpf's writer API).
    explicit Btf(struct btf *b);
    Btf(Btf &&) noexcept;
    Btf &operator=(Btf &&) noexcept;
    ~Btf();

    struct btf *raw() const { return btf_; }

    // First BTF_KIND_STRUCT with this name (0 = none).
    int find_struct(std::string_view name) const;
    // Every STRUCT with this name, in id order (several kernels types share
    // names, e.g. "bucket").
    std::vector<int> find_structs(std::string_view name) const;
    // Member by name: byte offset (must be byte-aligned, else nullopt) and type.
    // Anonymous struct/union members are searched recursively, adding offsets.
    std::optional<Member> member(int struct_id, std::string_view field) const;
    std::optional<Member> member(std::string_view struct_name, std::string_view field) const;
    std::optional<uint64_t> offset_of(std::string_view struct_name, std::string_view field) const {
        auto m = member(struct_name, field);
        return m ? std::optional<uint64_t>(m->offset) : std::nullopt;
    }
    // Chase PTR, TYPEDEF, CONST, VOLATILE, RESTRICT, TYPE_TAG (depth <= 20) to
    // a STRUCT or UNION; 0 when it ends anywhere else.
    int resolve_to_struct(int type_id) const;
    // Size in bytes of a type (after typedef/modifiers); 0 when unknown.
    uint64_t size_of(int type_id) const;
    std::string name_of(int type_id) const;

private:
    struct btf *btf_ = nullptr;
};

} // namespace ktstr::sym
