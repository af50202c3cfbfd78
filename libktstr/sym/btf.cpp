// libktstr/sym: BTF struct layouts through libbpf's BTF API.
#include "ktstr/sym.h"

#include <cerrno>
#include <cstring>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

namespace ktstr::sym {

Btf::Btf(struct btf *b) : btf_(b) {}
Btf::Btf(Btf &&o) noexcept : btf_(std::exchange(o.btf_, nullptr)) {}
Btf &Btf::operator=(Btf &&o) noexcept {
    if (this != &o) {
        if (btf_) btf__free(btf_);
        btf_ = std::exchange(o.btf_, nullptr);
    }
    return *this;
}
Btf::~Btf() {
    if (btf_) btf__free(btf_);
}

Btf Btf::parse(const std::string &path) {
    // libbpf prints its own warnings on failure; we report one line instead.
    auto quiet = [](enum libbpf_print_level, const char *, va_list) { return 0; };
    libbpf_print_fn_t old = libbpf_set_print(quiet);
    errno = 0;
    struct btf *b = btf__parse(path.c_str(), nullptr);
    int err = errno;
    libbpf_set_print(old);
    if (!b) {
        if (err == ENOENT && try_read_file(path))
            fail(ErrorKind::input, "vmlinux '", path, "': no .BTF section (rebuild with CONFIG_DEBUG_INFO_BTF=y)");
        fail(ErrorKind::input, "vmlinux '", path, "': cannot load BTF: ", std::strerror(err ? err : EINVAL),
             " (rebuild with CONFIG_DEBUG_INFO_BTF=y)");
    }
    return Btf(b);
}

Btf Btf::from_bytes(const void *data, size_t size) {
    struct btf *b = btf__new(data, __u32(size));
    if (!b) fail(ErrorKind::input, "BTF blob of ", size, " bytes: ", std::strerror(errno ? errno : EINVAL));
    return Btf(b);
}

std::vector<int> Btf::find_structs(std::string_view name) const {
    std::vector<int> out;
    __u32 n = btf__type_cnt(btf_);
    for (__u32 id = 1; id < n; id++) {
        const btf_type *t = btf__type_by_id(btf_, id);
        if (!t || !btf_is_struct(t)) continue;
        const char *nm = btf__name_by_offset(btf_, t->name_off);
        if (nm && name == nm) out.push_back(int(id));
    }
    return out;
}

int Btf::find_struct(std::string_view name) const {
    // btf__find_by_name_kind is a linear scan too, but stops at the first.
    int id = btf__find_by_name_kind(btf_, std::string(name).c_str(), BTF_KIND_STRUCT);
    return id > 0 ? id : 0;
}

namespace {

// Skip typedef/const/volatile/restrict/type_tag: what an anonymous member
// really is.
const btf_type *skip_modifiers(const struct btf *b, int &id) {
    for (int depth = 0; depth < 20; depth++) {
        const btf_type *t = btf__type_by_id(b, __u32(id));
        if (!t) return nullptr;
        switch (btf_kind(t)) {
        case BTF_KIND_TYPEDEF: case BTF_KIND_CONST: case BTF_KIND_VOLATILE:
        case BTF_KIND_RESTRICT: case BTF_KIND_TYPE_TAG:
            id = int(t->type);
            continue;
        default:
            return t;
        }
    }
    return nullptr;
}

std::optional<Member> find_member(const struct btf *b, int struct_id, std::string_view field,
                                  uint64_t base_bits, int depth) {
    if (depth > 20) return std::nullopt;
    const btf_type *t = btf__type_by_id(b, __u32(struct_id));
    if (!t || !btf_is_composite(t)) return std::nullopt;
    const btf_member *m = btf_members(t);
    for (int i = 0; i < btf_vlen(t); i++, m++) {
        uint64_t bits = base_bits + btf_member_bit_offset(t, __u32(i));
        const char *nm = btf__name_by_offset(b, m->name_off);
        if (nm && *nm) {
            if (field != nm) continue;
            if (bits % 8 != 0 || btf_member_bitfield_size(t, __u32(i)) != 0) return std::nullopt;
            return Member{bits / 8, int(m->type)};
        }
        int inner = int(m->type);
        const btf_type *it = skip_modifiers(b, inner);
        if (!it || !btf_is_composite(it)) continue;
        if (auto r = find_member(b, inner, field, bits, depth + 1)) return r;
    }
    return std::nullopt;
}

} // namespace

std::optional<Member> Btf::member(int struct_id, std::string_view field) const {
    return find_member(btf_, struct_id, field, 0, 0);
}

std::optional<Member> Btf::member(std::string_view struct_name, std::string_view field) const {
    int id = find_struct(struct_name);
    if (!id) return std::nullopt;
    return member(id, field);
}

int Btf::resolve_to_struct(int type_id) const {
    int id = type_id;
    for (int depth = 0; depth < 20; depth++) {
        const btf_type *t = btf__type_by_id(btf_, __u32(id));
        if (!t) return 0;
        switch (btf_kind(t)) {
        case BTF_KIND_STRUCT: case BTF_KIND_UNION:
            return id;
        case BTF_KIND_PTR: case BTF_KIND_TYPEDEF: case BTF_KIND_CONST: case BTF_KIND_VOLATILE:
        case BTF_KIND_RESTRICT: case BTF_KIND_TYPE_TAG:
            id = int(t->type);
            continue;
        default:
            return 0;
        }
    }
    return 0;
}

uint64_t Btf::size_of(int type_id) const {
    __s64 s = btf__resolve_size(btf_, __u32(type_id));
    return s > 0 ? uint64_t(s) : 0;
}

std::string Btf::name_of(int type_id) const {
    const btf_type *t = btf__type_by_id(btf_, __u32(type_id));
    if (!t) return "";
    const char *nm = btf__name_by_offset(btf_, t->name_off);
    return nm ? nm : "";
}

} // namespace ktstr::sym
