// Unit tests for libktstr/kbuild: identifiers, keys, cache root, metadata,
// corrupt-entry classification, the atomic store, locks, clean, dirty-tree
// detection, the vmlinux strip and resolution.  No real kernel is compiled:
// pipeline tests use a tiny fake kernel tree whose Makefile "builds" in ms.
#include <doctest/doctest.h>

#include "temp_dir.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ktstr/kbuild.h"
#include "ktstr/process.h"

using namespace ktstr;
using namespace ktstr::kbuild;
namespace fs = std::filesystem;

namespace {


Getenv env_of(std::map<std::string, std::string> vars) {
    auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
    return [shared](const char *n) -> const char * {
        auto it = shared->find(n);
        return it == shared->end() ? nullptr : it->second.c_str();
    };
}

void put(const std::string &path, const std::string &text) {
    fs::create_directories(fs::path(path).parent_path());
    write_file_atomic(path, text);
}

// A valid entry's metadata with the given key fields.
EntryMetadata sample_meta(const std::string &built_at, const std::string &kc = "0badc0de") {
    EntryMetadata m;
    m.version = "6.12.118";
    m.source.type = SourceType::tarball;
    m.source.archive_path = "/usr/src/linux-source-6.12.tar.xz";
    m.arch = "x86_64";
    m.image_name = "bzImage";
    m.config_hash = "12345678";
    m.built_at = built_at;
    m.kconfig_hash = kc;
    m.has_vmlinux = false;
    m.vmlinux_stripped = false;
    return m;
}

// Store an entry with a fake image through the real store path.
CacheEntry store_fake(const Cache &c, const std::string &key, const std::string &built_at,
                      const std::string &image_text = "fake image\n", const std::string &kc = "0badc0de") {
    std::string img = c.root() + "/../img-" + key;
    put(img, image_text);
    StoreInput in;
    in.key = key;
    in.image = img;
    in.meta = sample_meta(built_at, kc);
    return c.store(in);
}

int run_git(const std::string &dir, std::vector<std::string> args) {
    std::vector<std::string> argv = {"git", "-C", dir, "-c", "user.email=t@example.org", "-c", "user.name=t"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_capture(argv, 60).status;
}

} // namespace

// ---- identifiers --------------------------------------------------------------------

TEST_CASE("kbuild: version grammar") {
    CHECK(parse_version("6.14"));
    CHECK(parse_version("6.14.2"));
    CHECK(parse_version("6.15-rc3"));
    CHECK(parse_version("6.15.1-rc3"));
    CHECK_FALSE(parse_version("6"));
    CHECK_FALSE(parse_version("v6.14"));
    CHECK_FALSE(parse_version("6.14.2.1"));
    CHECK_FALSE(parse_version("6.15-rc"));
    CHECK_FALSE(parse_version("6..14"));
    CHECK_FALSE(parse_version("6.14."));
    CHECK_FALSE(parse_version(""));
    auto v = parse_version("6.15-rc3");
    REQUIRE(v);
    CHECK(v->major == 6);
    CHECK(v->minor == 15);
    CHECK(v->rc == 3u);
    CHECK(v->is_series_prefix() == false);
    CHECK(parse_version("6.12")->is_series_prefix());
    CHECK_FALSE(parse_version("6.12.8")->is_series_prefix());
}

TEST_CASE("kbuild: version order puts rcs before the release") {
    auto cmp = [](const char *a, const char *b) { return compare_versions(*parse_version(a), *parse_version(b)); };
    CHECK(cmp("6.10-rc3", "6.10") < 0);
    CHECK(cmp("6.10", "6.10.0") == 0);
    CHECK(cmp("6.10.1", "6.10") > 0);
    CHECK(cmp("6.10-rc3", "6.10-rc10") < 0);
    CHECK(cmp("6.9.12", "6.10-rc1") < 0);
    CHECK(cmp("7.0", "6.99") > 0);
}

TEST_CASE("kbuild: kernel identifier table") {
    auto env = env_of({{"HOME", "/home/dev"}});
    struct Row { const char *in; IdKind kind; const char *text; };
    Row rows[] = {
        {"6", IdKind::cache_key, "6"},
        {"v6.14", IdKind::cache_key, "v6.14"},
        {"6.14.2.1", IdKind::cache_key, "6.14.2.1"},
        {"6.15-rc3", IdKind::version, "6.15-rc3"},
        {"6.12", IdKind::version, "6.12"},
        {"./x", IdKind::path, "./x"},
        {"~/x", IdKind::path, "/home/dev/x"},
        {"a/b", IdKind::path, "a/b"},
        {".hidden", IdKind::path, ".hidden"},
        {"linux", IdKind::cache_key, "linux"},
        {"6.12.118-archive-1a2b3c4d-x86_64-kcdeadbeef", IdKind::cache_key, "6.12.118-archive-1a2b3c4d-x86_64-kcdeadbeef"},
    };
    for (auto &r : rows) {
        CAPTURE(r.in);
        KernelId id = parse_kernel_id(r.in, env);
        CHECK(id.kind == r.kind);
        CHECK(id.text == r.text);
    }
    KernelId g = parse_kernel_id("git+https://h/x.git#fix#2", env);
    CHECK(g.kind == IdKind::git);
    CHECK(g.git_url == "https://h/x.git#fix");
    CHECK(g.git_ref == "2");
    CHECK_THROWS_AS(parse_kernel_id("git+u#", env), Error);
    CHECK_THROWS_AS(parse_kernel_id("git+#r", env), Error);
    KernelId r = parse_kernel_id("6.10..6.12", env);
    CHECK(r.kind == IdKind::range);
    CHECK(r.range_start == "6.10");
    CHECK(r.range_end == "6.12");
    CHECK(parse_kernel_id("6.10..6.10", env).kind == IdKind::range);
    for (const char *inverted : {"7.0..6.99", "6.10..6.10-rc3"}) {
        CAPTURE(inverted);
        try {
            parse_kernel_id(inverted, env);
            FAIL("no throw");
        } catch (const Error &e) {
            CHECK(e.kind() == ErrorKind::usage);
            CHECK(std::string(e.what()).find("swap") != std::string::npos);
        }
    }
    // Not both sides versions: a path (contains '/'), or a key.
    CHECK(parse_kernel_id("a..b", env).kind == IdKind::cache_key);
}

TEST_CASE("kbuild: identifier lists keep order and duplicates, drop empty segments") {
    auto l = parse_kernel_id_list(" 6.12.1, ,./k,6.12.1,", env_of({}));
    REQUIRE(l.size() == 3);
    CHECK(l[0].text == "6.12.1");
    CHECK(l[1].kind == IdKind::path);
    CHECK(l[2].text == "6.12.1");
}

TEST_CASE("kbuild: kernel version from a top-level Makefile") {
    CHECK(makefile_kernel_version("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\nNAME = x\n") ==
          "6.12.118");
    CHECK(makefile_kernel_version("VERSION = 6\nPATCHLEVEL = 15\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n") == "6.15.0-rc3");
    CHECK_FALSE(makefile_kernel_version("all:\n\techo hi\n"));
    // KERNELVERSION = ... must not be taken for VERSION.
    CHECK(makefile_kernel_version("VERSIONX = 9\nVERSION = 6\nPATCHLEVEL = 1\n") == "6.1");
}

// ---- keys -----------------------------------------------------------------------------

TEST_CASE("kbuild: cache keys per source kind") {
    const std::string sha = "0123456789abcdef0123456789abcdef01234567";
    CHECK(tarball_key("6.12.8", Arch::x86_64, "cafe0001") == "6.12.8-tarball-x86_64-kccafe0001");
    CHECK(archive_key("6.12.118", 0x1a2b3c4d, Arch::x86_64, "cafe0001") == "6.12.118-archive-1a2b3c4d-x86_64-kccafe0001");
    CHECK(git_key("feature/x", sha, Arch::aarch64, "cafe0001") == "feature_x-git-0123456-aarch64-kccafe0001");
    CHECK(local_key(sha, std::nullopt, Arch::x86_64, "cafe0001") == "local-0123456-x86_64-kccafe0001");
    CHECK(local_key(sha, 0xdeadbeef, Arch::x86_64, "cafe0001") == "local-0123456-x86_64-cfgdeadbeef-kccafe0001");
    CHECK(local_unknown_key("/src/linux", Arch::x86_64, "cafe0001") ==
          "local-unknown-" + hex8(crc32_of(std::string_view("/src/linux"))) + "-x86_64-kccafe0001");
    // Only the kconfig hash differs -> a different key.
    CHECK(tarball_key("6.12.8", Arch::x86_64, "cafe0001") != tarball_key("6.12.8", Arch::x86_64, "cafe0002"));
    for (auto &k : {tarball_key("6.12.8", Arch::x86_64, "cafe0001"), git_key("a/b", sha, Arch::x86_64, "c")})
        CHECK(valid_cache_key(k));
}

TEST_CASE("kbuild: key and image-name validation") {
    for (const char *bad : {"", "  ", ".", "..", "a/b", "a\\b", "x..y", ".tmp-abc-12"}) {
        CAPTURE(bad);
        CHECK_FALSE(valid_cache_key(bad));
    }
    CHECK_FALSE(valid_cache_key(std::string("a\0b", 3)));
    CHECK(valid_cache_key("6.12.8-tarball-x86_64-kc01234567"));
    CHECK(valid_cache_key(".config-like"));   // dot names are skipped by list, not invalid keys
    CHECK(valid_image_name("bzImage"));
    for (const char *bad : {"", "..", "a/b", "../bzImage"}) CHECK_FALSE(valid_image_name(bad));
}

// ---- cache root -----------------------------------------------------------------------

TEST_CASE("kbuild: cache root cascade and the four HOME errors") {
    CHECK(cache_root(env_of({{"KTSTR_CACHE_DIR", "/c"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}})) == "/c");
    CHECK(cache_root(env_of({{"KTSTR_CACHE_DIR", ""}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}})) == "/x/ktstr/kernels");
    CHECK(cache_root(env_of({{"XDG_CACHE_HOME", ""}, {"HOME", "/h"}})) == "/h/.cache/ktstr/kernels");
    std::vector<std::pair<std::map<std::string, std::string>, const char *>> bad = {
        {{}, "HOME is not set"},
        {{{"HOME", ""}}, "HOME is empty"},
        {{{"HOME", "/"}}, "HOME is '/'"},
        {{{"HOME", "rel/dir"}}, "not an absolute path"},
    };
    for (auto &[vars, msg] : bad) {
        CAPTURE(msg);
        try {
            cache_root(env_of(vars));
            FAIL("no throw");
        } catch (const Error &e) {
            CHECK(std::string(e.what()).find(msg) != std::string::npos);
            CHECK(std::string(e.what()).find("KTSTR_CACHE_DIR") != std::string::npos);
            CHECK(e.exit_code() == 3);
        }
    }
}

