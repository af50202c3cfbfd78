// libktstr/kbuild: kernel identifiers, source kinds, the kernel cache (keys,
// metadata, atomic store, listing, clean), locks, the vmlinux strip, the build
// pipeline and kernel resolution.  Facts: shared/spec/kernel-and-cli.md sec. 2.
//
// Cache layout (root from cache_root()):
//   ROOT/{key}/               bzImage|Image, vmlinux (stripped), config,
//                             sched_ext/scx_*, logs/*.log, metadata.json
//   ROOT/.locks/{key}.lock    entry lock: readers LOCK_SH, store LOCK_EX
//   ROOT/.locks/build-{key}.lock   held around acquire->build->store, so two
//                             builds of one key build once
//   ROOT/.locks/source-{crc32(path)}.lock   one build per local tree
//   ROOT/.tmp-{key}-{pid}/    an entry being stored (renamed into place)
//   ROOT/.logs/{key}/         logs of the latest build of a key (kept on failure)
//   ROOT/.archives/{crc32(path)}.json   archive identity cache (stat -> crc, version)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "ktstr/json.h"
#include "ktstr/kconfig.h"
#include "ktstr/util.h"

namespace ktstr::kbuild {

// Environment lookup, injectable for tests: returns nullptr when unset.
using Getenv = std::function<const char *(const char *)>;
Getenv process_env();

// ---- architecture ---------------------------------------------------------

// The architecture type and names come from the kconfig library.
using kconfig::Arch;
using kconfig::arch_name;        // "x86_64" / "aarch64"
using kconfig::host_arch;
using kconfig::kernel_arch_dir;  // "x86" / "arm64"
using kconfig::make_arch;        // ARCH= for make
const char *image_name(Arch a);                // "bzImage" / "Image"
std::string image_build_path(Arch a);          // "arch/x86/boot/bzImage"

// ---- kernel versions and identifiers (spec 2.1) ------------------------------

struct Version {
    uint64_t major = 0, minor = 0, patch = 0;
    bool has_patch = false;
    std::optional<uint64_t> rc;                // -rcN
    std::string text;                          // as given
    // A version with fewer than two dots and no -rc names a series (6.12).
    bool is_series_prefix() const { return !has_patch && !rc; }
};
// MAJOR.MINOR[.PATCH][-rcN], every digit run non-empty.  Not: 6, v6.14, 6.14.2.1, 6.15-rc.
std::optional<Version> parse_version(std::string_view s);
// Orders (major, minor, patch or 0, rc or +inf): 6.10-rc3 < 6.10 < 6.10.1.
int compare_versions(const Version &a, const Version &b);

enum class IdKind { path, version, range, git, cache_key };
const char *id_kind_name(IdKind k);

struct KernelId {
    IdKind kind = IdKind::cache_key;
    std::string text;                          // path (with ~/ expanded), version or key
    std::string range_start, range_end;        // Range
    std::string git_url, git_ref;              // Git
};
// Parse order: git+URL#REF, A..B, path-like, version, cache key.  Throws
// Error(usage) for an inverted range or an empty git URL/ref.
KernelId parse_kernel_id(std::string_view s, const Getenv &env = process_env());
// Comma-separated list: trimmed, empty segments dropped, order and dupes kept.
std::vector<KernelId> parse_kernel_id_list(std::string_view s, const Getenv &env = process_env());

// VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION of a kernel top-level Makefile.
std::optional<std::string> makefile_kernel_version(std::string_view makefile_text);

// ---- cache keys (spec 2.2) -----------------------------------------------------
// kc is the 8-hex kconfig hash of the effective fragment (base + extras).

std::string tarball_key(const std::string &version, Arch a, const std::string &kc);
std::string archive_key(const std::string &version, uint32_t archive_crc, Arch a, const std::string &kc);
// The ref's '/' become '_' (the raw ref is kept in the metadata).
std::string git_key(const std::string &ref, const std::string &head_sha, Arch a, const std::string &kc);
// pre_config_crc: CRC-32 of the .config that existed before configuring.
std::string local_key(const std::string &head_sha, std::optional<uint32_t> pre_config_crc, Arch a,
                      const std::string &kc);
// Dirty or non-git trees: never stored.
std::string local_unknown_key(const std::string &canonical_path, Arch a, const std::string &kc);
bool valid_cache_key(std::string_view key);
bool valid_image_name(std::string_view name);

// ---- cache root (spec 2.6) -----------------------------------------------------

// $KTSTR_CACHE_DIR, else $XDG_CACHE_HOME/ktstr/kernels, else $HOME/.cache/ktstr/kernels.
// HOME unset / empty / "/" / relative are distinct Error(environment)s.
std::string cache_root(const Getenv &env = process_env());

// ---- entry metadata --------------------------------------------------------------

inline constexpr const char *ENTRY_SCHEMA_KIND = "kernel-entry";
inline constexpr int ENTRY_SCHEMA_MAJOR = 1;
inline constexpr const char *DESCRIPTOR_KIND = "kernel";   // ktstr.kernel/1
inline constexpr int DESCRIPTOR_MAJOR = 1;

enum class SourceType { tarball, git, local };
const char *source_type_name(SourceType t);

struct SourceInfo {
    SourceType type = SourceType::tarball;
    std::optional<std::string> archive_path;     // tarball: local archive file (Debian linux-source)
    std::optional<std::string> url;              // tarball download / git remote
    std::optional<std::string> git_hash;         // git, local
    std::optional<std::string> ref;              // git
    std::optional<std::string> source_tree_path; // local
    ojson to_json() const;                       // every key of the variant, null if unknown
    static SourceInfo from_json(const json &j);  // throws json exceptions on shape errors
};

struct Artifact {
    std::string file;                            // path relative to the entry
    uint64_t size = 0;
    std::string crc32;                           // 8 hex
};

struct EntryMetadata {
    std::optional<std::string> version;
    SourceInfo source;
    std::string arch;
    std::string image_name;
    std::optional<std::string> config_hash;      // crc32 of the final .config
    std::string built_at;                        // UTC YYYY-MM-DDTHH:MM:SSZ
    std::optional<std::string> kconfig_hash;     // "ktstr_kconfig_hash"
    bool has_vmlinux = false;
    bool vmlinux_stripped = false;
    std::optional<uint64_t> source_vmlinux_size;
    std::optional<int64_t> source_vmlinux_mtime_secs;
    std::vector<std::pair<std::string, std::string>> extra_kconfig;   // basename, crc32
    std::optional<double> build_seconds;
    std::map<std::string, std::string> tool_versions;                 // "make" -> "GNU Make 4.3"
    std::vector<std::string> schedulers;                              // names under sched_ext/
    std::vector<Artifact> artifacts;                                  // checksums of every file
    ojson to_json() const;
    // Throws nlohmann exceptions (type_error/out_of_range) on a wrong shape and
    // Error(input) on an unknown schema; read_entry() classifies them.
    static EntryMetadata from_json(const json &j);
};

enum class KconfigStatus { matches, stale, untracked };
const char *kconfig_status_name(KconfigStatus s);

struct CacheEntry {
    std::string key;
    std::string path;                            // ROOT/key
    std::optional<EntryMetadata> meta;           // set when valid
    std::string error;                           // corrupt reason
    std::string error_kind;                      // missing, unreadable, schema_drift, ...
    bool valid() const { return meta.has_value(); }
    std::string image_path() const;
    std::optional<std::string> vmlinux_path() const;
    std::optional<std::string> config_path() const;
    std::map<std::string, std::string> scheduler_paths() const;
    KconfigStatus kconfig_status(const std::string &current_kc) const;
};

// The kernel descriptor handed to ktstr-vmm (schema ktstr.kernel/1):
// {bzimage, vmlinux, config, version, kconfig_hash, cache_key, schedulers} plus
// the spec's image, dir, arch, cache_hit, dirty, source and how it was found.
struct KernelDescriptor {
    std::string image;
    std::optional<std::string> vmlinux, config, version, kconfig_hash, cache_key;
    std::map<std::string, std::string> schedulers;
    std::string dir;
    std::string arch;
    bool cache_hit = false;
    bool dirty = false;
    std::optional<SourceInfo> source;
    std::string resolved_by;                     // which resolution step found it
    ojson to_json() const;
};
KernelDescriptor descriptor_of(const CacheEntry &e, bool cache_hit);

// ---- locks (spec 2.7) ----------------------------------------------------------------

enum class LockMode { shared, exclusive };

class FileLock {
public:
    FileLock() = default;
    FileLock(unique_fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    bool held() const { return bool(fd_); }
    const std::string &path() const { return path_; }
    void release() { fd_.reset(); }
private:
    unique_fd fd_;
    std::string path_;
};

// Non-blocking attempt; nullopt when another holder conflicts.  Creates the
// lock file (and its directory).  Throws Error(environment) on remote
// filesystems and other failures.
std::optional<FileLock> try_lock(const std::string &path, LockMode mode);
// Poll every 100 ms up to timeout_s (< 0: forever).  on_wait is called once
// when the first attempt fails.  Timeout: Error(environment) naming what,
// the mode, the lock file and its holders.
FileLock wait_lock(const std::string &path, LockMode mode, double timeout_s, const std::string &what,
                   const std::function<void()> &on_wait = {});

struct ProcLock {
    std::string type;          // FLOCK, POSIX, OFDLCK, LEASE
    std::string access;        // READ, WRITE
    pid_t pid = 0;
    uint32_t dev_major = 0, dev_minor = 0;
    uint64_t inode = 0;
    bool blocked = false;      // a "->" waiter line
};
std::vector<ProcLock> parse_proc_locks(std::string_view text);
// major:minor (as in mountinfo) of the mount covering path: the longest mount
// point that is a prefix of it.
std::optional<std::pair<uint32_t, uint32_t>> mount_dev_of(std::string_view mountinfo_text,
                                                          const std::string &canonical_path);

struct LockHolder {
    pid_t pid = 0;
    std::string cmdline;
};
std::vector<LockHolder> lock_holders(const std::string &lock_path);
// "  pid=N cmd=..." lines, or "  <none recorded>".
std::string format_holders(const std::vector<LockHolder> &holders);
// NUL -> space, at most 100 characters then "…".
std::string render_cmdline(std::string_view raw);
// Name of a remote/network filesystem magic (NFS, CIFS, ...) or nullopt.
std::optional<std::string> remote_fs_name(uint64_t fs_magic);
// statfs(path, else its nearest existing parent); remote -> Error(environment).
void require_local_fs(const std::string &path);

// ---- the cache ---------------------------------------------------------------------------

struct StoreInput {
    std::string key;
    std::string image;                               // built image (copied)
    std::optional<std::string> vmlinux;              // built vmlinux (stripped into the entry)
    std::optional<std::string> config;               // final .config
    std::map<std::string, std::string> schedulers;   // name -> built binary
    std::vector<std::string> logs;                   // copied to logs/
    EntryMetadata meta;                              // has_vmlinux, vmlinux_stripped, artifacts: set by store
};

struct CleanPlan {
    std::vector<CacheEntry> remove;
    std::vector<CacheEntry> keep;
    std::vector<CacheEntry> busy;                    // lock held by a reader or a store: skipped
};

class Cache {
public:
    explicit Cache(std::string root) : root_(std::move(root)) {}
    const std::string &root() const { return root_; }
    std::string entry_dir(const std::string &key) const { return root_ + "/" + key; }
    std::string entry_lock_path(const std::string &key) const { return root_ + "/.locks/" + key + ".lock"; }
    std::string build_lock_path(const std::string &key) const { return root_ + "/.locks/build-" + key + ".lock"; }
    std::string source_lock_path(const std::string &canonical_tree) const;
    std::string log_dir(const std::string &key) const { return root_ + "/.logs/" + key; }

