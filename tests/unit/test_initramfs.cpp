// Unit tests for libktstr/initramfs: cpio newc byte layout (hand-computed from the format
// description), round trips through Debian's cpio and lz4, the LZ4 legacy framing, ELF
// closures (the fixture's scx_simple, and $ORIGIN RUNPATHs built here), the base archive
// layout and its cache.
#include <doctest/doctest.h>

#include "temp_dir.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ktstr/initramfs.h"
#include "ktstr/process.h"
#include "ktstr/util.h"

using namespace ktstr;
using namespace ktstr::initramfs;

namespace {


std::string fixture_dir() {
    if (const char *f = getenv("KTSTR_FIXTURES"); f && *f) return f;
    for (const char *d : {"../shared/fixtures/linux-6.12", "../../shared/fixtures/linux-6.12"})
        if (::access((std::string(d) + "/bzImage").c_str(), R_OK) == 0) return d;
    return "";
}

bool have(const char *tool) { return !which(tool).empty(); }

// The header of the entry at `at` as its 13 fields.
std::vector<uint32_t> header_fields(const std::string &a, size_t at) {
    std::vector<uint32_t> f;
    for (int i = 0; i < 13; i++) f.push_back(uint32_t(std::stoul(a.substr(at + 6 + 8 * size_t(i), 8), nullptr, 16)));
    return f;
}

} // namespace

TEST_CASE("cpio newc: one file, byte for byte") {
    CpioWriter w;
    w.file("/a", "xyz", 0644);
    const std::string &b = w.bytes();
    // 110-byte header, "a\0" (110+2 = 112, already aligned), "xyz" + 1 pad byte
    REQUIRE(b.size() == 116);
    CHECK(b.substr(0, 110) ==
          "070701"
          "000002D1"    // ino 721
          "000081A4"    // mode 0100644
          "00000000" "00000000"
          "00000001"    // nlink
          "00000000"    // mtime
          "00000003"    // filesize
          "00000000" "00000000" "00000000" "00000000"
          "00000002"    // namesize incl. NUL
          "00000000");  // check
    CHECK(b.substr(110, 2) == std::string("a\0", 2));
    CHECK(b.substr(112, 4) == std::string("xyz\0", 4));
}

TEST_CASE("cpio newc: name padding for lengths 1-4, 255, 256, 4095") {
    // data offset = 110 + namesize rounded up to 4; namesize = len + 1
    struct Case { size_t len, data_at; };
    for (Case c : {Case{1, 112}, Case{2, 116}, Case{3, 116}, Case{4, 116}, Case{255, 368},
                   Case{256, 368}, Case{4095, 4208}}) {
        CAPTURE(c.len);
        std::string name(c.len, 'n');
        CpioWriter w;
        w.file(name, "DATA", 0600);
        const std::string &b = w.bytes();
        auto f = header_fields(b, 0);
        CHECK(f[11] == c.len + 1);
        CHECK(b.substr(110, c.len) == name);
        for (size_t i = 110 + c.len; i < c.data_at; i++) CHECK(b[i] == '\0');
        CHECK(b.substr(c.data_at, 4) == "DATA");
        CHECK(b.size() == c.data_at + 4);
        CHECK(b.size() % 4 == 0);
        auto back = read_cpio(b);
        REQUIRE(back.size() == 1);
        CHECK(back[0].name == name);
        CHECK(back[0].data == "DATA");
    }
    CpioWriter w;
    CHECK_THROWS_AS(w.file(std::string(4096, 'n'), ""), Error);
    CHECK_THROWS_AS(w.file("a/../b", ""), Error);
    CHECK_THROWS_AS(w.file("/", ""), Error);
    CHECK_THROWS_AS(w.file("a//b", ""), Error);
    CHECK(archive_path("//x/y") == "x/y");
}