// ---- metadata ---------------------------------------------------------------------------

TEST_CASE("kbuild: metadata round trip keeps nulls and optional fields") {
    EntryMetadata m = sample_meta("2026-12-03T14:00:00Z");
    m.version.reset();
    m.config_hash.reset();
    m.kconfig_hash.reset();
    m.source.type = SourceType::local;
    m.source.source_tree_path = "/src/linux";
    m.source.git_hash = std::nullopt;
    m.source_vmlinux_size = 123456789;
    m.source_vmlinux_mtime_secs = 1700000000;
    m.extra_kconfig = {{"debug.kconfig", "89abcdef"}};
    m.build_seconds = 1234.5;
    m.tool_versions = {{"make", "GNU Make 4.3"}};
    m.schedulers = {"scx_simple"};
    m.artifacts = {{"bzImage", 42, "0000002a"}};
    ojson j = m.to_json();
    CHECK(j["schema"] == "ktstr.kernel-entry/1");
    CHECK(j["version"].is_null());
    CHECK(j["source"]["type"] == "local");
    CHECK(j["source"]["git_hash"].is_null());   // every variant key is emitted
    CHECK(j["source"].contains("source_tree_path"));
    // Field order as the spec lists it.
    std::vector<std::string> order;
    for (auto &[k, v] : j.items()) order.push_back(k);
    std::vector<std::string> want = {"schema", "version", "source", "arch", "image_name", "config_hash", "built_at",
                                     "ktstr_kconfig_hash", "has_vmlinux", "vmlinux_stripped"};
    CHECK(std::vector<std::string>(order.begin(), order.begin() + 10) == want);
    EntryMetadata back = EntryMetadata::from_json(json::parse(j.dump()));
    CHECK(back.to_json() == j);
    CHECK_FALSE(back.version);
    CHECK(back.source.source_tree_path == "/src/linux");
    CHECK(back.source_vmlinux_size == 123456789u);
    CHECK(back.extra_kconfig == m.extra_kconfig);
    // Unknown fields are ignored.
    json extra = json::parse(j.dump());
    extra["from_the_future"] = 1;
    CHECK_NOTHROW(EntryMetadata::from_json(extra));
}