    // Create the root (and .locks), check it is local and writable.  Throws
    // Error(environment) naming the directory and KTSTR_CACHE_DIR.
    void ensure_writable() const;

    // One entry, valid or classified corrupt.
    CacheEntry read_entry(const std::string &key) const;
    // Valid entries by built_at descending, then corrupt ones; dot-names and
    // non-directories skipped; a missing root is empty.
    std::vector<CacheEntry> list() const;
    // A valid entry, or nullopt (invalid key names are a miss).
    std::optional<CacheEntry> lookup(const std::string &key) const;

    // Atomic store (spec 2.8): build ROOT/.tmp-{key}-{pid}, then rename into
    // place (RENAME_EXCHANGE over an existing entry).  Returns the entry.
    // entry_lock_timeout_s bounds the wait for readers of an old entry.
    CacheEntry store(StoreInput in, double entry_lock_timeout_s = 60) const;

    // Remove .tmp-*-PID directories whose PID is dead; returns how many.
    size_t sweep_orphans() const;

    // Which entries clean would remove: every corrupt entry, plus valid ones
    // beyond the `keep` newest (keep = nullopt: all valid ones; corrupt_only:
    // none).  Entries whose lock is held are reported busy and kept.
    CleanPlan plan_clean(std::optional<size_t> keep, bool corrupt_only) const;
    // Remove the planned entries (ENOENT counts as removed).  Returns the
    // number removed; throws Error(environment) "removed X of Y: ..." on failure.
    size_t remove_entries(const std::vector<CacheEntry> &entries) const;

private:
    std::string root_;
};

// Classify a metadata read failure into (reason, error_kind); exposed for tests.
std::pair<std::string, std::string> classify_metadata_error(const std::string &text);

// ---- vmlinux strip (spec 2.9) --------------------------------------------------------

struct StripResult {
    bool stripped = false;        // false: raw copy (the warning says why)
    std::string warning;
    uint64_t input_size = 0, output_size = 0;
};
// Write `out` = `in` without DWARF (.debug_*), .comment and non-loaded
// relocation sections.  Section numbering is kept (dropped sections become
// empty NOBITS) so every st_shndx stays valid; all loadable segments, the
// program headers, .symtab/.strtab, .BTF and the IKCONFIG blob survive.
// The result is checked (ELF parses, BTF loads with libbpf, key symbols
// present); if that fails the input is copied raw and the warning says why.
StripResult strip_vmlinux(const std::string &in, const std::string &out);

// What the monitor needs from a vmlinux; empty string when it is all there.
std::string check_vmlinux_for_monitor(const std::string &path);

// ---- source trees ---------------------------------------------------------------------------

struct TreeState {
    bool is_git = false;
    bool dirty = true;
    std::optional<std::string> head;   // full sha
    std::string why;                   // why it is dirty / not git
};
// Git <=> `git rev-parse --show-toplevel` equals dir; dirty <=> tracked
// changes (untracked files and submodules ignored).  Non-git -> dirty.
TreeState inspect_tree(const std::string &dir);
// A kernel source tree holds Makefile and Kconfig; returns the canonical path.
// Throws Error(input) "DIR: not a kernel source tree (missing Makefile or Kconfig)".
std::string require_kernel_tree(const std::string &dir);

struct ArchiveIdentity {
    std::string version;     // from the top-level Makefile inside
    uint32_t crc = 0;        // CRC-32 of the archive bytes
    std::string top_dir;     // the one top-level directory
};
// Identity of a kernel source archive (tar, tar.xz, tar.gz, ...).  Remembered
// in ROOT/.archives keyed by the canonical path and validated by (device,
// inode, size, mtime), so a second look costs one stat().
ArchiveIdentity archive_identity(const std::string &archive, const Cache *cache);

// ---- the build pipeline -----------------------------------------------------------------------

enum class SourceKind { local, archive, version, git };

struct BuildRequest {
    SourceKind kind = SourceKind::local;
    std::string source;                      // tree dir, archive file or version
    std::string git_url, git_ref;
    std::vector<std::string> extra_kconfig;  // files, in order
    bool schedulers = false;
    bool force = false;                      // rebuild even when cached
    bool in_tree = false;                    // local: build inside the tree (default: out of tree)
    std::string build_dir;                   // local out-of-tree dir (default under the cache)
    unsigned jobs = 0;                       // 0: the CPUs this process may use
    std::string cc;                          // CC= for make (default: gcc)
    std::string llvm_suffix;                 // LLVM= for tools/sched_ext ("-16"; default: detected)
    bool keep_work = false;                  // keep temporary work dirs (archives, downloads)
    double make_timeout_s = 0;               // non-build make targets: 30 min when 0
    Arch arch = host_arch();
};

struct BuildOutcome {
    std::string key;
    bool cache_hit = false;
    bool stored = false;
    bool dirty = false;
    double seconds = 0;
    KernelDescriptor descriptor;
};

// Progress reporting: a redrawn line on a terminal, plain lines otherwise.
class Progress {
public:
    explicit Progress(bool tty);
    void step(const std::string &what);          // a new phase (always printed)
    void activity(const std::string &line);      // a make output line (rate-limited)
    void done();
    double elapsed() const;
private:
    bool tty_;
    Clock::time_point t0_, last_;
    std::string phase_;
    bool line_open_ = false;
};

// CPUs in this process's affinity mask (at least 1).
unsigned allowed_cpus();

// Look up or build (spec 2.5): key, cache hit, else configure (kconfig
// library: apply + early critical check), make, late check, schedulers,
// strip and store.  Concurrent builds of one key build once (build lock +
// re-lookup).
BuildOutcome build_kernel(const Cache &cache, const BuildRequest &req, Progress &progress);

// The cache key the request maps to without building anything (archive:
// identity; local: tree state; version: tarball key; git: needs the clone, so nullopt).
std::optional<std::string> request_key(const Cache &cache, const BuildRequest &req, std::string *why = nullptr);

// ---- resolution (spec 2.10) -----------------------------------------------------------------

struct ResolveRequest {
    std::string explicit_id;                 // argument / --kernel; empty: implicit
    std::string current_kc;                  // hash of the effective fragment
    Arch arch = host_arch();
    Getenv env = process_env();
    std::string fixtures_hint;               // repo-relative fixture dir (tools pass theirs)
    bool allow_host = true;                  // host kernel as the last resort
};
struct ResolveResult {
    KernelDescriptor kernel;
    std::vector<std::string> searched;       // "step: outcome", in order
};
// Explicit path/version/key, KTSTR_TEST_KERNEL, KTSTR_KERNEL, the cache
// (newest entry whose kconfig matches), the fixture kernel, ./linux ../linux,
// the host kernel.  Throws Error(environment) "no kernel found" listing what
// was searched and the remedies.
ResolveResult resolve_kernel(const Cache &cache, const ResolveRequest &req);
// A kernel in a directory or file: kernel.json, an image with vmlinux/config/
// sched_ext beside it, or a build tree.  nullopt when nothing bootable is there.
std::optional<KernelDescriptor> kernel_at_path(const std::string &path, Arch a);
// The fixture directory: $KTSTR_FIXTURES (the linux-6.12 dir or its parent),
// else `hint`.  Empty when none holds a bzImage.
std::string find_fixture_kernel(const Getenv &env, const std::string &hint);

} // namespace ktstr::kbuild