TEST_CASE("cpio newc: directories, symlinks, devices, hard links, trailer padding") {
    CpioWriter w;
    w.dir("d", 0755);
    w.symlink("d/l", "/target/path");
    w.device("dev/console", 'c', 5, 1, 0600);
    w.device("dev/sda", 'b', 8, 0, 0660);
    w.hardlinks({"d/h1", "d/h2", "d/h3"}, "linked", 0640);
    size_t before = w.bytes().size();
    w.trailer(512);
    const std::string &b = w.bytes();
    CHECK(b.size() % 512 == 0);
    CHECK(b.find("TRAILER!!!") == before + 110);
    CHECK(w.entries() == 8);

    auto e = read_cpio(b);
    REQUIRE(e.size() == 7);
    CHECK(e[0].mode == 040755);
    CHECK(e[0].nlink == 2);
    CHECK(e[1].mode == 0120777);
    CHECK(e[1].data == "/target/path");
    CHECK(e[2].mode == 020600);
    CHECK(e[2].rdev_major == 5);
    CHECK(e[2].rdev_minor == 1);
    CHECK(e[3].mode == 060660);
    CHECK(e[3].rdev_major == 8);
    // three names, one inode, nlink 3, the data with the last name only
    CHECK(e[4].ino == e[5].ino);
    CHECK(e[5].ino == e[6].ino);
    CHECK(e[4].ino != e[3].ino);
    for (int i = 4; i < 7; i++) CHECK(e[i].nlink == 3);
    CHECK(e[4].data.empty());
    CHECK(e[5].data.empty());
    CHECK(e[6].data == "linked");
    CHECK_THROWS_AS(w.device("x", 'p', 0, 0), Error);
}

TEST_CASE("cpio + lz4 round trip through Debian's cpio and lz4") {
    if (!have("cpio") || !have("lz4")) {
        MESSAGE("skipped: cpio or lz4 not installed");
        return;
    }
    TempDir t;
    CpioWriter w;
    w.dir("top");
    w.dir("top/sub", 0700);
    w.file("top/sub/f.txt", "hello\n", 0640);
    w.file("top/exe", std::string(100000, 'x') + "end", 0755);
    w.symlink("top/link", "sub/f.txt");
    w.hardlinks({"top/h1", "top/h2"}, "shared data", 0644);
    if (geteuid() == 0) w.device("top/null", 'c', 1, 3, 0666);
    w.file(std::string("top/") + std::string(255, 'L'), "long name", 0644);
    w.trailer();
    std::string lz = lz4_legacy_compress(w.bytes(), 64 << 10);   // several blocks
    write_file_atomic(t.path + "/a.cpio.lz4", lz);

    // lz4 -d reads the legacy framing; cpio -i extracts
    auto r = run_capture({"sh", "-c", "cd " + t.path + " && lz4 -dc a.cpio.lz4 > a.cpio && "
                                      "mkdir x && cd x && cpio -idm --quiet < ../a.cpio"}, 30);
    REQUIRE_MESSAGE(r.status == 0, r.out, r.err);
    CHECK(read_file(t.path + "/a.cpio") == w.bytes());
    std::string x = t.path + "/x/top";
    CHECK(read_file(x + "/sub/f.txt") == "hello\n");
    CHECK(read_file(x + "/exe").size() == 100003);
    CHECK(read_file(x + "/link") == "hello\n");
    CHECK(read_file(x + "/" + std::string(255, 'L')) == "long name");
    struct stat s1, s2, sd, sl;
    REQUIRE(::stat((x + "/h1").c_str(), &s1) == 0);
    REQUIRE(::stat((x + "/h2").c_str(), &s2) == 0);
    CHECK(s1.st_ino == s2.st_ino);
    CHECK(s1.st_nlink == 2);
    CHECK(read_file(x + "/h1") == "shared data");
    REQUIRE(::stat((x + "/sub").c_str(), &sd) == 0);
    CHECK((sd.st_mode & 07777) == 0700);
    REQUIRE(::lstat((x + "/link").c_str(), &sl) == 0);
    CHECK(S_ISLNK(sl.st_mode));
    CHECK((::stat((x + "/exe").c_str(), &s1), s1.st_mode & 07777) == 0755);
    if (geteuid() == 0) {
        REQUIRE(::stat((x + "/null").c_str(), &s1) == 0);
        CHECK(S_ISCHR(s1.st_mode));
        CHECK(major(s1.st_rdev) == 1);
        CHECK(minor(s1.st_rdev) == 3);
    }

    // and the other direction: lz4 -l output decompresses with our reader
    auto r2 = run_capture({"sh", "-c", "cd " + t.path + " && lz4 -l -q -f a.cpio b.lz4"}, 30);
    REQUIRE(r2.status == 0);
    CHECK(lz4_legacy_decompress(read_file(t.path + "/b.lz4")) == w.bytes());
}

