// libktstr/scenario: CPU layouts and topology-relative cpuset math (spec 1.2,
// 1.4, 1.5).  All arithmetic uses integer floors as the spec states; a spec
// that can never resolve throws, one that resolves to nothing returns {} so
// that the caller skips the scenario instead of clearing a cpuset.
#include "ktstr/scenario.h"

#include <algorithm>
#include <cmath>
#include <dirent.h>
#include <random>

namespace ktstr::scenario {

// ---- layouts -----------------------------------------------------------------

CpuLayout CpuLayout::uniform(uint32_t numa, uint32_t llcs, uint32_t cores, uint32_t threads) {
    if (numa == 0 || llcs == 0 || cores == 0 || threads == 0 || llcs % numa != 0)
        fail(ErrorKind::usage, "invalid layout ", numa, "n", llcs, "l", cores, "c", threads,
             "t: every count must be >= 1 and LLCs a multiple of nodes");
    CpuLayout l;
    uint32_t per_llc = cores * threads;
    for (uint32_t cpu = 0; cpu < llcs * per_llc; ++cpu) {
        uint32_t llc = cpu / per_llc;
        l.cpus.push_back(cpu);
        l.llc_of[cpu] = llc;
        l.node_of[cpu] = llc / (llcs / numa);
        l.core_of[cpu] = cpu / threads;
    }
    l.num_llcs = llcs;
    l.num_nodes = numa;
    return l;
}

CpuLayout CpuLayout::parse(const std::string &topology) {
    // "<n>n<l>l<c>c<t>t"
    uint32_t v[4];
    const char units[4] = {'n', 'l', 'c', 't'};
    size_t pos = 0;
    for (int i = 0; i < 4; ++i) {
        size_t end = topology.find(units[i], pos);
        std::optional<uint64_t> n;
        if (end != std::string::npos && end > pos && topology[pos] >= '0' && topology[pos] <= '9')
            n = parse_u64(std::string_view(topology).substr(pos, end - pos));
        if (!n || *n > 4096)
            fail(ErrorKind::usage, "topology '", topology, "': expected <nodes>n<llcs>l<cores>c<threads>t, e.g. 1n2l2c1t");
        v[i] = static_cast<uint32_t>(*n);
        pos = end + 1;
    }
    if (pos != topology.size())
        fail(ErrorKind::usage, "topology '", topology, "': expected <nodes>n<llcs>l<cores>c<threads>t, e.g. 1n2l2c1t");
    return uniform(v[0], v[1], v[2], v[3]);
}

namespace {
std::vector<std::string> list_dir(const std::string &dir, const std::string &prefix) {
    std::vector<std::string> out;
    DIR *d = opendir(dir.c_str());
    if (!d) return out;
    while (auto *e = readdir(d)) {
        std::string n = e->d_name;
        if (starts_with(n, prefix) && n.size() > prefix.size() &&
            parse_u64(std::string_view(n).substr(prefix.size())))
            out.push_back(n);
    }
    closedir(d);
    return out;
}

std::string read_trimmed(const std::string &path) {
    auto s = try_read_file(path);
    return s ? std::string(trim(*s)) : std::string();
}

// Dense renumbering of arbitrary keys in order of first appearance by CPU.
template <typename Key>
std::map<uint32_t, uint32_t> densify(const std::vector<uint32_t> &cpus, const std::map<uint32_t, Key> &key) {
    std::map<Key, uint32_t> ids;
    std::map<uint32_t, uint32_t> out;
    for (uint32_t c : cpus) {
        auto it = ids.find(key.at(c));
        if (it == ids.end()) it = ids.emplace(key.at(c), static_cast<uint32_t>(ids.size())).first;
        out[c] = it->second;
    }
    return out;
}
} // namespace

CpuLayout CpuLayout::from_sysfs(const std::string &sys_root) {
    const std::string cpu_dir = sys_root + "/devices/system/cpu";
    CpuLayout l;
    CpuSet online;
    if (auto s = try_read_file(cpu_dir + "/online")) online = parse_cpuset_lenient(std::string(trim(*s)));
    if (online.empty())
        for (auto &n : list_dir(cpu_dir, "cpu")) online.insert(static_cast<uint32_t>(*parse_u64(n.substr(3))));
    if (online.empty()) fail(ErrorKind::environment, "no CPUs found under ", cpu_dir);
    l.cpus.assign(online.begin(), online.end());

    std::map<uint32_t, std::string> llc_key, core_key;
    for (uint32_t c : l.cpus) {
        std::string base = cat(cpu_dir, "/cpu", c);
        // The highest cache level's sharing list names the LLC.
        int best_level = -1;
        std::string shared;
        for (auto &idx : list_dir(base + "/cache", "index")) {
            std::string ib = base + "/cache/" + idx;
            auto level = parse_u64(read_trimmed(ib + "/level"));
            std::string type = read_trimmed(ib + "/type");
            if (!level || type == "Instruction") continue;
            if (static_cast<int>(*level) > best_level) {
                best_level = static_cast<int>(*level);
                shared = read_trimmed(ib + "/shared_cpu_list");
            }
        }
        if (shared.empty()) shared = "pkg" + read_trimmed(base + "/topology/physical_package_id");
        llc_key[c] = shared;
        std::string siblings = read_trimmed(base + "/topology/thread_siblings_list");
        core_key[c] = siblings.empty() ? cat("cpu", c) : siblings;
        l.node_of[c] = 0;
    }
    l.llc_of = densify(l.cpus, llc_key);
    l.core_of = densify(l.cpus, core_key);
    uint32_t nodes = 0;
    for (auto &n : list_dir(sys_root + "/devices/system/node", "node")) {
        uint32_t id = static_cast<uint32_t>(*parse_u64(n.substr(4)));
        CpuSet cs = parse_cpuset_lenient(read_trimmed(sys_root + "/devices/system/node/" + n + "/cpulist"));
        for (uint32_t c : cs)
            if (l.node_of.count(c)) l.node_of[c] = id;
        nodes = std::max(nodes, id + 1);
    }
    l.num_nodes = std::max(nodes, 1u);
    l.num_llcs = 0;
    for (auto &[c, llc] : l.llc_of) l.num_llcs = std::max(l.num_llcs, llc + 1);
    return l;
}

bool CpuLayout::smt() const {
    std::set<uint32_t> cores;
    for (auto &[c, core] : core_of) cores.insert(core);
    return cores.size() < cpus.size();
}

std::vector<uint32_t> CpuLayout::usable() const {
    std::vector<uint32_t> u = cpus;
    if (u.size() > 2) u.pop_back();
    return u;
}

std::vector<uint32_t> CpuLayout::cpus_of_llc(uint32_t llc) const {
    std::vector<uint32_t> out;
    for (uint32_t c : cpus)
        if (llc_of.at(c) == llc) out.push_back(c);
    return out;
}

std::vector<uint32_t> CpuLayout::cpus_of_node(uint32_t node) const {
    std::vector<uint32_t> out;
    for (uint32_t c : cpus)
        if (node_of.at(c) == node) out.push_back(c);
    return out;
}

std::string CpuLayout::label() const {
    if (cpus.empty() || num_llcs == 0) return "0 cpus";
    uint32_t per_llc = total() / num_llcs;
    std::set<uint32_t> cores;
    for (auto &[c, core] : core_of) cores.insert(core);
    uint32_t threads = static_cast<uint32_t>(cpus.size() / std::max<size_t>(cores.size(), 1));
    uint32_t cores_per_llc = threads ? per_llc / threads : 0;
    if (threads && cores_per_llc && num_llcs % num_nodes == 0) {
        CpuLayout u = uniform(num_nodes, num_llcs, cores_per_llc, threads);
        if (u.cpus == cpus && u.llc_of == llc_of && u.node_of == node_of && u.core_of == core_of)
            return cat(num_nodes, "n", num_llcs, "l", cores_per_llc, "c", threads, "t");
    }
    return cat(total(), " cpus");
}

ojson CpuLayout::to_json() const {
    ojson j;
    j["label"] = label();
    j["cpus"] = total();
    j["llcs"] = num_llcs;
    j["numa_nodes"] = num_nodes;
    j["smt"] = smt();
    ojson llcs = ojson::array();
    for (uint32_t i = 0; i < num_llcs; ++i) {
        auto v = cpus_of_llc(i);
        llcs.push_back(format_cpuset(CpuSet(v.begin(), v.end())));
    }
    j["llc_cpus"] = llcs;
    return j;
}

// ---- cpuset lists -------------------------------------------------------------------

std::string format_cpuset(const CpuSet &s) {
    std::string out;
    for (auto it = s.begin(); it != s.end();) {
        uint32_t first = *it, last = *it;
        auto next = std::next(it);
        while (next != s.end() && *next == last + 1) last = *next++;
        if (!out.empty()) out += ',';
        out += first == last ? cat(first) : cat(first, "-", last);
        it = next;
    }
    return out;
}

namespace {
bool parse_cpuset_word(std::string_view w, CpuSet &out) {
    auto dash = w.find('-');
    if (dash == std::string_view::npos) {
        auto v = parse_u64(w);
        if (!v || *v > 65535) return false;
        out.insert(static_cast<uint32_t>(*v));
        return true;
    }
    auto a = parse_u64(w.substr(0, dash)), b = parse_u64(w.substr(dash + 1));
    if (!a || !b || *a > *b || *b > 65535) return false;
    for (uint64_t c = *a; c <= *b; ++c) out.insert(static_cast<uint32_t>(c));
    return true;
}
} // namespace

CpuSet parse_cpuset(const std::string &text) {
    CpuSet out;
    std::string_view t = trim(text);
    if (t.empty()) return out;
    for (auto &w : split(t, ','))
        if (!parse_cpuset_word(trim(w), out))
            fail(ErrorKind::input, "cpu list '", text, "': bad element '", w, "' (expected N or N-M, N <= M)");
    return out;
}

CpuSet parse_cpuset_lenient(const std::string &text) {
    CpuSet out;
    for (auto &w : split(trim(text), ',', false)) parse_cpuset_word(trim(w), out);
    return out;
}

// ---- spec resolution ---------------------------------------------------------------

namespace {
CpuSet slice(const std::vector<uint32_t> &v, size_t from, size_t to) {
    to = std::min(to, v.size());
    if (from >= to) return {};
    return CpuSet(v.begin() + static_cast<long>(from), v.begin() + static_cast<long>(to));
}

size_t floor_mul(size_t n, double f) { return static_cast<size_t>(std::floor(static_cast<double>(n) * f)); }
} // namespace

CpuSet resolve_cpuset(const CpusetSpec &spec, const CpuLayout &layout) {
    using K = CpusetSpec::Kind;
    const auto usable = layout.usable();
    const size_t L = usable.size();
    switch (spec.kind) {
    case K::llc:
        if (spec.index >= layout.num_llcs)
            fail(ErrorKind::input, "cpuset llc:", spec.index, ": the topology has ", layout.num_llcs, " LLC(s) (0..",
                 layout.num_llcs - 1, ")");
        { auto v = layout.cpus_of_llc(spec.index); return CpuSet(v.begin(), v.end()); }
    case K::numa:
        if (spec.index >= layout.num_nodes)
            fail(ErrorKind::input, "cpuset numa:", spec.index, ": the topology has ", layout.num_nodes,
                 " NUMA node(s) (0..", layout.num_nodes - 1, ")");
        { auto v = layout.cpus_of_node(spec.index); return CpuSet(v.begin(), v.end()); }
    case K::exact: {
        if (spec.cpus.empty()) fail(ErrorKind::input, "cpuset exact: empty CPU list");
        CpuSet s;
        for (uint32_t c : spec.cpus) {
            if (!layout.llc_of.count(c))
                fail(ErrorKind::input, "cpuset exact: CPU ", c, " is not in the topology (CPUs ",
                     format_cpuset(CpuSet(layout.cpus.begin(), layout.cpus.end())), ")");
            s.insert(c);
        }
        return s;
    }
    case K::range:
        if (!std::isfinite(spec.start) || !std::isfinite(spec.end) || spec.start < 0 || spec.end > 1 ||
            spec.start >= spec.end)
            fail(ErrorKind::input, "cpuset range [", spec.start, ",", spec.end,
                 "]: need 0 <= start < end <= 1");
        return slice(usable, floor_mul(L, spec.start), floor_mul(L, spec.end));
    case K::disjoint:
    case K::overlap: {
        if (spec.of == 0) fail(ErrorKind::input, "cpuset ", spec.describe(), ": 'of' must be at least 1");
        if (spec.index >= spec.of)
            fail(ErrorKind::input, "cpuset ", spec.describe(), ": index must be below of=", spec.of);
        if (spec.kind == K::overlap && (!std::isfinite(spec.frac) || spec.frac < 0 || spec.frac > 1))
            fail(ErrorKind::input, "cpuset ", spec.describe(), ": frac must be within [0, 1]");
        if (L < spec.of) fail(ErrorKind::input, "not enough usable CPUs (", L, ") for ", spec.of, " partitions");
        size_t c = L / spec.of;
        bool last = spec.index + 1 == spec.of;
        if (spec.kind == K::disjoint) return slice(usable, spec.index * c, last ? L : (spec.index + 1) * c);
        size_t v = floor_mul(c, spec.frac);
        size_t start = spec.index == 0 ? 0 : spec.index * c - v;
        size_t end = last ? L : std::min((spec.index + 1) * c + v, L);
        return slice(usable, start, end);
    }
    }
    return {};
}

std::vector<CpuSet> partition_cpusets(const Partition &p, uint32_t n, const CpuLayout &layout) {
    using K = Partition::Kind;
    const auto usable = layout.usable();
    const auto &all = layout.cpus;
    const size_t L = usable.size(), N = all.size();
    std::vector<CpuSet> sets;
    switch (p.kind) {
    case K::none:
        return {};
    case K::split_half:
        sets = {slice(usable, 0, L / 2), slice(usable, L / 2, L)};
        break;
    case K::llc_aligned:
        if (layout.num_llcs < 2) return std::vector<CpuSet>(n);   // empty sets: skip
        for (uint32_t k = 0; k < layout.num_llcs; ++k) {
            auto v = layout.cpus_of_llc(k);
            sets.emplace_back(v.begin(), v.end());
        }
        if (sets.back().size() > 1) sets.back().erase(all.back());
        break;
    case K::split_misaligned: {
        size_t at = layout.num_llcs > 1 ? layout.cpus_of_llc(0).size() / 2 : L / 2;
        sets = {slice(usable, 0, at), slice(usable, at, L)};
        break;
    }
    case K::overlap: {
        size_t b = std::max<size_t>(N / n, 1);
        size_t step = std::max<size_t>(b - static_cast<size_t>(std::ceil(static_cast<double>(b) * p.frac)), 1);
        for (uint32_t i = 0; i < n; ++i) {
            CpuSet s;
            for (size_t k = 0; k < b; ++k) s.insert(all[(i * step + k) % N]);
            sets.push_back(s);
        }
        break;
    }
    case K::uneven: {
        size_t at = std::max<size_t>(floor_mul(L, p.frac), 1);
        sets = {slice(usable, 0, at), slice(usable, at, L)};
        break;
    }
    case K::holdback: {
        size_t keep = N - floor_mul(N, p.frac);
        size_t m = std::max<size_t>(keep / 2, 1);
        sets = {slice(all, 0, m), slice(all, m, keep)};
        break;
    }
    }
    if (n > sets.size())
        fail(ErrorKind::input, "partition ", p.describe(), " gives ", sets.size(), " cpusets on this topology, but ",
             n, " cgroups need one each");
    sets.resize(n);
    return sets;
}

CpuSet resolve_affinity(const Affinity &a, const std::optional<CpuSet> &cpuset, const CpuLayout &layout,
                        uint64_t random_seed) {
    using K = Affinity::Kind;
    CpuSet all(layout.cpus.begin(), layout.cpus.end());
    const CpuSet &pool = cpuset ? *cpuset : all;
    switch (a.kind) {
    case K::inherit:
        return {};
    case K::cross_cgroup:
        return all;
    case K::random_subset: {
        std::vector<uint32_t> v(pool.begin(), pool.end());
        if (v.empty()) return {};
        std::mt19937_64 rng(random_seed);
        std::shuffle(v.begin(), v.end(), rng);
        size_t k = std::max<size_t>(v.size() / 2, 1);
        return CpuSet(v.begin(), v.begin() + static_cast<long>(k));
    }
    case K::llc_aligned: {
        uint32_t best = 0;
        size_t best_n = 0;
        for (uint32_t l = 0; l < layout.num_llcs; ++l) {
            size_t n = 0;
            for (uint32_t c : layout.cpus_of_llc(l)) n += pool.count(c);
            if (n > best_n) best = l, best_n = n;
        }
        CpuSet s;
        for (uint32_t c : layout.cpus_of_llc(best))
            if (pool.count(c)) s.insert(c);
        return s;
    }
    case K::single_cpu:
        return pool.empty() ? CpuSet{} : CpuSet{*pool.begin()};
    case K::exact: {
        CpuSet s(a.cpus.begin(), a.cpus.end());
        if (!cpuset) return s;
        CpuSet both;
        for (uint32_t c : s)
            if (cpuset->count(c)) both.insert(c);
        return both;
    }
    }
    return {};
}

} // namespace ktstr::scenario