TEST_CASE("kbuild: each corrupt entry class is classified") {
    TempDir t;
    Cache c(t / "kernels");
    store_fake(c, "good", "2026-12-03T10:00:00Z");
    std::string good = read_file(c.entry_dir("good") + "/metadata.json");
    auto entry = [&](const std::string &key, const std::optional<std::string> &meta, bool image = true) {
        fs::create_directories(c.entry_dir(key));
        if (meta) put(c.entry_dir(key) + "/metadata.json", *meta);
        if (image) put(c.entry_dir(key) + "/bzImage", "x");
    };
    entry("a-missing", std::nullopt);
    entry("b-malformed", "{\"version\": ]");
    entry("c-truncated", good.substr(0, good.size() / 2));
    json drift = json::parse(good);
    drift["has_vmlinux"] = "yes";
    entry("d-drift", drift.dump());
    json noschema = json::parse(good);
    noschema.erase("schema");
    entry("e-noschema", noschema.dump());
    entry("f-noimage", good, false);
    entry("g-unreadable", std::nullopt);
    fs::create_directories(c.entry_dir("g-unreadable") + "/metadata.json");   // a directory: read() fails

    std::map<std::string, std::string> kinds;
    for (auto &e : c.list()) kinds[e.key] = e.valid() ? "valid" : e.error_kind;
    CHECK(kinds["good"] == "valid");
    CHECK(kinds["a-missing"] == "missing");
    CHECK(kinds["b-malformed"] == "malformed");
    CHECK(kinds["c-truncated"] == "truncated");
    CHECK(kinds["d-drift"] == "schema_drift");
    CHECK(kinds["e-noschema"] == "schema_drift");
    CHECK(kinds["f-noimage"] == "image_missing");
    CHECK(kinds["g-unreadable"] == "unreadable");
    CHECK(c.read_entry("f-noimage").error == "image file bzImage missing from entry directory");
    CHECK(classify_metadata_error("metadata.json parse error: x").second == "parse_error");
    CHECK(classify_metadata_error("something else").second == "unknown");
    // Lookup hands out valid entries only; invalid key names are a miss.
    CHECK(c.lookup("good"));
    CHECK_FALSE(c.lookup("c-truncated"));
    CHECK_FALSE(c.lookup("../kernels/good"));
}

TEST_CASE("kbuild: list order, skipped names, missing root") {
    TempDir t;
    Cache c(t / "kernels");
    CHECK(c.list().empty());   // the root does not exist yet
    store_fake(c, "older", "2026-12-01T00:00:00Z");
    store_fake(c, "newest", "2026-12-03T00:00:00Z");
    store_fake(c, "middle", "2026-12-02T00:00:00Z");
    fs::create_directories(c.entry_dir("zz-corrupt"));
    fs::create_directories(t / "kernels/.tmp-x-1");
    fs::create_directories(t / "kernels/.hidden");
    put(t / "kernels/plainfile", "x");
    std::vector<std::string> keys;
    for (auto &e : c.list()) keys.push_back(e.key);
    CHECK(keys == std::vector<std::string>{"newest", "middle", "older", "zz-corrupt"});
}

// ---- store -------------------------------------------------------------------------------

TEST_CASE("kbuild: store replaces an entry atomically while a reader holds the old image") {
    TempDir t;
    Cache c(t / "kernels");
    CacheEntry first = store_fake(c, "k", "2026-12-01T00:00:00Z", std::string(1 << 20, 'A'));
    CHECK(first.valid());
    CHECK(first.meta->artifacts.size() == 1);
    CHECK(first.meta->artifacts[0].crc32 == hex8(crc32_of(std::string(1 << 20, 'A'))));
    unique_fd reader(::open(first.image_path().c_str(), O_RDONLY));
    REQUIRE(reader);
    CacheEntry second = store_fake(c, "k", "2026-12-02T00:00:00Z", std::string(1 << 20, 'B'));
    CHECK(second.meta->built_at == "2026-12-02T00:00:00Z");
    // The old reader still reads the complete old image.
    std::string old(1 << 20, '\0');
    CHECK(::pread(reader.get(), old.data(), old.size(), 0) == ssize_t(old.size()));
    CHECK(old == std::string(1 << 20, 'A'));
    CHECK(read_file(c.entry_dir("k") + "/bzImage") == std::string(1 << 20, 'B'));
    // Nothing is left over: no temp dirs beside the entry.
    for (auto &d : fs::directory_iterator(c.root())) CHECK_FALSE(starts_with(d.path().filename().string(), ".tmp-"));
}

TEST_CASE("kbuild: a failed store leaves no entry and no temp dir") {
    TempDir t;
    Cache c(t / "kernels");
    StoreInput in;
    in.key = "k";
    in.image = t / "does-not-exist";
    in.meta = sample_meta("2026-12-01T00:00:00Z");
    CHECK_THROWS_AS(c.store(in), Error);
    CHECK_FALSE(fs::exists(c.entry_dir("k")));
    for (auto &d : fs::directory_iterator(c.root())) CHECK_FALSE(starts_with(d.path().filename().string(), ".tmp-"));
    in.key = "../escape";
    CHECK_THROWS_AS(c.store(in), Error);
}

TEST_CASE("kbuild: orphan sweep removes only dead pids' temp dirs") {
    TempDir t;
    Cache c(t / "kernels");
    fs::create_directories(c.root());
    pid_t dead = ::fork();
    if (dead == 0) ::_exit(0);
    ::waitpid(dead, nullptr, 0);
    fs::create_directories(cat(c.root(), "/.tmp-k-", dead));
    fs::create_directories(cat(c.root(), "/.tmp-k-", ::getpid()));   // alive: ours
    fs::create_directories(c.root() + "/.tmp-k-0");
    fs::create_directories(c.root() + "/.tmp-k-notapid");
    put(cat(c.root(), "/.tmp-file-", dead), "a file, not a dir");
    CHECK(c.sweep_orphans() == 1);
    CHECK_FALSE(fs::exists(cat(c.root(), "/.tmp-k-", dead)));
    CHECK(fs::exists(cat(c.root(), "/.tmp-k-", ::getpid())));
    CHECK(fs::exists(c.root() + "/.tmp-k-0"));
    CHECK(fs::exists(c.root() + "/.tmp-k-notapid"));
    CHECK(fs::exists(cat(c.root(), "/.tmp-file-", dead)));
}

// ---- clean ---------------------------------------------------------------------------------

