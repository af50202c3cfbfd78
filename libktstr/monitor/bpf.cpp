// libktstr/monitor: the guest's BPF maps and programs, found by walking the
// kernel's map_idr / prog_idr xarrays (spec section 9).
#include "ktstr/monitor.h"

#include <cstring>

namespace ktstr::monitor {

namespace {

constexpr uint32_t IDR_SCAN_LIMIT = 1u << 20;   // ids are allocated cyclically; bound the scan

// An internal xarray node pointer: low bits 10 and not a small marker value
// (retry/zero entries are internal entries below 4096).
bool is_node(uint64_t v) { return (v & 3) == 2 && v > 4096; }

std::optional<uint64_t> xa_lookup(const AddressSpace &as, const KernelOffsets &o, uint64_t head, uint64_t index) {
    if (!head) return std::nullopt;
    if (!is_node(head)) return index == 0 && (head & 3) == 0 ? std::optional<uint64_t>(head) : std::nullopt;
    uint64_t v = head;
    for (int depth = 0; depth < 12; depth++) {
        auto pa = as.any_pa(v & ~3ull);
        if (!pa) return std::nullopt;
        uint32_t shift = as.mem().read_u8(*pa, o.xa_node_shift);
        if (shift > 63 || (depth == 0 && (index >> shift) > 63)) return std::nullopt;   // beyond the tree
        v = as.mem().read_u64(*pa, o.xa_node_slots + 8 * ((index >> shift) & 63));
        if (!v) return std::nullopt;
        if (!is_node(v)) return (v & 3) == 0 ? std::optional<uint64_t>(v) : std::nullopt;
        if (shift < 6) return std::nullopt;
    }
    return std::nullopt;
}

std::string fixed_name(const GuestMem &mem, uint64_t pa, uint64_t off) {
    char buf[16] = {};
    mem.read_bytes(pa + off, buf, sizeof buf);
    std::string s(buf, strnlen(buf, sizeof buf));
    for (char &c : s)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
    return s;
}

} // namespace

std::vector<std::pair<uint32_t, uint64_t>> idr_entries(const AddressSpace &as, const KernelOffsets &o, uint64_t idr_pa) {
    std::vector<std::pair<uint32_t, uint64_t>> out;
    if (!o.idr) return out;
    uint64_t head = as.mem().read_u64(idr_pa, o.idr_xa_head);
    uint32_t next = std::min(as.mem().read_u32(idr_pa, o.idr_next), IDR_SCAN_LIMIT);
    // idr_next is the next id to try; the last allocated one is next - 1, so
    // scan through next inclusive (ids wrap cyclically, the bound is a hint).
    for (uint64_t id = 0; id <= next; id++)
        if (auto v = xa_lookup(as, o, head, id)) out.emplace_back(uint32_t(id), *v);
    return out;
}

const char *map_type_name(uint32_t type) {
    static const char *const names[] = {"unspec", "hash", "array", "prog_array", "perf_event_array",
                                        "percpu_hash", "percpu_array", "stack_trace", "cgroup_array",
                                        "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps",
                                        "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash",
                                        "cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage",
                                        "queue", "stack", "sk_storage", "devmap_hash", "struct_ops",
                                        "ringbuf", "inode_storage", "task_storage", "bloom_filter",
                                        "user_ringbuf", "cgrp_storage", "arena"};
    return type < std::size(names) ? names[type] : "unknown";
}

std::vector<MapInfo> list_maps(const AddressSpace &as, const Vmlinux &vm) {
    std::vector<MapInfo> out;
    const KernelOffsets &o = vm.off;
    if (!o.bpf_map || !o.idr || !vm.syms.map_idr) return out;
    const GuestMem &mem = as.mem();
    for (auto [id, kva] : idr_entries(as, o, as.symbol_pa(*vm.syms.map_idr))) {
        auto pa = as.any_pa(kva);
        if (!pa || !mem.span(*pa, o.array_value)) continue;   // untranslatable entry: skip it
        MapInfo m;
        m.id = o.map_id ? mem.read_u32(*pa, *o.map_id) : id;
        m.kva = kva;
        m.name = fixed_name(mem, *pa, o.map_name);
        m.type = mem.read_u32(*pa, o.map_type);
        m.flags = mem.read_u32(*pa, o.map_flags);
        m.key_size = mem.read_u32(*pa, o.map_key_size);
        m.value_size = mem.read_u32(*pa, o.map_value_size);
        m.max_entries = mem.read_u32(*pa, o.map_max_entries);
        m.btf_kva = mem.read_u64(*pa, o.map_btf);
        m.btf_value_type_id = mem.read_u32(*pa, o.map_btf_value_type_id);
        out.push_back(std::move(m));
    }
    return out;
}

std::vector<ProgInfo> list_progs(const AddressSpace &as, const Vmlinux &vm) {
    std::vector<ProgInfo> out;
    const KernelOffsets &o = vm.off;
    if (!o.bpf_prog || !o.idr || !vm.syms.prog_idr) return out;
    const GuestMem &mem = as.mem();
    for (auto [id, kva] : idr_entries(as, o, as.symbol_pa(*vm.syms.prog_idr))) {
        auto pa = as.any_pa(kva);
        if (!pa) continue;
        ProgInfo p;
        p.id = id;
        p.kva = kva;
        p.type = mem.read_u32(*pa, o.prog_type);
        uint64_t aux = mem.read_u64(*pa, o.prog_aux);
        auto aux_pa = aux ? as.any_pa(aux) : std::nullopt;
        if (!aux_pa) continue;
        if (o.aux_id) p.id = mem.read_u32(*aux_pa, *o.aux_id);
        p.verified_insns = mem.read_u32(*aux_pa, o.aux_verified_insns);
        p.name = fixed_name(mem, *aux_pa, o.aux_name);
        out.push_back(std::move(p));
    }
    return out;
}

MapInfo find_array_map(const std::vector<MapInfo> &maps, const std::string &name) {
    std::vector<const MapInfo *> hits;
    for (const auto &m : maps)
        if (m.type == BPF_MAP_TYPE_ARRAY && (m.name == name || ends_with(m.name, name))) hits.push_back(&m);
    if (hits.empty()) {
        std::string names;
        for (const auto &m : maps)
            if (m.type == BPF_MAP_TYPE_ARRAY) names += (names.empty() ? "" : ", ") + m.name;
        fail(ErrorKind::input, "no array map named '", name, "' in the guest (array maps: ",
             names.empty() ? "none" : names, ")");
    }
    if (hits.size() > 1) {
        std::string names;
        for (const auto *m : hits) names += cat(names.empty() ? "" : ", ", m->name, " (id ", m->id, ")");
        fail(ErrorKind::input, "array map name '", name, "' is ambiguous: ", names, "; give the full name");
    }
    return *hits[0];
}

namespace {
uint64_t checked_value_kva(const Vmlinux &vm, const MapInfo &m, uint64_t offset, uint64_t len) {
    if (m.type != BPF_MAP_TYPE_ARRAY)
        fail(ErrorKind::input, "map '", m.name, "' is a ", map_type_name(m.type), " map, not an array");
    if (offset > m.value_size || len > m.value_size - offset)
        fail(ErrorKind::input, "map '", m.name, "': offset ", offset, " + length ", len, " is past its value size ",
             m.value_size);
    return m.kva + vm.off.array_value + offset;
}
} // namespace

std::string read_array_value(const AddressSpace &as, const Vmlinux &vm, const MapInfo &m, uint64_t offset, uint64_t len) {
    uint64_t kva = checked_value_kva(vm, m, offset, len);
    std::string buf(len, '\0');
    if (!as.read_virt(kva, buf.data(), len))
        fail(ErrorKind::guest, "map '", m.name, "': value at 0x", std::hex, kva, " is not mapped in the guest");
    return buf;
}

void write_array_value(const AddressSpace &as, const Vmlinux &vm, const MapInfo &m, uint64_t offset,
                       const std::string &bytes) {
    uint64_t kva = checked_value_kva(vm, m, offset, bytes.size());
    if (!as.write_virt(kva, bytes.data(), bytes.size()))
        fail(ErrorKind::guest, "map '", m.name, "': value at 0x", std::hex, kva, " is not mapped in the guest");
}

} // namespace ktstr::monitor