TEST_CASE("LZ4 legacy framing: magic, 8 MiB chunks, concatenation, corruption") {
    std::string in(20u << 20, '\0');
    for (size_t i = 0; i < in.size(); i++) in[i] = char((i * 2654435761u) >> 13);
    std::string c = lz4_legacy_compress(in, LZ4_LEGACY_CHUNK);
    CHECK(c.substr(0, 4) == std::string("\x02\x21\x4C\x18", 4));
    CHECK(is_lz4_legacy(c));
    // walk the blocks: 8 + 8 + 4 MiB -> 3 chunks
    size_t pos = 4, chunks = 0;
    while (pos + 4 <= c.size()) {
        uint32_t n = uint8_t(c[pos]) | uint8_t(c[pos + 1]) << 8 | uint8_t(c[pos + 2]) << 16 |
                     uint32_t(uint8_t(c[pos + 3])) << 24;
        pos += 4 + n;
        chunks++;
    }
    CHECK(pos == c.size());
    CHECK(chunks == 3);
    CHECK(lz4_legacy_decompress(c) == in);
    // multithreaded small chunks give the same data back
    CHECK(lz4_legacy_decompress(lz4_legacy_compress(in, 1 << 20, 2)) == in);
    // two streams back to back (base + suffix) read as one
    CHECK(lz4_legacy_decompress(lz4_legacy_compress("first") + lz4_legacy_compress("second")) ==
          "firstsecond");
    CHECK(lz4_legacy_decompress(lz4_legacy_compress("")) == "");
    CHECK_THROWS_AS(lz4_legacy_decompress("junk"), Error);
    std::string bad = lz4_legacy_compress("some data that compresses");
    bad[4] = char(0x7f);   // block length beyond the input
    CHECK_THROWS_AS(lz4_legacy_decompress(bad), Error);
}

TEST_CASE("ELF: DST expansion and malformed images") {
    CHECK(expand_dst("$ORIGIN/../lib", "/opt/x/bin") == "/opt/x/bin/../lib");
    CHECK(expand_dst("${ORIGIN}/lib:$LIB/$PLATFORM", "/o") == "/o/lib:lib64/x86_64");
    CHECK(expand_dst("$UNKNOWN/x", "/o") == "$UNKNOWN/x");
    CHECK_THROWS_AS(parse_elf("not elf", "x"), Error);
    std::string img = read_file("/proc/self/exe");
    CHECK(parse_elf(img, "self").dynamic);
    CHECK_THROWS_AS(parse_elf(img.substr(0, 100), "self"), Error);   // headers cut off
    std::string elf32 = img;
    elf32[4] = 1;
    CHECK_THROWS_AS(parse_elf(elf32, "self"), Error);
}

