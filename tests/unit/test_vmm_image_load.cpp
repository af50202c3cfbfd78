// Unit tests for libktstr/vmm/image_load: kernel/initramfs bytes into guest
// RAM eagerly, and lazily through userfaultfd (no KVM needed: this process
// touches the pages the way a vCPU would).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "ktstr/image_load.h"
#include "ktstr/qemu.h"
#include "ktstr/vmm.h"
#include "temp_dir.h"
#include "vmm_test_util.h"

using namespace ktstr;
using namespace ktstr::vmm;

namespace {

// 8 MiB over two memfds (node 0: gpa 0-4 MiB, node 1: 4-8 MiB).
GuestRam two_node_ram() { return GuestRam::create(plan_qemu_memory(parse_topology("2n2l1c1t"), 8, 0, vmm_test::fixture_header(), 0)); }

// `bytes` as a file in a fresh directory, open for reading.
struct TempFile {
    TempDir dir;
    std::string path = dir / "image";
    unique_fd fd;
    explicit TempFile(const std::string &bytes) {
        write_file_atomic(path, bytes);
        fd = unique_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
    }
};

std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937 g(seed);
    std::string s(n, '\0');
    for (auto &c : s) c = char(g());
    return s;
}

std::string all_ram(const GuestRam &ram) {
    std::string s;
    for (auto &r : ram.regions()) {
        std::string part(r.size, '\0');
        REQUIRE(ram.read(r.gpa, part.data(), part.size()));
        s += part;
    }
    return s;
}

// Without permission for userfaultfd (not root, no /dev/userfaultfd access)
// only the reason can be checked; CI runs as root.
bool usable(const std::unique_ptr<LazyImageLoader> &lazy, const std::string &why) {
    if (lazy) return true;
    MESSAGE("userfaultfd is not usable here, lazy loading untested: " << why);
    CHECK(why.find("userfaultfd") != std::string::npos);
    return false;
}

}  // namespace

TEST_CASE("image loading: modes by name; a span must fit in RAM and in its file") {
    CHECK(parse_image_load_mode("auto") == ImageLoadMode::automatic);
    CHECK(parse_image_load_mode("lazy") == ImageLoadMode::lazy);
    CHECK(parse_image_load_mode("eager") == ImageLoadMode::eager);
    CHECK_THROWS_WITH_AS(parse_image_load_mode("fast"), doctest::Contains("--kvm-image-load: 'fast'"), Error);

    GuestRam ram = two_node_ram();
    TempFile f(random_bytes(10000, 1));
    CHECK_NOTHROW(check_image_span(ram, {0x1000, f.fd.get(), 0, 10000, "kernel k"}));
    // Across the node boundary at 4 MiB: not in one region.
    CHECK_THROWS_WITH_AS(check_image_span(ram, {4 * MiB - 100, f.fd.get(), 0, 200, "kernel k"}),
                         doctest::Contains("kernel k: 0 KiB at guest address"), Error);
    // More than the file holds.
    CHECK_THROWS_WITH_AS(check_image_span(ram, {0x1000, f.fd.get(), 5000, 6000, "initramfs i"}),
                         doctest::Contains("initramfs i: needs bytes up to offset 11000 but the file has 10000"), Error);
    std::string why;
    // Overlapping spans are left to the eager copy, with the reason.
    CHECK(LazyImageLoader::start(ram, {{0x1000, f.fd.get(), 0, 5000, "a"}, {0x2000, f.fd.get(), 0, 100, "b"}}, why) == nullptr);
    CHECK(why == "b at guest address 0x0000000000002000 overlaps a");
}