TEST_CASE("kbuild: clean --keep N partition") {
    TempDir t;
    Cache c(t / "kernels");
    store_fake(c, "e1", "2026-12-01T00:00:00Z");
    store_fake(c, "e2", "2026-12-02T00:00:00Z");
    store_fake(c, "e3", "2026-12-03T00:00:00Z");
    fs::create_directories(c.entry_dir("bad"));
    auto keys = [](const std::vector<CacheEntry> &v) {
        std::vector<std::string> k;
        for (auto &e : v) k.push_back(e.key);
        return k;
    };
    CleanPlan keep2 = c.plan_clean(2, false);
    CHECK(keys(keep2.keep) == std::vector<std::string>{"e3", "e2"});
    CHECK(keys(keep2.remove) == std::vector<std::string>{"e1", "bad"});
    CleanPlan all = c.plan_clean(std::nullopt, false);
    CHECK(keys(all.remove) == std::vector<std::string>{"e3", "e2", "e1", "bad"});
    CleanPlan keep9 = c.plan_clean(9, false);
    CHECK(keys(keep9.remove) == std::vector<std::string>{"bad"});
    CleanPlan corrupt = c.plan_clean(std::nullopt, true);
    CHECK(keys(corrupt.remove) == std::vector<std::string>{"bad"});
    CHECK(keys(corrupt.keep).size() == 3);
    CleanPlan keep0 = c.plan_clean(0, false);
    CHECK(keep0.remove.size() == 4);

    // An entry in use (a VM holds its lock shared) is skipped, not removed.
    auto held = try_lock(c.entry_lock_path("e2"), LockMode::shared);
    REQUIRE(held);
    CleanPlan busy = c.plan_clean(1, false);
    CHECK(keys(busy.busy) == std::vector<std::string>{"e2"});
    CHECK(keys(busy.remove) == std::vector<std::string>{"e1", "bad"});
    CHECK(c.remove_entries(busy.remove) == 2);
    std::vector<std::string> left;
    for (auto &e : c.list()) left.push_back(e.key);
    CHECK(left == std::vector<std::string>{"e3", "e2"});
    // Removing an entry that already vanished counts as removed.
    CacheEntry ghost;
    ghost.key = "ghost";
    ghost.path = c.entry_dir("ghost");
    CHECK(c.remove_entries({ghost}) == 1);
}

// ---- locks ---------------------------------------------------------------------------------

TEST_CASE("kbuild: /proc/locks parsing, holders, remote filesystems") {
    auto l = parse_proc_locks("1: FLOCK  ADVISORY  WRITE 1234 08:01:1835010 0 EOF\n"
                              "1: -> FLOCK  ADVISORY  WRITE 1240 08:01:1835010 0 EOF\n"
                              "2: POSIX  ADVISORY  READ 99 fd:00:42 0 EOF\n"
                              "garbage\n");
    REQUIRE(l.size() == 3);
    CHECK(l[0].type == "FLOCK");
    CHECK(l[0].access == "WRITE");
    CHECK(l[0].pid == 1234);
    CHECK(l[0].dev_major == 8);
    CHECK(l[0].dev_minor == 1);
    CHECK(l[0].inode == 1835010u);
    CHECK_FALSE(l[0].blocked);
    CHECK(l[1].blocked);
    CHECK(l[2].dev_major == 0xfd);
    CHECK(l[2].type == "POSIX");

    std::string mi = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                     "30 22 0:45 / /home rw - btrfs /dev/sdb rw\n"
                     "31 30 0:46 / /home/dev/nfs rw - nfs srv:/x rw\n";
    CHECK(mount_dev_of(mi, "/home/dev/x") == std::pair<uint32_t, uint32_t>(0, 45));
    CHECK(mount_dev_of(mi, "/home/dev/nfs/a") == std::pair<uint32_t, uint32_t>(0, 46));
    CHECK(mount_dev_of(mi, "/homeother") == std::pair<uint32_t, uint32_t>(8, 1));

    CHECK(render_cmdline(std::string("make\0-j2\0", 9)) == "make -j2");
    std::string longcmd(150, 'x');
    CHECK(render_cmdline(longcmd) == std::string(100, 'x') + "…");
    CHECK(format_holders({}) == "  <none recorded>");
    CHECK(format_holders({{12, "a b"}, {13, "c"}}) == "  pid=12 cmd=a b\n  pid=13 cmd=c");

    CHECK(remote_fs_name(0x6969) == "NFS");
    CHECK(remote_fs_name(0xFF534D42) == "CIFS");
    CHECK(remote_fs_name(0xFE534D42) == "SMB2");
    CHECK(remote_fs_name(0x00C36400) == "Ceph");
    CHECK(remote_fs_name(0x6B414653) == "AFS");
    CHECK(remote_fs_name(0x65735546) == "FUSE");
    CHECK_FALSE(remote_fs_name(0xEF53));   // ext4
}

