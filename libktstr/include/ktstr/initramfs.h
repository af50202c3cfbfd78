// libktstr/initramfs: the guest's root filesystem (vmm spec section 12).
//
//  * CpioWriter: cpio "newc" archives as the kernel's init/initramfs.c reads them;
//  * LZ4 legacy framing (kernel CONFIG_RD_LZ4) and its inverse;
//  * Resolver: a binary's shared-library closure (ELF interpreter, DT_NEEDED, RPATH/RUNPATH
//    with $ORIGIN, LD_LIBRARY_PATH, /etc/ld.so.cache, the default directories);
//  * build_base / build_suffix: the two archives a run boots with, the base cached by
//    content under the user's cache directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktstr/util.h"

namespace ktstr::initramfs {

// ---- cpio newc -----------------------------------------------------------------

inline constexpr size_t CPIO_HEADER_SIZE = 110;
inline constexpr size_t CPIO_MAX_NAME = 4095;   // PATH_MAX including the NUL

// Archive path of a guest path: leading '/' dropped; rejects empty names, empty or "."
// or ".." components, NUL bytes and names longer than CPIO_MAX_NAME (Error(input)).
std::string archive_path(std::string_view guest_path);

// Appends entries to an in-memory archive.  Inode numbers are assigned in order; mtime,
// uid and gid are 0 so that equal inputs give equal bytes.
class CpioWriter {
public:
    void dir(std::string_view path, uint32_t perm = 0755);
    void file(std::string_view path, std::string_view data, uint32_t perm = 0644);
    void symlink(std::string_view path, std::string_view target);
    // type 'c' or 'b'
    void device(std::string_view path, char type, uint32_t major, uint32_t minor,
                uint32_t perm = 0600);
    // Hard links: one inode, nlink = paths.size(); the data travels with the last name
    // (the GNU cpio convention, which the kernel also accepts).
    void hardlinks(const std::vector<std::string> &paths, std::string_view data,
                   uint32_t perm = 0644);
    // "TRAILER!!!", then zeros up to a multiple of `align`.
    void trailer(size_t align = 512);

    const std::string &bytes() const { return out_; }
    std::string take() { return std::move(out_); }
    size_t entries() const { return entries_; }
    void reserve(size_t n) { out_.reserve(n); }

private:
    void entry(std::string_view path, uint32_t mode, uint32_t ino, uint32_t nlink,
               std::string_view data, uint32_t rdev_major = 0, uint32_t rdev_minor = 0);
    std::string out_;
    uint32_t next_ino_ = 721;
    size_t entries_ = 0;
};

// One parsed entry (for tests and `ktstr-initramfs list`).
struct CpioEntry {
    std::string name;
    uint32_t ino = 0, mode = 0, nlink = 0, rdev_major = 0, rdev_minor = 0;
    std::string data;
};
// Parse a newc archive up to its trailer; Error(input) on a malformed header.
std::vector<CpioEntry> read_cpio(std::string_view archive);

// ---- LZ4 legacy ----------------------------------------------------------------------

inline constexpr uint32_t LZ4_LEGACY_MAGIC = 0x184C2102;   // bytes 02 21 4C 18
inline constexpr size_t LZ4_LEGACY_CHUNK = 8u << 20;       // the kernel's maximum block

// Magic, then per chunk of input {u32 LE compressed size, raw LZ4 block}.  Chunks are
// compressed in parallel on up to `threads` threads (0: the online CPUs, at most 8); the
// kernel accepts any chunk size up to 8 MiB.
std::string lz4_legacy_compress(std::string_view in, size_t chunk = 1u << 20, unsigned threads = 0);
// Inverse, for tests and checks: Error(input) on corrupt data; stops at a zero length or
// the end, and continues across concatenated streams (magic again) as the kernel does.
std::string lz4_legacy_decompress(std::string_view in);
bool is_lz4_legacy(std::string_view data);

// ---- ELF and the shared-library closure ------------------------------------------------

struct ElfInfo {
    bool dynamic = false;                 // has PT_DYNAMIC
    std::string interp;                   // PT_INTERP, empty when static
    std::vector<std::string> needed;      // DT_NEEDED in order
    std::vector<std::string> rpath;       // DT_RPATH entries (unexpanded)
    std::vector<std::string> runpath;     // DT_RUNPATH entries (unexpanded)
};
bool is_elf(const std::string &path);
// Error(input) naming the file on anything malformed; 64-bit little-endian only.
ElfInfo read_elf(const std::string &path);
ElfInfo parse_elf(std::string_view image, const std::string &where);

// Expand $ORIGIN, $LIB, $PLATFORM (and ${...}) in one search-path entry.
std::string expand_dst(std::string_view entry, std::string_view origin_dir);

// A file of the closure: where it really is, and every path the guest should see it at
// (the first is the canonical path, the rest become symlinks to it).
struct ClosureFile {
    std::string canonical;
    std::vector<std::string> paths;
};

class Resolver {
public:
    // ld_so_cache: path of the cache file ("" to skip it); ld_library_path: as in the env.
    explicit Resolver(std::string ld_so_cache = "/etc/ld.so.cache",
                      std::string ld_library_path = env_ld_library_path(),
                      std::vector<std::string> default_dirs = standard_dirs());
    static std::string env_ld_library_path();
    static std::vector<std::string> standard_dirs();

