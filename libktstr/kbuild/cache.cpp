// libktstr/kbuild: the kernel cache: reading and classifying entries, listing,
// the atomic store, orphan sweep and clean (spec 2.6, 2.8, 2.11).
#include "ktstr/kbuild.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::kbuild {

namespace fs = std::filesystem;

namespace {

// CRC-32 of a file's bytes (mapped, not read into memory).
uint32_t file_crc32(const std::string &path, uint64_t *size_out = nullptr) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail_errno(ErrorKind::environment, "cannot open " + path);
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) fail_errno(ErrorKind::environment, "cannot stat " + path);
    if (size_out) *size_out = static_cast<uint64_t>(st.st_size);
    if (st.st_size == 0) return crc32_of(std::string_view());
    Mapping m = Mapping::map_fd(fd.get(), static_cast<size_t>(st.st_size), PROT_READ);
    return crc32_of(m.data(), m.size());
}

void copy_into(const std::string &from, const std::string &to, fs::perms perms) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) fail(ErrorKind::environment, "cannot copy ", from, " to ", to, ": ", ec.message());
    fs::permissions(to, perms, ec);
}

// Remove a tree; ENOENT is success.  Returns the error, empty when fine.
std::string remove_tree(const std::string &p) {
    std::error_code ec;
    fs::remove_all(p, ec);
    return ec && ec != std::errc::no_such_file_or_directory ? ec.message() : "";
}

} // namespace

std::string Cache::source_lock_path(const std::string &canonical_tree) const {
    return root_ + "/.locks/source-" + hex8(crc32_of(canonical_tree)) + ".lock";
}

void Cache::ensure_writable() const {
    const char *remedy = "; set KTSTR_CACHE_DIR to a writable directory on a local filesystem";
    std::error_code ec;
    fs::create_directories(root_ + "/.locks", ec);
    if (ec) fail(ErrorKind::environment, "kernel cache ", root_, " is not writable: ", ec.message(), remedy);
    require_local_fs(root_);
    if (::access(root_.c_str(), W_OK) != 0 || ::access((root_ + "/.locks").c_str(), W_OK) != 0)
        fail(ErrorKind::environment, "kernel cache ", root_, " is not writable: ", std::strerror(errno), remedy);
}

std::pair<std::string, std::string> classify_metadata_error(const std::string &reason) {
    static const std::pair<const char *, const char *> table[] = {
        {"metadata.json missing", "missing"},
        {"metadata.json unreadable: ", "unreadable"},
        {"metadata.json schema drift: ", "schema_drift"},
        {"metadata.json malformed: ", "malformed"},
        {"metadata.json truncated: ", "truncated"},
        {"metadata.json parse error: ", "parse_error"},
    };
    for (auto &[prefix, kind] : table)
        if (starts_with(reason, prefix)) return {reason, kind};
    if (starts_with(reason, "image file ") && ends_with(reason, " missing from entry directory"))
        return {reason, "image_missing"};
    return {reason, "unknown"};
}

CacheEntry Cache::read_entry(const std::string &key) const {
    CacheEntry e;
    e.key = key;
    e.path = entry_dir(key);
    auto corrupt = [&](const std::string &reason) {
        auto [r, kind] = classify_metadata_error(reason);
        e.error = r;
        e.error_kind = kind;
        return e;
    };
    std::string mpath = e.path + "/metadata.json";
    unique_fd fd(::open(mpath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return corrupt("metadata.json missing");
        return corrupt(cat("metadata.json unreadable: ", std::strerror(errno)));
    }
    std::string text;
    {
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return corrupt(cat("metadata.json unreadable: ", std::strerror(errno)));
            if (n == 0) break;
            text.append(buf, static_cast<size_t>(n));
        }
    }
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::parse_error &pe) {
        // Running out of input mid-document: a truncated file, not a syntax error.
        bool at_eof = std::string(pe.what()).find("unexpected end of input") != std::string::npos;
        return corrupt(cat(at_eof ? "metadata.json truncated: " : "metadata.json malformed: ", pe.what()));
    } catch (const std::exception &ex) {
        return corrupt(cat("metadata.json parse error: ", ex.what()));
    }
    EntryMetadata m;
    try {
        m = EntryMetadata::from_json(doc);
    } catch (const json::exception &ex) {
        return corrupt(cat("metadata.json schema drift: ", ex.what()));
    } catch (const Error &ex) {
        return corrupt(cat("metadata.json schema drift: ", ex.what()));
    }
    struct stat st{};
    if (::stat((e.path + "/" + m.image_name).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return corrupt(cat("image file ", m.image_name, " missing from entry directory"));
    e.meta = std::move(m);
    return e;
}

std::vector<CacheEntry> Cache::list() const {
    std::vector<CacheEntry> valid, corrupt;
    std::error_code ec;
    fs::directory_iterator it(root_, ec);
    if (ec) {
        if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) return {};   // nothing cached there
        fail(ErrorKind::environment, "cannot list the kernel cache ", root_, ": ", ec.message());
    }
    for (const auto &d : it) {
        std::string name = d.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        std::error_code dec;
        if (!d.is_directory(dec) || d.is_symlink(dec)) continue;
        CacheEntry e = read_entry(name);
        (e.valid() ? valid : corrupt).push_back(std::move(e));
    }
    std::sort(valid.begin(), valid.end(), [](const CacheEntry &a, const CacheEntry &b) {
        if (a.meta->built_at != b.meta->built_at) return a.meta->built_at > b.meta->built_at;
        return a.key < b.key;
    });
    std::sort(corrupt.begin(), corrupt.end(), [](auto &a, auto &b) { return a.key < b.key; });
    valid.insert(valid.end(), std::make_move_iterator(corrupt.begin()), std::make_move_iterator(corrupt.end()));
    return valid;
}

