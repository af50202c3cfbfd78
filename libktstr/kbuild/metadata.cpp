// libktstr/kbuild: the cache entry's metadata.json and the kernel descriptor
// (ktstr.kernel/1) handed to ktstr-vmm.
#include "ktstr/kbuild.h"

#include <sys/stat.h>

namespace ktstr::kbuild {

namespace {
template <typename T>
ojson opt(const std::optional<T> &v) {
    return v ? ojson(*v) : ojson(nullptr);
}
// Optional string field: absent or null -> nullopt; another type throws
// (type_error, classified as schema drift by the reader).
std::optional<std::string> opt_str(const json &j, const char *k) {
    if (!j.contains(k) || j.at(k).is_null()) return std::nullopt;
    return j.at(k).get<std::string>();
}
template <typename T>
std::optional<T> opt_num(const json &j, const char *k) {
    if (!j.contains(k) || j.at(k).is_null()) return std::nullopt;
    if (!j.at(k).is_number()) throw json::type_error::create(302, cat("field '", k, "' must be a number"), &j);
    return j.at(k).get<T>();
}
bool file_exists(const std::string &p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
} // namespace

const char *source_type_name(SourceType t) {
    switch (t) {
    case SourceType::tarball: return "tarball";
    case SourceType::git: return "git";
    case SourceType::local: return "local";
    }
    return "?";
}

ojson SourceInfo::to_json() const {
    ojson j = ojson::object();
    j["type"] = source_type_name(type);
    switch (type) {
    case SourceType::tarball:
        j["archive_path"] = opt(archive_path);
        j["url"] = opt(url);
        break;
    case SourceType::git:
        j["git_hash"] = opt(git_hash);
        j["ref"] = opt(ref);
        j["url"] = opt(url);
        break;
    case SourceType::local:
        j["source_tree_path"] = opt(source_tree_path);
        j["git_hash"] = opt(git_hash);
        break;
    }
    return j;
}

SourceInfo SourceInfo::from_json(const json &j) {
    SourceInfo s;
    std::string t = j.at("type").get<std::string>();
    if (t == "tarball") s.type = SourceType::tarball;
    else if (t == "git") s.type = SourceType::git;
    else if (t == "local") s.type = SourceType::local;
    else throw json::type_error::create(302, cat("unknown source type '", t, "'"), &j);
    s.archive_path = opt_str(j, "archive_path");
    s.url = opt_str(j, "url");
    s.git_hash = opt_str(j, "git_hash");
    s.ref = opt_str(j, "ref");
    s.source_tree_path = opt_str(j, "source_tree_path");
    return s;
}

ojson EntryMetadata::to_json() const {
    ojson j = make_doc(ENTRY_SCHEMA_KIND, ENTRY_SCHEMA_MAJOR);
    j["version"] = opt(version);
    j["source"] = source.to_json();
    j["arch"] = arch;
    j["image_name"] = image_name;
    j["config_hash"] = opt(config_hash);
    j["built_at"] = built_at;
    j["ktstr_kconfig_hash"] = opt(kconfig_hash);
    j["has_vmlinux"] = has_vmlinux;
    j["vmlinux_stripped"] = vmlinux_stripped;
    if (source_vmlinux_size) j["source_vmlinux_size"] = *source_vmlinux_size;
    if (source_vmlinux_mtime_secs) j["source_vmlinux_mtime_secs"] = *source_vmlinux_mtime_secs;
    if (!extra_kconfig.empty()) {
        ojson ex = ojson::array();
        for (auto &[name, crc] : extra_kconfig) ex.push_back({{"name", name}, {"crc32", crc}});
        j["extra_kconfig"] = ex;
    }
    if (build_seconds) j["build_seconds"] = *build_seconds;
    if (!tool_versions.empty()) j["tool_versions"] = tool_versions;
    j["schedulers"] = schedulers;
    ojson arts = ojson::array();
    for (auto &a : artifacts) arts.push_back({{"file", a.file}, {"size", a.size}, {"crc32", a.crc32}});
    j["artifacts"] = arts;
    return j;
}

EntryMetadata EntryMetadata::from_json(const json &j) {
    if (!j.is_object()) throw json::type_error::create(302, "metadata is not a JSON object", &j);
    require_schema(j, ENTRY_SCHEMA_KIND, ENTRY_SCHEMA_MAJOR, "metadata.json");
    EntryMetadata m;
    m.version = opt_str(j, "version");
    m.source = SourceInfo::from_json(j.at("source"));
    m.arch = j.at("arch").get<std::string>();
    m.image_name = j.at("image_name").get<std::string>();
    m.config_hash = opt_str(j, "config_hash");
    m.built_at = j.at("built_at").get<std::string>();
    m.kconfig_hash = opt_str(j, "ktstr_kconfig_hash");
    m.has_vmlinux = j.at("has_vmlinux").get<bool>();
    m.vmlinux_stripped = j.at("vmlinux_stripped").get<bool>();
    m.source_vmlinux_size = opt_num<uint64_t>(j, "source_vmlinux_size");
    m.source_vmlinux_mtime_secs = opt_num<int64_t>(j, "source_vmlinux_mtime_secs");
    if (j.contains("extra_kconfig") && !j.at("extra_kconfig").is_null())
        for (auto &e : j.at("extra_kconfig"))
            m.extra_kconfig.emplace_back(e.at("name").get<std::string>(), e.at("crc32").get<std::string>());
    m.build_seconds = opt_num<double>(j, "build_seconds");
    if (j.contains("tool_versions") && !j.at("tool_versions").is_null())
        m.tool_versions = j.at("tool_versions").get<std::map<std::string, std::string>>();
    if (j.contains("schedulers") && !j.at("schedulers").is_null())
        m.schedulers = j.at("schedulers").get<std::vector<std::string>>();
    if (j.contains("artifacts") && !j.at("artifacts").is_null())
        for (auto &a : j.at("artifacts"))
            m.artifacts.push_back({a.at("file").get<std::string>(), a.at("size").get<uint64_t>(),
                                   a.at("crc32").get<std::string>()});
    if (!valid_image_name(m.image_name))
        throw json::type_error::create(302, cat("invalid image_name '", m.image_name, "'"), &j);
    for (auto &s : m.schedulers)
        if (!valid_image_name(s)) throw json::type_error::create(302, cat("invalid scheduler name '", s, "'"), &j);
    return m;
}

const char *kconfig_status_name(KconfigStatus s) {
    switch (s) {
    case KconfigStatus::matches: return "matches";
    case KconfigStatus::stale: return "stale";
    case KconfigStatus::untracked: return "untracked";
    }
    return "?";
}

std::string CacheEntry::image_path() const { return path + "/" + (meta ? meta->image_name : std::string("bzImage")); }

std::optional<std::string> CacheEntry::vmlinux_path() const {
    if (!meta || !meta->has_vmlinux) return std::nullopt;
    return path + "/vmlinux";
}

std::optional<std::string> CacheEntry::config_path() const {
    std::string p = path + "/config";
    return file_exists(p) ? std::optional(p) : std::nullopt;
}

std::map<std::string, std::string> CacheEntry::scheduler_paths() const {
    std::map<std::string, std::string> out;
    if (meta)
        for (auto &s : meta->schedulers) out[s] = path + "/sched_ext/" + s;
    return out;
}

KconfigStatus CacheEntry::kconfig_status(const std::string &current_kc) const {
    if (!meta || !meta->kconfig_hash) return KconfigStatus::untracked;
    return *meta->kconfig_hash == current_kc ? KconfigStatus::matches : KconfigStatus::stale;
}

ojson KernelDescriptor::to_json() const {
    ojson j = make_doc(DESCRIPTOR_KIND, DESCRIPTOR_MAJOR);
    j["bzimage"] = image;
    j["vmlinux"] = opt(vmlinux);
    j["config"] = opt(config);
    j["version"] = opt(version);
    j["kconfig_hash"] = opt(kconfig_hash);
    j["cache_key"] = opt(cache_key);
    j["schedulers"] = schedulers;
    j["image"] = image;
    j["dir"] = dir;
    j["arch"] = arch;
    j["cache_hit"] = cache_hit;
    j["dirty"] = dirty;
    j["source"] = source ? source->to_json() : ojson(nullptr);
    j["resolved_by"] = resolved_by;
    return j;
}

KernelDescriptor descriptor_of(const CacheEntry &e, bool cache_hit) {
    KernelDescriptor d;
    d.image = e.image_path();
    d.vmlinux = e.vmlinux_path();
    d.config = e.config_path();
    d.cache_key = e.key;
    d.schedulers = e.scheduler_paths();
    d.dir = e.path;
    d.cache_hit = cache_hit;
    d.resolved_by = "cache";
    if (e.meta) {
        d.version = e.meta->version;
        d.kconfig_hash = e.meta->kconfig_hash;
        d.arch = e.meta->arch;
        d.source = e.meta->source;
    }
    return d;
}

} // namespace ktstr::kbuild