TEST_CASE("closure of the fixture's scx_simple: libelf, libz, libc and the interpreter") {
    std::string fx = fixture_dir();
    if (fx.empty()) {
        MESSAGE("skipped: fixture kernel not found (KTSTR_FIXTURES)");
        return;
    }
    Resolver r;
    auto files = r.closure(fx + "/sched_ext/scx_simple");
    auto has_path = [&](const std::string &p) {
        for (auto &f : files)
            for (auto &q : f.paths)
                if (q == p) return true;
        return false;
    };
    // the interpreter first, under its PT_INTERP path too
    REQUIRE(!files.empty());
    CHECK(std::find(files[0].paths.begin(), files[0].paths.end(), "/lib64/ld-linux-x86-64.so.2") !=
          files[0].paths.end());
    CHECK(has_path("/lib/x86_64-linux-gnu/libelf.so.1"));   // found through ld.so.cache
    CHECK(has_path("/lib/x86_64-linux-gnu/libz.so.1"));
    CHECK(has_path("/lib/x86_64-linux-gnu/libc.so.6"));
    std::set<std::string> canon;
    for (auto &f : files) {
        CHECK(f.paths[0] == f.canonical);
        char buf[4096];
        REQUIRE(realpath(f.canonical.c_str(), buf));
        CHECK(f.canonical == buf);
        canon.insert(f.canonical);
    }
    // libelf.so.1 is a symlink to libelf-<version>.so: the canonical file is the target
    bool libelf_versioned = false;
    for (auto &c : canon) libelf_versioned |= c.find("/libelf-") != std::string::npos;
    CHECK(libelf_versioned);
    CHECK(canon.size() == 4);   // ld-linux, libelf, libz, libc (libelf's own needs are among them)

    // without ld.so.cache the default directories find the same files
    Resolver nocache("", "");
    auto files2 = nocache.closure(fx + "/sched_ext/scx_simple");
    std::set<std::string> canon2;
    for (auto &f : files2) canon2.insert(f.canonical);
    CHECK(canon2 == canon);
}

TEST_CASE("closure: RUNPATH with $ORIGIN, symlinked sonames, missing libraries") {
    if (!have("cc")) {
        MESSAGE("skipped: no C compiler");
        return;
    }
    TempDir t;
    std::string script =
        "set -e; cd " + t.path + "; mkdir -p app/bin app/lib\n"
        "echo 'int f(void){return 42;}' > f.c\n"
        "cc -shared -fPIC -Wl,-soname,libktf.so.1 -o app/lib/libktf.so.1.0 f.c\n"
        "ln -s libktf.so.1.0 app/lib/libktf.so.1\n"
        "echo 'int f(void); int main(void){return f()!=42;}' > m.c\n"
        "cc -o app/bin/prog m.c app/lib/libktf.so.1.0 -Wl,--enable-new-dtags,-rpath,'$ORIGIN/../lib'\n"
        "cc -o app/bin/prog_rpath m.c app/lib/libktf.so.1.0 -Wl,--disable-new-dtags,-rpath,'${ORIGIN}/../lib'\n";
    auto r = run_capture({"sh", "-c", script}, 60);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    for (const char *prog : {"prog", "prog_rpath"}) {
        CAPTURE(prog);
        std::string bin = t.path + "/app/bin/" + prog;
        ElfInfo info = read_elf(bin);
        CHECK(info.needed[0] == "libktf.so.1");
        CHECK((info.runpath.size() + info.rpath.size()) == 1);
        Resolver res("/etc/ld.so.cache", "");
        auto files = res.closure(bin);
        const ClosureFile *ktf = nullptr;
        for (auto &f : files)
            if (f.canonical.find("libktf.so.1.0") != std::string::npos) ktf = &f;
        REQUIRE(ktf);
        char canon[4096];
        REQUIRE(realpath((t.path + "/app/lib/libktf.so.1.0").c_str(), canon));
        CHECK(ktf->canonical == canon);
        // the soname path as found, and the alias in the guest loader's default directory
        CHECK(std::find(ktf->paths.begin(), ktf->paths.end(),
                        "/lib/x86_64-linux-gnu/libktf.so.1") != ktf->paths.end());
        CHECK(ktf->paths.size() == 3);
    }
    // move the library away: the error lists the soname
    REQUIRE(::rename((t.path + "/app/lib").c_str(), (t.path + "/app/gone").c_str()) == 0);
    Resolver res("/etc/ld.so.cache", "");
    try {
        res.closure(t.path + "/app/bin/prog");
        FAIL("no error for a missing library");
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("libktf.so.1") != std::string::npos);
        CHECK(e.exit_code() == 2);
    }
    // LD_LIBRARY_PATH finds it again
    Resolver with_env("/etc/ld.so.cache", t.path + "/app/gone");
    CHECK_NOTHROW(with_env.closure(t.path + "/app/bin/prog"));
}