std::optional<CacheEntry> Cache::lookup(const std::string &key) const {
    if (!valid_cache_key(key)) return std::nullopt;
    CacheEntry e = read_entry(key);
    if (!e.valid()) return std::nullopt;
    if (e.meta->has_vmlinux && !e.meta->vmlinux_stripped)
        log::warn("cache entry ", key, ": vmlinux is an unstripped copy (the strip failed when it was stored)");
    return e;
}

size_t Cache::sweep_orphans() const {
    size_t removed = 0;
    std::error_code ec;
    fs::directory_iterator it(root_, ec);
    if (ec) return 0;
    for (const auto &d : it) {
        std::string name = d.path().filename().string();
        if (!starts_with(name, ".tmp-")) continue;
        std::error_code dec;
        if (!d.is_directory(dec)) continue;
        auto dash = name.rfind('-');
        auto pid = parse_i64(name.substr(dash + 1));
        if (!pid || *pid <= 0 || *pid > INT32_MAX) continue;
        if (::kill(static_cast<pid_t>(*pid), 0) == 0 || errno != ESRCH) continue;
        if (std::string err = remove_tree(d.path().string()); !err.empty())
            log::warn("cannot remove orphaned ", d.path().string(), ": ", err);
        else
            ++removed;
    }
    return removed;
}