TEST_CASE("kbuild: locks between two processes, with holders named") {
    TempDir t;
    std::string lp = t / "locks/k.lock";
    auto mine = try_lock(lp, LockMode::exclusive);
    REQUIRE(mine);
    // Our own lock shows up in /proc/locks with our pid.
    auto holders = lock_holders(lp);
    REQUIRE(holders.size() == 1);
    CHECK(holders[0].pid == ::getpid());
    CHECK(holders[0].cmdline.find("ktstr-unit") != std::string::npos);

    int p[2];
    REQUIRE(::pipe(p) == 0);
    pid_t child = ::fork();
    if (child == 0) {
        // Child: drop the inherited copy of the parent's descriptor (closing a
        // copy does not unlock); then exclusive and shared both conflict and a
        // timed wait names the holder.
        mine->release();
        int code = 0;
        if (try_lock(lp, LockMode::exclusive)) code |= 1;
        if (try_lock(lp, LockMode::shared)) code |= 2;
        try {
            wait_lock(lp, LockMode::shared, 0.3, "entry k");
            code |= 4;
        } catch (const Error &e) {
            if (std::string(e.what()).find(cat("pid=", ::getppid())) == std::string::npos) code |= 8;
        }
        char go;
        ssize_t r = ::read(p[0], &go, 1);   // parent released: now it works
        (void)r;
        try {
            wait_lock(lp, LockMode::exclusive, 5, "entry k");
        } catch (...) {
            code |= 16;
        }
        ::_exit(code);
    }
    ::usleep(100000);
    int st = 0;
    // Release while the child waits in its second wait_lock.
    ::usleep(400000);
    mine->release();
    CHECK(::write(p[1], "g", 1) == 1);
    ::waitpid(child, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    ::close(p[0]);
    ::close(p[1]);
    // Two shared holders coexist.
    auto s1 = try_lock(lp, LockMode::shared);
    auto s2 = try_lock(lp, LockMode::shared);
    CHECK(s1);
    CHECK(s2);
    CHECK_FALSE(try_lock(lp, LockMode::exclusive));
}

// ---- source trees ------------------------------------------------------------------------------

TEST_CASE("kbuild: dirty-tree detection on temporary repositories") {
    if (which("git").empty()) return;
    TempDir t;
    std::string repo = t / "repo";
    put(repo + "/Makefile", "all:\n");
    put(repo + "/Kconfig", "\n");
    CHECK(inspect_tree(repo).is_git == false);   // not a repository (inside /tmp)
    CHECK(inspect_tree(repo).dirty);
    REQUIRE(run_git(repo, {"init", "-q"}) == 0);
    REQUIRE(run_git(repo, {"add", "."}) == 0);
    REQUIRE(run_git(repo, {"commit", "-q", "-m", "init"}) == 0);
    TreeState clean = inspect_tree(repo);
    CHECK(clean.is_git);
    CHECK_FALSE(clean.dirty);
    REQUIRE(clean.head);
    CHECK(clean.head->size() == 40);

    put(repo + "/untracked.o", "x");   // untracked only: still clean
    put(repo + "/.config", "CONFIG_X=y\n");
    CHECK_FALSE(inspect_tree(repo).dirty);

    put(repo + "/Makefile", "all:\n\ttrue\n");   // modified
    TreeState mod = inspect_tree(repo);
    CHECK(mod.dirty);
    CHECK(mod.why.find("modified") != std::string::npos);
    REQUIRE(run_git(repo, {"add", "Makefile"}) == 0);   // staged
    CHECK(inspect_tree(repo).dirty);
    REQUIRE(run_git(repo, {"commit", "-q", "-m", "2"}) == 0);
    CHECK_FALSE(inspect_tree(repo).dirty);
    CHECK(inspect_tree(repo).head != clean.head);

    // A tree unpacked inside another repository is not that repository.
    std::string nested = repo + "/linux-6.12";
    put(nested + "/Makefile", "all:\n");
    put(nested + "/Kconfig", "\n");
    TreeState n = inspect_tree(nested);
    CHECK_FALSE(n.is_git);
    CHECK(n.dirty);
    CHECK(n.why.find("inside") != std::string::npos);
}

TEST_CASE("kbuild: a directory without Makefile and Kconfig is not a kernel tree") {
    TempDir t;
    put(t / "tree/Makefile", "all:\n");
    try {
        require_kernel_tree(t / "tree");
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(std::string(e.what()) == t / "tree" + ": not a kernel source tree (missing Makefile or Kconfig)");
        CHECK(e.exit_code() == 2);
    }
    put(t / "tree/Kconfig", "\n");
    CHECK(require_kernel_tree(t / "tree") == fs::canonical(t / "tree").string());
    CHECK_THROWS_AS(require_kernel_tree(t / "nope"), Error);
}

TEST_CASE("kbuild: archive identity is read once and remembered") {
    TempDir t;
    put(t / "src/linux-9.8.7/Makefile", "VERSION = 9\nPATCHLEVEL = 8\nSUBLEVEL = 7\nEXTRAVERSION =\n");
    put(t / "src/linux-9.8.7/Kconfig", "\n");
    REQUIRE(run_capture({"tar", "-C", t / "src", "-czf", t / "linux.tar.gz", "linux-9.8.7"}, 60).status == 0);
    Cache c(t / "kernels");
    ArchiveIdentity id = archive_identity(t / "linux.tar.gz", &c);
    CHECK(id.version == "9.8.7");
    CHECK(id.top_dir == "linux-9.8.7");
    CHECK(id.crc == crc32_of(read_file(t / "linux.tar.gz")));
    // Remembered: a second look agrees (and comes from the index).
    auto index = fs::directory_iterator(c.root() + "/.archives");
    CHECK(index != fs::directory_iterator());
    ArchiveIdentity again = archive_identity(t / "linux.tar.gz", &c);
    CHECK(again.crc == id.crc);
    CHECK(again.version == id.version);
    // Not an archive / no kernel Makefile: bad input naming the file.
    put(t / "junk.tar", "not a tar file at all");
    CHECK_THROWS_AS(archive_identity(t / "junk.tar", &c), Error);
    put(t / "other/x/README", "hi");
    REQUIRE(run_capture({"tar", "-C", t / "other", "-cf", t / "other.tar", "x"}, 60).status == 0);
    try {
        archive_identity(t / "other.tar", &c);
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("not a kernel source archive") != std::string::npos);
        CHECK(e.exit_code() == 2);
    }
}

// ---- vmlinux strip ---------------------------------------------------------------------------

namespace {
struct ElfInfo {
    std::map<std::string, Elf64_Shdr> sections;   // by name
    std::vector<std::string> names;               // by index
    size_t symbols = 0;
    bool symbols_point_at_valid_sections = true;
    std::string rodata, btf;
    size_t phnum = 0;
};
ElfInfo read_elf(const std::string &path) {
    std::string f = read_file(path);
    ElfInfo info;
    auto *eh = reinterpret_cast<const Elf64_Ehdr *>(f.data());
    REQUIRE(f.size() >= sizeof(Elf64_Ehdr));
    REQUIRE(std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0);
    REQUIRE(eh->e_shoff + eh->e_shnum * sizeof(Elf64_Shdr) <= f.size());
    info.phnum = eh->e_phnum;
    auto *sh = reinterpret_cast<const Elf64_Shdr *>(f.data() + eh->e_shoff);
    const char *names = f.data() + sh[eh->e_shstrndx].sh_offset;
    for (size_t i = 0; i < eh->e_shnum; ++i) {
        std::string n = names + sh[i].sh_name;
        info.names.push_back(n);
        info.sections[n] = sh[i];
        if (sh[i].sh_type != SHT_NOBITS) REQUIRE(sh[i].sh_offset + sh[i].sh_size <= f.size());
    }
    if (info.sections.count(".rodata"))
        info.rodata = f.substr(info.sections[".rodata"].sh_offset, info.sections[".rodata"].sh_size);
    if (info.sections.count(".BTF")) info.btf = f.substr(info.sections[".BTF"].sh_offset, info.sections[".BTF"].sh_size);
    if (info.sections.count(".symtab")) {
        auto &st = info.sections[".symtab"];
        info.symbols = st.sh_size / sizeof(Elf64_Sym);
        auto *syms = reinterpret_cast<const Elf64_Sym *>(f.data() + st.sh_offset);
        for (size_t i = 0; i < info.symbols; ++i) {
            uint16_t x = syms[i].st_shndx;
            if (x != SHN_UNDEF && x < SHN_LORESERVE && x >= eh->e_shnum) info.symbols_point_at_valid_sections = false;
        }
    }
    return info;
}
} // namespace