TEST_CASE("--include parsing") {
    CHECK(parse_include("/x/y/tool").guest == "/include-files/tool");
    CHECK(parse_include("/x/y/tool:/usr/bin/t").guest == "/usr/bin/t");
    CHECK(parse_include("tool:/opt/").guest == "/opt/tool");
    CHECK_THROWS_AS(parse_include(""), Error);
    CHECK_THROWS_AS(parse_include(":/x"), Error);
    CHECK_THROWS_AS(parse_include("a:/x/../y"), Error);
    CHECK(parse_compression("lz4") == Compression::lz4);
    CHECK_THROWS_AS(parse_compression("gzip"), Error);
}

TEST_CASE("default cache directory: hidden inside KTSTR_CACHE_DIR, beside the kernels otherwise") {
    // KTSTR_CACHE_DIR is the kernel cache root verbatim (ktstr-kbuild lists every
    // visible entry in it as a kernel), so the archives must not show up there.
    struct Env {
        std::string name;
        const char *old;
        std::string saved;
        explicit Env(const char *n) : name(n), old(getenv(n)) { if (old) saved = old; }
        ~Env() { old ? ::setenv(name.c_str(), saved.c_str(), 1) : ::unsetenv(name.c_str()); }
    } k("KTSTR_CACHE_DIR"), x("XDG_CACHE_HOME"), h("HOME");
    ::setenv("KTSTR_CACHE_DIR", "/c", 1);
    ::setenv("XDG_CACHE_HOME", "/x", 1);
    ::setenv("HOME", "/h", 1);
    CHECK(default_cache_dir() == "/c/.initramfs");
    ::setenv("KTSTR_CACHE_DIR", "", 1);
    CHECK(default_cache_dir() == "/x/ktstr/initramfs");
    ::unsetenv("XDG_CACHE_HOME");
    CHECK(default_cache_dir() == "/h/.cache/ktstr/initramfs");
}