CacheEntry Cache::store(StoreInput in, double entry_lock_timeout_s) const {
    if (!valid_cache_key(in.key)) fail(ErrorKind::input, "invalid cache key '", in.key, "'");
    if (!valid_image_name(in.meta.image_name)) fail(ErrorKind::input, "invalid image name '", in.meta.image_name, "'");
    ensure_writable();
    FileLock lock = wait_lock(entry_lock_path(in.key), LockMode::exclusive, entry_lock_timeout_s,
                              "cache entry " + in.key,
                              [&] { log::info("waiting for readers of cache entry ", in.key, " to finish"); });
    std::string tmp = cat(root_, "/.tmp-", in.key, "-", ::getpid());
    std::string final_dir = entry_dir(in.key);
    remove_tree(tmp);
    sweep_orphans();
    try {
        std::error_code ec;
        fs::create_directories(tmp, ec);
        if (ec) fail(ErrorKind::environment, "cannot create ", tmp, ": ", ec.message());
        EntryMetadata &m = in.meta;
        const auto rw = fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read;
        const auto rwx = rw | fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
        std::vector<std::string> files;

        copy_into(in.image, tmp + "/" + m.image_name, rw);
        files.push_back(m.image_name);

        m.has_vmlinux = false;
        m.vmlinux_stripped = false;
        if (in.vmlinux) {
            StripResult sr = strip_vmlinux(*in.vmlinux, tmp + "/vmlinux");
            if (!sr.stripped) log::warn("vmlinux stored unstripped: ", sr.warning);
            m.has_vmlinux = true;
            m.vmlinux_stripped = sr.stripped;
            files.push_back("vmlinux");
        }
        if (in.config) {
            copy_into(*in.config, tmp + "/config", rw);
            m.config_hash = hex8(file_crc32(tmp + "/config"));
            files.push_back("config");
        }
        m.schedulers.clear();
        if (!in.schedulers.empty()) {
            fs::create_directories(tmp + "/sched_ext", ec);
            if (ec) fail(ErrorKind::environment, "cannot create ", tmp, "/sched_ext: ", ec.message());
            for (auto &[name, path] : in.schedulers) {
                if (!valid_image_name(name)) fail(ErrorKind::input, "invalid scheduler name '", name, "'");
                copy_into(path, tmp + "/sched_ext/" + name, rwx);
                m.schedulers.push_back(name);
                files.push_back("sched_ext/" + name);
            }
        }
        if (!in.logs.empty()) {
            fs::create_directories(tmp + "/logs", ec);
            for (auto &l : in.logs) {
                std::error_code lec;
                if (fs::exists(l, lec)) copy_into(l, tmp + "/logs/" + fs::path(l).filename().string(), rw);
            }
        }
        m.artifacts.clear();
        for (auto &f : files) {
            Artifact a;
            a.file = f;
            a.crc32 = hex8(file_crc32(tmp + "/" + f, &a.size));
            m.artifacts.push_back(a);
        }
        write_file_atomic(tmp + "/metadata.json", m.to_json().dump(2) + "\n", 0644);

        // Publish: a plain rename when the key is new, else swap the old entry
        // out in one step so a reader never sees a missing or half entry.
        if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
            if (errno != ENOTEMPTY && errno != EEXIST)
                fail_errno(ErrorKind::environment, "cannot move " + tmp + " to " + final_dir);
            if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0)
                fail_errno(ErrorKind::environment, "cannot exchange " + tmp + " with " + final_dir);
            if (std::string err = remove_tree(tmp); !err.empty())
                log::warn("cannot remove the replaced entry ", tmp, ": ", err);
        }
    } catch (...) {
        remove_tree(tmp);
        throw;
    }
    CacheEntry e = read_entry(in.key);
    if (!e.valid()) fail(ErrorKind::environment, "stored cache entry ", in.key, " does not read back: ", e.error);
    return e;
}

CleanPlan Cache::plan_clean(std::optional<size_t> keep, bool corrupt_only) const {
    CleanPlan plan;
    size_t kept_valid = 0;
    for (auto &e : list()) {
        bool remove;
        if (!e.valid()) remove = true;
        else if (corrupt_only) remove = false;
        else remove = !keep || kept_valid >= *keep;
        if (e.valid() && !remove) ++kept_valid;
        if (!remove) {
            plan.keep.push_back(std::move(e));
            continue;
        }
        // An entry in use (a VM holds LOCK_SH, a store LOCK_EX) is left alone.
        std::string lp = entry_lock_path(e.key);
        struct stat st{};
        bool busy = false;
        if (::stat(lp.c_str(), &st) == 0) busy = !try_lock(lp, LockMode::exclusive).has_value();
        (busy ? plan.busy : plan.remove).push_back(std::move(e));
    }
    return plan;
}

size_t Cache::remove_entries(const std::vector<CacheEntry> &entries) const {
    size_t removed = 0;
    std::string last_error;
    for (auto &e : entries) {
        std::optional<FileLock> lock;
        std::string lp = entry_lock_path(e.key);
        struct stat st{};
        if (::stat(lp.c_str(), &st) == 0) {
            lock = try_lock(lp, LockMode::exclusive);
            if (!lock) {
                last_error = cat(e.key, ": in use (", lp, ")");
                continue;
            }
        }
        // Move it out of sight first: the entry disappears in one step, and a
        // crash mid-delete leaves a .tmp- orphan for the sweep, not a half entry.
        std::string graveyard = cat(root_, "/.tmp-", e.key, "-", ::getpid());
        remove_tree(graveyard);
        if (::rename(e.path.c_str(), graveyard.c_str()) != 0) {
            if (errno == ENOENT) { ++removed; continue; }
            last_error = cat(e.key, ": ", std::strerror(errno));
            continue;
        }
        if (std::string err = remove_tree(graveyard); !err.empty()) log::warn("cannot remove ", graveyard, ": ", err);
        ++removed;
    }
    if (removed != entries.size())
        fail(ErrorKind::environment, "removed ", removed, " of ", entries.size(), " cache entries; last error: ",
             last_error);
    return removed;
}

} // namespace ktstr::kbuild