TEST_CASE("kbuild: strip a synthetic ELF keeps symbols, section numbers and .rodata") {
    if (which("gcc").empty()) return;
    TempDir t;
    put(t / "p.c", "const char banner[] = \"IKCFG_ST hello\";\nint counter;\n"
                   "int add(int a, int b) { return a + b + counter; }\nint main(void) { return add(1, 2) + banner[0]; }\n");
    REQUIRE(run_capture({"gcc", "-g", "-O0", "-o", t / "p", t / "p.c"}, 120).status == 0);
    StripResult r = strip_vmlinux(t / "p", t / "p.stripped");
    CHECK(r.stripped);
    CHECK(r.output_size < r.input_size);
    ElfInfo in = read_elf(t / "p"), out = read_elf(t / "p.stripped");
    CHECK(in.sections.count(".debug_info") == 1);
    CHECK(out.names == in.names);   // never renumbered
    CHECK(out.sections[".debug_info"].sh_type == SHT_NOBITS);
    CHECK(out.sections[".debug_info"].sh_size == 0);
    CHECK(out.symbols == in.symbols);
    CHECK(out.symbols_point_at_valid_sections);
    CHECK(out.rodata == in.rodata);
    CHECK(out.phnum == in.phnum);
    // Still a working program: the loadable segments are intact.
    CHECK(run_capture({t / "p.stripped"}, 30).status == run_capture({t / "p"}, 30).status);
    // Not an ELF: raw copy with a warning.
    put(t / "notelf", "hello");
    StripResult raw = strip_vmlinux(t / "notelf", t / "notelf.out");
    CHECK_FALSE(raw.stripped);
    CHECK(raw.warning.find("not an ELF") != std::string::npos);
    CHECK(read_file(t / "notelf.out") == "hello");
}

TEST_CASE("kbuild: strip the fixture vmlinux: symbols, BTF and IKCONFIG survive") {
    const char *fx = std::getenv("KTSTR_FIXTURES");
    std::string dir = fx && *fx ? fx : "../shared/fixtures/linux-6.12";
    if (!fs::exists(dir + "/vmlinux")) {
        MESSAGE("fixture vmlinux not found; set KTSTR_FIXTURES");
        return;
    }
    TempDir t;
    CHECK(check_vmlinux_for_monitor(dir + "/vmlinux") == "");
    StripResult r = strip_vmlinux(dir + "/vmlinux", t / "vmlinux");
    CHECK(r.stripped);
    CHECK(r.warning == "");
    CHECK(r.output_size <= r.input_size);
    CHECK(check_vmlinux_for_monitor(t / "vmlinux") == "");   // btf__parse_elf, symbols, IKCFG_ST
    ElfInfo in = read_elf(dir + "/vmlinux"), out = read_elf(t / "vmlinux");
    CHECK(out.names == in.names);
    CHECK(out.symbols == in.symbols);
    CHECK(out.symbols_point_at_valid_sections);
    CHECK(out.btf == in.btf);
    CHECK(out.rodata == in.rodata);
    CHECK(out.phnum == in.phnum);
    // A file that is not a kernel fails the monitor check with reasons.
    put(t / "x", "x");
    CHECK(check_vmlinux_for_monitor(t / "x").find("not an ELF") != std::string::npos);
}

// ---- resolution ---------------------------------------------------------------------------------

TEST_CASE("kbuild: resolution order, each step reported") {
    TempDir t;
    Cache c(t / "kernels");
    const std::string kc = "c0ffee00";
    ResolveRequest req;
    req.current_kc = kc;
    req.allow_host = false;
    req.fixtures_hint = t / "no-fixture";
    req.env = env_of({});

    // Nothing anywhere: one error that lists what was searched and the remedies.
    try {
        resolve_kernel(c, req);
        FAIL("no throw");
    } catch (const Error &e) {
        std::string m = e.what();
        CHECK(m.find("no kernel found") != std::string::npos);
        CHECK(m.find("KTSTR_KERNEL: unset") != std::string::npos);
        CHECK(m.find("cache: no entries") != std::string::npos);
        CHECK(m.find("fixture: none") != std::string::npos);
        CHECK(m.find("ktstr-kbuild build") != std::string::npos);
        CHECK(e.exit_code() == 3);
    }

    // A fixture directory (KTSTR_FIXTURES may name it or its parent).
    put(t / "fx/linux-6.12/bzImage", "fixture");
    put(t / "fx/linux-6.12/vmlinux", "v");
    put(t / "fx/linux-6.12/config", "# Linux/x86 6.12.118 Kernel Configuration\n");
    put(t / "fx/linux-6.12/sched_ext/scx_simple", "#!/bin/sh\n");
    fs::permissions(t / "fx/linux-6.12/sched_ext/scx_simple", fs::perms::owner_all);
    req.env = env_of({{"KTSTR_FIXTURES", t / "fx"}});
    ResolveResult fx = resolve_kernel(c, req);
    CHECK(fx.kernel.resolved_by == "fixture");
    CHECK(fx.kernel.image == fs::canonical(t / "fx/linux-6.12/bzImage").string());
    CHECK(fx.kernel.version == "6.12.118");
    CHECK(fx.kernel.schedulers.count("scx_simple") == 1);
    CHECK_FALSE(fx.kernel.cache_key);

    // The cache beats the fixture: newest entry whose kconfig matches, stale skipped.
    store_fake(c, "old-match", "2026-12-01T00:00:00Z", "a", kc);
    store_fake(c, "new-stale", "2026-12-03T00:00:00Z", "b", "11111111");
    ResolveResult cached = resolve_kernel(c, req);
    CHECK(cached.kernel.resolved_by == "cache");
    CHECK(cached.kernel.cache_key == "old-match");
    CHECK(cached.kernel.kconfig_hash == kc);

    // KTSTR_KERNEL beats the cache; a miss is an error, not a fallback.
    req.env = env_of({{"KTSTR_FIXTURES", t / "fx"}, {"KTSTR_KERNEL", "new-stale"}});
    CHECK(resolve_kernel(c, req).kernel.cache_key == "new-stale");
    req.env = env_of({{"KTSTR_KERNEL", " 6.12.118 "}});
    CHECK(resolve_kernel(c, req).kernel.cache_key == "old-match");   // version, current fragment first
    req.env = env_of({{"KTSTR_KERNEL", "no-such-key"}});
    CHECK_THROWS_AS(resolve_kernel(c, req), Error);
    req.env = env_of({{"KTSTR_KERNEL", "6.1.1"}});
    CHECK_THROWS_AS(resolve_kernel(c, req), Error);
    req.env = env_of({{"KTSTR_KERNEL", "6.10..6.12"}});
    CHECK_THROWS_AS(resolve_kernel(c, req), Error);

    // The explicit argument beats everything: a directory, a file, a kernel.json.
    req.explicit_id = t / "fx/linux-6.12";
    CHECK(resolve_kernel(c, req).kernel.resolved_by == "argument");
    req.explicit_id = t / "fx/linux-6.12/bzImage";
    CHECK(resolve_kernel(c, req).kernel.vmlinux == fs::canonical(t / "fx/linux-6.12/vmlinux").string());
    ojson doc = fx.kernel.to_json();
    put(t / "kernel.json", doc.dump());
    req.explicit_id = t / "kernel.json";
    ResolveResult viajson = resolve_kernel(c, req);
    CHECK(viajson.kernel.image == fx.kernel.image);
    CHECK(viajson.kernel.schedulers == fx.kernel.schedulers);
    req.explicit_id = t / "missing";
    CHECK_THROWS_AS(resolve_kernel(c, req), Error);
    req.explicit_id = t / "fx";   // a directory with no kernel in it
    CHECK_THROWS_AS(resolve_kernel(c, req), Error);
}