    // The interpreter and every library `binary` needs, transitively, in BFS order.
    // Error(input) listing every soname that could not be found.  A static binary has an
    // empty closure.
    std::vector<ClosureFile> closure(const std::string &binary);

    // Every file the last closure() call looked at (for cache validation).
    const std::vector<std::string> &inputs() const { return inputs_; }

private:
    std::optional<std::string> find(const std::string &soname, const ElfInfo &who,
                                    const std::string &origin, const std::string &interp_dir,
                                    bool *from_private_dir);
    void load_cache();
    std::string cache_path_, ld_library_path_;
    std::vector<std::string> default_dirs_;
    bool cache_loaded_ = false;
    std::vector<std::pair<std::string, std::string>> cache_;   // soname -> path
    std::vector<std::string> inputs_;
};

// ---- the run's archives ------------------------------------------------------------------

// `--include HOST[:GUEST]`: GUEST defaults to /include-files/<basename of HOST>.
struct Include {
    std::string host;
    std::string guest;
};
Include parse_include(std::string_view spec);

struct ExtraFile {
    std::string host;
    std::string guest;          // e.g. "/scheduler"
    uint32_t perm = 0755;
};

struct BaseSpec {
    std::string init;                   // host path of the agent -> /init
    std::string busybox;                // optional -> /bin/busybox
    std::vector<ExtraFile> extras;      // after busybox, e.g. the scheduler
    std::vector<Include> includes;      // regular files; ELF ones bring their closure
};

enum class Compression { none, lz4 };
Compression parse_compression(std::string_view s);   // "none" | "lz4"

struct BuildOptions {
    Compression compression = Compression::lz4;
    std::string cache_dir;              // empty: no cache
    std::string ld_so_cache = "/etc/ld.so.cache";
};

// Default archive directory: $KTSTR_CACHE_DIR/.initramfs (hidden inside the
// kernel cache root), else $XDG_CACHE_HOME/ktstr/initramfs, else
// ~/.cache/ktstr/initramfs.  BuildOptions.cache_dir holds the archives directly.
std::string default_cache_dir();

struct Archive {
    Mapping mapped;             // cache hits: the archive file, mapped read-only
    std::string owned;          // fresh builds
    std::string_view bytes() const {
        return mapped ? std::string_view(reinterpret_cast<const char *>(mapped.data()), mapped.size())
                      : std::string_view(owned);
    }
    bool cache_hit = false;
    std::string cache_path;     // file holding these bytes, when cached
    uint64_t uncompressed_size = 0;
    size_t entries = 0;
    std::string key;            // hex16 content hash of the uncompressed archive
};

// The base archive, in spec order: directories, /init, /bin/busybox, extras, includes,
// libraries and interpreters, /.ktstr_init_ok.  Cached by content: a run whose inputs are
// unchanged (same paths, sizes, mtimes, ctimes, inodes) maps the archive built before.
Archive build_base(const BaseSpec &spec, const BuildOptions &opt);

// The per-run suffix: `args` (lines), optional `exec_cmd`, and any other small files.
struct SuffixFile {
    std::string guest;
    std::string data;
    uint32_t perm = 0644;
};
std::string build_suffix(const std::vector<SuffixFile> &files, Compression c);

// Write via a temporary file and rename(), without fsync (rebuildable files).
void replace_file(const std::string &path, std::string_view data, mode_t mode = 0644);

// 64-bit non-cryptographic content hash (cache keys).
uint64_t hash64(std::string_view data, uint64_t seed = 0);

} // namespace ktstr::initramfs

namespace ktstr::initramfs {

// ---- the guest agent's job image ---------------------------------------------------------

// What the agent (libktstr/guest) should run: the files of the suffix.  kind is the first
// line of /args ("exec", "shell", "scenario", ...), args the following lines; exec_cmd goes
// to /exec_cmd; `files` adds anything else a job kind reads (e.g. a scenario JSON).
struct JobSpec {
    std::string kind = "exec";
    std::vector<std::string> args;
    std::optional<std::string> exec_cmd;
    std::vector<SuffixFile> files;
};
std::vector<SuffixFile> job_suffix_files(const JobSpec &job);

// Base spec for the agent: `agent` as /init (default: the ktstr-guest companion program),
// /bin/busybox when busybox_path exists, the includes.
BaseSpec agent_base(const std::vector<Include> &includes, std::string agent = "",
                    std::string busybox_path = "/bin/busybox");

// Base + suffix, ready to boot: the two archives back to back.
struct BootImage {
    Archive base;
    std::string suffix;
    size_t size() const { return base.bytes().size() + suffix.size(); }
    // Write both to `path` (replace_file, mode 0644).
    void write(const std::string &path) const;
    // Both into one buffer (e.g. to copy into guest memory).
    std::string join() const;
};
BootImage build_boot_image(const BaseSpec &base, const JobSpec &job, const BuildOptions &opt);

} // namespace ktstr::initramfs