TEST_CASE("image loading: lazy leaves guest RAM exactly as the eager copy, serves touched pages, keeps writes") {
    const std::string bytes = random_bytes(700000, 7);
    TempFile f(bytes);
    // Unaligned starts and ends, two spans sharing a page, one span on node 1.
    const uint64_t a_gpa = 0x100000 + 10, a_len = 300000;
    const std::vector<ImageSpan> spans = {
        {a_gpa, f.fd.get(), 5, a_len, "kernel k"},
        {a_gpa + a_len + 100, f.fd.get(), 400000, 200000, "kernel k"},
        {4 * MiB + 3 * 4096, f.fd.get(), 4096, 128 * 1024, "initramfs i"},
    };
    GuestRam eager = two_node_ram();
    ImageLoadStats es = load_images_now(eager, spans);
    CHECK_FALSE(es.lazy);
    CHECK(es.bytes == a_len + 200000 + 128 * 1024);

    GuestRam ram = two_node_ram();
    std::string why;
    auto lazy = LazyImageLoader::start(ram, spans, why, /*background_fill=*/false);
    if (!usable(lazy, why)) return;
    // Touch pages before any background fill: each is filled on the spot,
    // also for two threads faulting at the same time.
    uint8_t shared = 0;
    std::thread other([&] { ram.read(a_gpa + a_len + 50, &shared, 1); });   // the page the first two spans share
    uint8_t b = 0;
    REQUIRE(ram.read(a_gpa + 150000, &b, 1));
    other.join();
    CHECK(b == uint8_t(bytes[5 + 150000]));
    CHECK(shared == 0);   // between the two spans: zero
    uint8_t next = 0xFF;
    REQUIRE(ram.read(a_gpa + a_len + 100, &next, 1));
    CHECK(next == uint8_t(bytes[400000]));   // the second span's first byte, same page
    // A write into a page not loaded yet lands on top of the file bytes and stays.
    const uint32_t mark = 0x5A5AA5A5;
    const uint64_t mark_gpa = 4 * MiB + 3 * 4096 + 64 * 1024 + 6;
    REQUIRE(ram.write(mark_gpa, &mark, sizeof mark));
    CHECK_FALSE(lazy->finished());

    lazy->fill_rest();
    ImageLoadStats st = lazy->wait();
    CHECK(st.lazy);
    CHECK(st.bytes == es.bytes);
    CHECK(st.faults_served == 3);   // three pages touched, each filled once
    CHECK(lazy->finished());
    REQUIRE(eager.write(mark_gpa, &mark, sizeof mark));
    CHECK(all_ram(ram) == all_ram(eager));
    lazy.reset();
    // After the loader is gone the pages are ordinary memory.
    uint32_t v = 0;
    REQUIRE(ram.read(mark_gpa, &v, sizeof v));
    CHECK(v == mark);
}

TEST_CASE("image loading: a file that shrinks under the lazy loader is an error, not a hang") {
    const std::string bytes = random_bytes(300000, 9);
    TempFile f(bytes);
    GuestRam ram = two_node_ram();
    std::string why;
    auto lazy = LazyImageLoader::start(ram, {{0x200000, f.fd.get(), 0, bytes.size(), "kernel k"}}, why, false);
    if (!usable(lazy, why)) return;
    REQUIRE(::truncate(f.path.c_str(), 4096) == 0);
    lazy->fill_rest();
    CHECK_THROWS_WITH_AS(lazy->wait(), doctest::Contains("shrink"), Error);
    // The registration is gone with the loader: RAM is readable, no fault waits.
    uint8_t b = 0xFF;
    CHECK(ram.read(0x200000 + 200000, &b, 1));
}

TEST_CASE("image loading: a lazy loader dropped without wait() stops and leaves RAM usable") {
    const std::string bytes = random_bytes(2 * 1024 * 1024, 11);
    TempFile f(bytes);
    GuestRam ram = two_node_ram();
    std::string why;
    auto lazy = LazyImageLoader::start(ram, {{0x100000, f.fd.get(), 0, bytes.size(), "kernel k"}}, why, false);
    if (!usable(lazy, why)) return;
    uint8_t b = 0;
    REQUIRE(ram.read(0x100000 + 5000, &b, 1));
    CHECK(b == uint8_t(bytes[5000]));
    lazy.reset();   // the thread quits; the registration goes with it
    uint8_t z = 0xFF;
    REQUIRE(ram.read(0x100000 + 1024 * 1024, &z, 1));   // never filled: an ordinary zero page now
    CHECK(z == 0);
}