TEST_CASE("base archive layout and the content cache") {
    std::string fx = fixture_dir();
    if (fx.empty() || ::access("/bin/busybox", R_OK) != 0) {
        MESSAGE("skipped: needs the fixture and /bin/busybox");
        return;
    }
    TempDir t;
    std::string init = t.path + "/init";
    write_file_atomic(init, read_file("/bin/busybox"), 0755);
    write_file_atomic(t.path + "/data.txt", "payload", 0600);
    BaseSpec spec;
    spec.init = init;
    spec.busybox = "/bin/busybox";
    spec.extras.push_back({fx + "/sched_ext/scx_simple", "/scheduler", 0755});
    spec.includes.push_back(parse_include(t.path + "/data.txt"));
    BuildOptions opt;
    opt.cache_dir = t.path + "/cache";

    Archive a = build_base(spec, opt);
    CHECK_FALSE(a.cache_hit);
    CHECK(is_lz4_legacy(a.bytes()));
    std::string raw = lz4_legacy_decompress(a.bytes());
    CHECK(raw.size() == a.uncompressed_size);
    CHECK(raw.size() % 512 == 0);
    auto e = read_cpio(raw);
    CHECK(e.size() == a.entries - 1);   // entries() counts the trailer
    std::vector<std::string> names;
    for (auto &x : e) names.push_back(x.name);
    // directories first, each after its parent
    size_t first_non_dir = 0;
    while (first_non_dir < e.size() && (e[first_non_dir].mode & 0170000) == 040000) first_non_dir++;
    for (size_t i = first_non_dir; i < e.size(); i++) CHECK((e[i].mode & 0170000) != 040000);
    std::set<std::string> seen_dirs;
    for (size_t i = 0; i < first_non_dir; i++) {
        auto slash = names[i].rfind('/');
        if (slash != std::string::npos) CHECK(seen_dirs.count(names[i].substr(0, slash)));
        seen_dirs.insert(names[i]);
    }
    CHECK(seen_dirs.count("include-files"));
    CHECK(seen_dirs.count("lib64"));
    // then the spec order
    auto index = [&](const std::string &n) {
        return size_t(std::find(names.begin(), names.end(), n) - names.begin());
    };
    CHECK(names[first_non_dir] == "dev/console");
    CHECK(names[first_non_dir + 1] == "init");
    CHECK(index("init") < index("bin/busybox"));
    CHECK(index("bin/busybox") < index("scheduler"));
    CHECK(index("scheduler") < index("include-files/data.txt"));
    CHECK(index("include-files/data.txt") < index("lib/x86_64-linux-gnu/libc.so.6"));
    CHECK(names.back() == ".ktstr_init_ok");
    CHECK(e[index("include-files/data.txt")].mode == 0100600);
    CHECK(e[index("include-files/data.txt")].data == "payload");
    CHECK(e[index("scheduler")].mode == 0100755);
    // repeat paths of one library are symlinks to the canonical path
    auto &interp = e[index("lib64/ld-linux-x86-64.so.2")];
    CHECK(interp.mode == 0120777);
    CHECK(interp.data.front() == '/');
    auto &target = e[index(interp.data.substr(1))];
    CHECK(target.mode == 0100755);
    CHECK(target.data.size() > 100000);

    // unchanged inputs: the cached archive is mapped, same bytes
    Archive b = build_base(spec, opt);
    CHECK(b.cache_hit);
    CHECK(b.bytes() == a.bytes());
    CHECK(b.key == a.key);
    CHECK(b.uncompressed_size == a.uncompressed_size);
    // a changed input is a miss, with new content
    write_file_atomic(t.path + "/data.txt", "payload 2", 0600);
    Archive c = build_base(spec, opt);
    CHECK_FALSE(c.cache_hit);
    CHECK(c.key != a.key);
    CHECK(build_base(spec, opt).cache_hit);
    // uncompressed works too, and matches the decompressed bytes of the compressed build
    opt.compression = Compression::none;
    opt.cache_dir.clear();
    write_file_atomic(t.path + "/data.txt", "payload", 0600);
    CHECK(build_base(spec, opt).bytes() == raw);

    // bad inputs are named
    BaseSpec bad = spec;
    bad.includes = {parse_include(t.path)};   // a directory
    CHECK_THROWS_WITH_AS(build_base(bad, opt), doctest::Contains("not a regular file"), Error);
    bad.includes = {parse_include(t.path + "/data.txt:/.ktstr_init_ok")};
    CHECK_THROWS_WITH_AS(build_base(bad, opt), doctest::Contains("reserved"), Error);
    bad.includes = {parse_include(t.path + "/data.txt:/init")};
    CHECK_THROWS_WITH_AS(build_base(bad, opt), doctest::Contains("claimed twice"), Error);
    bad.includes = {parse_include(t.path + "/missing")};
    CHECK_THROWS_WITH_AS(build_base(bad, opt), doctest::Contains("missing"), Error);
}

TEST_CASE("suffix archive and hash64") {
    std::string s = build_suffix({{"args", "exec\n", 0644}, {"exec_cmd", "echo hi", 0644}},
                                 Compression::none);
    auto e = read_cpio(s);
    REQUIRE(e.size() == 2);
    CHECK(e[0].name == "args");
    CHECK(e[1].data == "echo hi");
    CHECK(s.size() % 512 == 0);
    CHECK(lz4_legacy_decompress(build_suffix({{"args", "exec\n", 0644}}, Compression::lz4)) ==
          build_suffix({{"args", "exec\n", 0644}}, Compression::none));
    CHECK(hash64("abc") != hash64("abd"));
    CHECK(hash64("abc") == hash64("abc"));
    CHECK(hash64(std::string(1000, 'a')) != hash64(std::string(1001, 'a')));
    CHECK(hash64("") != hash64(std::string(1, '\0')));
}