TEST_CASE("kbuild: the kernel descriptor carries the contract fields") {
    TempDir t;
    Cache c(t / "kernels");
    CacheEntry e = store_fake(c, "k1", "2026-12-01T00:00:00Z");
    ojson d = descriptor_of(e, true).to_json();
    CHECK(d["schema"] == "ktstr.kernel/1");
    for (const char *f : {"bzimage", "vmlinux", "config", "version", "kconfig_hash", "cache_key", "schedulers"})
        CHECK(d.contains(f));
    CHECK(d["bzimage"] == c.entry_dir("k1") + "/bzImage");
    CHECK(d["vmlinux"].is_null());
    CHECK(d["cache_key"] == "k1");
    CHECK(d["schedulers"].is_object());
}

// ---- the build pipeline on the fake kernel tree -------------------------------------------------

#include "ktstr/kconfig.h"

namespace {
std::string fake_kernel_dir() {
    const char *top = std::getenv("KTSTR_TOP");
    return std::string(top && *top ? top : ".") + "/tests/fixtures/fake-kernel";
}

// Set an environment variable for the make children of one test.
struct ScopedEnv {
    std::string name;
    ScopedEnv(const char *n, const std::string &v) : name(n) { ::setenv(n, v.c_str(), 1); }
    ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

size_t count_lines(const std::string &path) {
    auto t = try_read_file(path);
    return t ? split(*t, '\n', false).size() : 0;
}

std::string make_fake_archive(const TempDir &t) {
    REQUIRE(fs::exists(fake_kernel_dir() + "/Makefile"));
    std::string archive = t / "linux-fake.tar.gz";
    REQUIRE(run_capture({"tar", "-C", fs::path(fake_kernel_dir()).parent_path().string(), "-czf", archive, "fake-kernel"},
                        60).status == 0);
    return archive;
}

void no_half_entries(const Cache &c) {
    for (auto &e : c.list()) CHECK_MESSAGE(e.valid(), e.key, ": ", e.error);
    std::error_code ec;
    for (auto &d : fs::directory_iterator(c.root(), ec))
        CHECK_FALSE(starts_with(d.path().filename().string(), ".tmp-"));
}
} // namespace

TEST_CASE("kbuild: key derivation follows the fragment hash exactly") {
    TempDir t;
    put(t / "a.kconfig", "CONFIG_SCHED_CORE=y\n");
    put(t / "b.kconfig", "CONFIG_SCHED_CORE=n\n");
    put(t / "c.kconfig", "# opt in\nCONFIG_SCHED_CORE=y\n");
    put(t / "d.kconfig", "#  opt in\nCONFIG_SCHED_CORE=y\n");
    auto kc = [&](std::vector<std::string> extras) {
        return kconfig::fragment_hash(kconfig::load_fragments(extras));
    };
    auto key = [&](std::vector<std::string> extras) { return tarball_key("6.12.8", Arch::x86_64, kc(extras)); };
    CHECK(key({}) == tarball_key("6.12.8", Arch::x86_64, kc({})));
    CHECK(key({t / "a.kconfig"}) != key({}));
    CHECK(key({t / "a.kconfig"}) != key({t / "b.kconfig"}));   // one value edited
    CHECK(key({t / "a.kconfig"}) == key({t / "a.kconfig"}));   // stable
    // Comments are hashed verbatim (spec 1.2: never normalise), so whitespace in
    // a comment changes the key exactly when it changes the hash.
    CHECK((key({t / "c.kconfig"}) == key({t / "d.kconfig"})) == (kc({t / "c.kconfig"}) == kc({t / "d.kconfig"})));
    CHECK(kc({t / "c.kconfig"}) != kc({t / "d.kconfig"}));
    // The order of extras matters.
    CHECK(key({t / "a.kconfig", t / "c.kconfig"}) != key({t / "c.kconfig", t / "a.kconfig"}));
}

TEST_CASE("kbuild: archive build stores once, then the cache answers") {
    TempDir t;
    std::string archive = make_fake_archive(t);
    Cache c(t / "cache");
    ScopedEnv counter("FAKE_COUNTER", t / "count");
    ScopedEnv work("KTSTR_BUILD_DIR", t / "work");
    BuildRequest req;
    req.kind = SourceKind::archive;
    req.source = archive;
    req.schedulers = true;
    Progress p(false);
    BuildOutcome first = build_kernel(c, req, p);
    CHECK_FALSE(first.cache_hit);
    CHECK(first.stored);
    CHECK(starts_with(first.key, "6.12.0-fake-archive-" + hex8(crc32_of(read_file(archive))) + "-x86_64-kc"));
    CHECK(first.descriptor.schedulers.count("scx_simple") == 1);
    CHECK(count_lines(t / "count") == 1);
    auto e = c.lookup(first.key);
    REQUIRE(e);
    CHECK(e->meta->source.archive_path == fs::canonical(archive).string());
    CHECK(e->meta->version == "6.12.0-fake");
    CHECK(e->meta->kconfig_hash == kconfig::fragment_hash(kconfig::load_fragments({})));
    CHECK(e->meta->build_seconds);
    CHECK(e->meta->tool_versions.count("make") == 1);
    // bzImage and config come from the same build: the fake image is the config's checksum.
    CHECK(fs::exists(e->path + "/logs/build.log"));
    CHECK(fs::is_empty(t / "work"));   // the temporary tree is gone

    BuildOutcome second = build_kernel(c, req, p);
    CHECK(second.cache_hit);
    CHECK(second.key == first.key);
    CHECK(count_lines(t / "count") == 1);
    CHECK(request_key(c, req) == first.key);

    // An entry without schedulers does not answer a request for them.
    Cache c2(t / "cache2");
    req.schedulers = false;
    CHECK_FALSE(build_kernel(c2, req, p).cache_hit);
    CHECK(build_kernel(c2, req, p).cache_hit);
    req.schedulers = true;
    BuildOutcome with = build_kernel(c2, req, p);
    CHECK_FALSE(with.cache_hit);
    CHECK(with.descriptor.schedulers.count("scx_simple") == 1);
    CHECK(build_kernel(c2, req, p).cache_hit);
    CHECK(count_lines(t / "count") == 3);
}

TEST_CASE("kbuild: two processes building one key build once") {
    TempDir t;
    std::string archive = make_fake_archive(t);
    Cache c(t / "cache");
    ScopedEnv counter("FAKE_COUNTER", t / "count");
    ScopedEnv slow("FAKE_BUILD_SECONDS", "1");
    ScopedEnv work("KTSTR_BUILD_DIR", t / "work");
    std::vector<pid_t> kids;
    for (int i = 0; i < 2; ++i) {
        pid_t pid = ::fork();
        if (pid == 0) {
            int code = 0;
            try {
                BuildRequest req;
                req.kind = SourceKind::archive;
                req.source = archive;
                Progress p(false);
                BuildOutcome o = build_kernel(c, req, p);
                code = o.cache_hit ? 10 : 20;
            } catch (const std::exception &ex) {
                std::fprintf(stderr, "child build failed: %s\n", ex.what());
                code = 1;
            }
            ::_exit(code);
        }
        kids.push_back(pid);
    }
    std::vector<int> codes;
    for (pid_t k : kids) {
        int st = 0;
        ::waitpid(k, &st, 0);
        codes.push_back(WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    std::sort(codes.begin(), codes.end());
    CHECK(codes == std::vector<int>{10, 20});   // one built, the other waited and hit
    CHECK(count_lines(t / "count") == 1);
    CHECK(c.list().size() == 1);
    no_half_entries(c);
}

TEST_CASE("kbuild: a clean git tree builds out of tree and is cached; a dirty one is not") {
    if (which("git").empty()) return;
    TempDir t;
    std::string tree = t / "linux";
    fs::copy(fake_kernel_dir(), tree, fs::copy_options::recursive);
    REQUIRE(run_git(tree, {"init", "-q"}) == 0);
    REQUIRE(run_git(tree, {"add", "."}) == 0);
    REQUIRE(run_git(tree, {"commit", "-q", "-m", "fake"}) == 0);
    std::string head(trim(run_capture({"git", "-C", tree, "rev-parse", "HEAD"}, 30).out));
    Cache c(t / "cache");
    ScopedEnv counter("FAKE_COUNTER", t / "count");
    BuildRequest req;
    req.kind = SourceKind::local;
    req.source = tree;
    Progress p(false);
    std::string kc = kconfig::fragment_hash(kconfig::load_fragments({}));

    BuildOutcome a = build_kernel(c, req, p);
    CHECK(a.key == local_key(head, std::nullopt, Arch::x86_64, kc));
    CHECK(a.stored);
    CHECK_FALSE(fs::exists(tree + "/.config"));   // out of tree: the source stays clean
    CHECK_FALSE(inspect_tree(tree).dirty);
    // The build directory now holds a .config: the key gains its cfg segment,
    // one more (incremental) build stores it, then the cache answers.
    BuildOutcome b = build_kernel(c, req, p);
    CHECK(b.key.find("-cfg") != std::string::npos);
    CHECK_FALSE(b.cache_hit);
    BuildOutcome b2 = build_kernel(c, req, p);
    CHECK(b2.cache_hit);
    CHECK(b2.key == b.key);
    CHECK(count_lines(t / "count") == 2);

    // Dirty: built, not cached, flagged.
    put(tree + "/Kconfig", read_file(tree + "/Kconfig") + "\n# local edit\n");
    size_t before = c.list().size();
    BuildOutcome d = build_kernel(c, req, p);
    CHECK(d.dirty);
    CHECK_FALSE(d.stored);
    CHECK(d.descriptor.dirty);
    CHECK(starts_with(d.key, "local-unknown-"));
    CHECK(fs::exists(d.descriptor.image));
    CHECK(c.list().size() == before);
    // A tree configured in place cannot be built out of tree: say how to proceed.
    put(tree + "/.config", "CONFIG_X=y\n");
    try {
        build_kernel(c, req, p);
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("--in-tree") != std::string::npos);
        CHECK(e.exit_code() == 2);
    }
}

TEST_CASE("kbuild: bad input and broken environments leave no half entry") {
    TempDir t;
    std::string archive = make_fake_archive(t);
    Cache c(t / "cache");
    ScopedEnv work("KTSTR_BUILD_DIR", t / "work");
    Progress p(false);
    BuildRequest req;
    req.kind = SourceKind::archive;
    req.source = archive;
    auto expect = [&](const BuildRequest &r, const Cache &cache, int code, const std::string &text) {
        CAPTURE(text);
        try {
            build_kernel(cache, r, p);
            FAIL("no throw");
        } catch (const Error &e) {
            CHECK(e.exit_code() == code);
            CHECK(std::string(e.what()).find(text) != std::string::npos);
            CHECK(std::string(e.what()).find('\n') == std::string::npos);   // one line
        }
        no_half_entries(cache);
    };
    {
        BuildRequest r = req;
        r.cc = "no-such-cc";
        expect(r, c, 3, "C compiler 'no-such-cc' not found");
    }
    {
        ScopedEnv drop("FAKE_DROP", "DEBUG_INFO_BTF");
        expect(req, c, 3, "CONFIG_DEBUG_INFO_BTF not set");
    }
    {
        ScopedEnv fail_build("FAKE_FAIL", "1");
        expect(req, c, 3, "kernel build failed");
    }
    {
        put(t / "file", "x");
        expect(req, Cache(t / "file/cache"), 3, "not writable");
    }
    {
        BuildRequest r;
        r.kind = SourceKind::local;
        r.source = t / "work";
        fs::create_directories(r.source);
        expect(r, c, 2, "not a kernel source tree (missing Makefile or Kconfig)");
    }
    {
        put(t / "off.kconfig", "CONFIG_FTRACE=n\n");
        BuildRequest r = req;
        r.extra_kconfig = {t / "off.kconfig"};
        expect(r, c, 2, "FTRACE");
    }
    CHECK(c.list().empty());
    CHECK(fs::is_empty(t / "work"));
}
