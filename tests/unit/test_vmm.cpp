// Unit tests for libktstr/vmm's accelerator-neutral parts and the TCG (QEMU)
// backend's pure parts: memory plans, QEMU argv, command line, layout JSON.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktstr/qemu.h"
#include "ktstr/vmm.h"
#include "ktstr/vmm_frontend.h"
#include "temp_dir.h"
#include "vmm_test_util.h"

using namespace ktstr;
using namespace ktstr::vmm;

namespace {

using vmm_test::fixture_header;

VmConfig config_for(const std::string &topo, uint64_t mem_mb) {
    VmConfig c;
    c.accel = Accel::tcg;
    c.kernel.bzimage = "/k/bzImage";
    c.kernel.header = fixture_header();
    c.initrd = "/k/initrd";
    c.topology = parse_topology(topo);
    c.memory_mb = mem_mb;
    return c;
}

// All values of "-OPT" in argv, in order.
std::vector<std::string> values_of(const std::vector<std::string> &argv, const std::string &opt) {
    std::vector<std::string> v;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == opt) v.push_back(argv[i + 1]);
    return v;
}

std::string fake_bzimage(uint16_t protocol, uint16_t xloadflags) {
    std::string img(0x1000, '\0');
    auto put16 = [&](size_t off, uint16_t v) { std::memcpy(&img[off], &v, 2); };
    auto put32 = [&](size_t off, uint32_t v) { std::memcpy(&img[off], &v, 4); };
    put16(0x1FE, 0xAA55);
    put32(0x202, 0x53726448);
    put16(0x206, protocol);
    img[0x211] = 1;
    put32(0x22C, 0x7FFFFFFF);
    put16(0x236, xloadflags);
    put32(0x238, 2047);
    put32(0x260, 0x2ECB000);
    return img;
}

} // namespace

TEST_CASE("accelerator names") {
    CHECK(parse_accel("kvm") == Accel::kvm);
    CHECK(parse_accel("tcg") == Accel::tcg);
    CHECK(parse_accel("auto") == Accel::automatic);
    CHECK_THROWS_WITH_AS(parse_accel("hvf"), doctest::Contains("use kvm, tcg or auto"), Error);
    CHECK(choose_accel(Accel::tcg).accel == Accel::tcg);
    CHECK(choose_accel(Accel::kvm).accel == Accel::kvm);
    auto a = choose_accel(Accel::automatic);
    CHECK(a.accel != Accel::automatic);
    CHECK(!a.reason.empty());
}

TEST_CASE("bzImage header: fields and the checks that name what failed") {
    auto h = parse_bzimage_header(fake_bzimage(0x020F, 1), "img");
    CHECK(h.protocol == 0x020F);
    CHECK(h.init_size == 0x2ECB000);
    CHECK(h.initrd_addr_max == 0x7FFFFFFF);
    CHECK(h.cmdline_size == 2047);
    CHECK_THROWS_WITH_AS(parse_bzimage_header(fake_bzimage(0x020B, 1), "img"), doctest::Contains("2.11 is too old"), Error);
    CHECK_THROWS_WITH_AS(parse_bzimage_header(fake_bzimage(0x020F, 0), "img"), doctest::Contains("64-bit entry"), Error);
    std::string bad = fake_bzimage(0x020F, 1);
    bad[0x1FE] = 0;
    CHECK_THROWS_WITH_AS(parse_bzimage_header(bad, "img"), doctest::Contains("0xAA55"), Error);
    CHECK_THROWS_WITH_AS(parse_bzimage_header("short", "img"), doctest::Contains("not a bzImage"), Error);
}

TEST_CASE("memory plan: one node, 512 MiB: shared region below the initrd window") {
    auto p = plan_qemu_memory(parse_topology("1n1l2c1t"), 512, 16 * MiB, fixture_header(), 2 * MiB);
    REQUIRE(p.fd_sizes == std::vector<uint64_t>{512 * MiB});
    REQUIRE(p.regions.size() == 1);
    CHECK(p.regions[0] == RamRegion{0, 512 * MiB, 0, 0, 0});
    REQUIRE(p.shm);
    // top 512 MiB - 2 MiB firmware margin - 2 MiB (initrd, rounded) = 0x1fc00000; minus 16 MiB.
    CHECK(p.shm->base_pa == 0x1EC00000);
    CHECK(p.shm->size == 16 * MiB);
    CHECK(p.total() == 512 * MiB);
}

TEST_CASE("memory plan: two nodes split evenly, one memfd each, back to back") {
    auto p = plan_qemu_memory(parse_topology("2n2l2c1t"), 512, 16 * MiB, fixture_header(), 3 * MiB);
    REQUIRE(p.fd_sizes == std::vector<uint64_t>{256 * MiB, 256 * MiB});
    REQUIRE(p.regions.size() == 2);
    CHECK(p.regions[0] == RamRegion{0, 256 * MiB, 0, 0, 0});
    CHECK(p.regions[1] == RamRegion{256 * MiB, 256 * MiB, 1, 0, 1});
    // 512 - 2 - 4 (3 MiB initrd rounded to 2 MiB) = 506 MiB; minus 16.
    CHECK(p.shm->base_pa == 490 * MiB);
}

TEST_CASE("memory plan: uneven split puts the remainder on the last node") {
    auto p = plan_qemu_memory(parse_topology("3n3l1c1t"), 1000, 0, fixture_header(), 0);
    CHECK(p.fd_sizes == std::vector<uint64_t>{333 * MiB, 333 * MiB, 334 * MiB});
    CHECK(!p.shm);
    CHECK(p.regions[2].gpa == 666 * MiB);
}

TEST_CASE("memory plan: above 3 GiB RAM continues at 4 GiB; a node crossing 3 GiB becomes two regions") {
    auto p = plan_qemu_memory(parse_topology("2n2l1c1t"), 4096, 16 * MiB, fixture_header(), 2 * MiB);
    REQUIRE(p.regions.size() == 3);
    CHECK(p.regions[0] == RamRegion{0, 2 * GiB, 0, 0, 0});
    CHECK(p.regions[1] == RamRegion{2 * GiB, 1 * GiB, 1, 0, 1});
    CHECK(p.regions[2] == RamRegion{4 * GiB, 1 * GiB, 1, 1 * GiB, 1});
    // The shared region is the top of the RAM above 4 GiB.
    CHECK(p.shm->base_pa == 5 * GiB - 16 * MiB);
}

TEST_CASE("memory plan: too little memory for kernel + shared region + initrd is a usage error") {
    CHECK_THROWS_WITH_AS(plan_qemu_memory(parse_topology("1n1l1c1t"), 64, 16 * MiB, fixture_header(), 2 * MiB),
                         doctest::Contains("too small"), Error);
}

TEST_CASE("guest RAM: memfd per plan entry; gpa translation is bounds-checked") {
    auto p = plan_qemu_memory(parse_topology("2n2l1c1t"), 8, 0, fixture_header(), 0);
    GuestRam ram = GuestRam::create(p);
    CHECK(ram.fd_count() == 2);
    CHECK(ram.total_size() == 8 * MiB);
    uint32_t v = 0xC0FFEE;
    CHECK(ram.write(5 * MiB, &v, 4));
    // Node 1's memfd holds gpa 4 MiB at offset 0.
    Mapping m = Mapping::map_fd(ram.fd(1), 4 * MiB, PROT_READ);
    uint32_t got = 0;
    std::memcpy(&got, m.data() + 1 * MiB, 4);
    CHECK(got == 0xC0FFEE);
    CHECK(ram.host(8 * MiB - 4, 4) != nullptr);
    CHECK(ram.host(8 * MiB - 4, 8) == nullptr);        // past the end
    CHECK(ram.host(4 * MiB - 2, 4) == nullptr);        // straddles two regions
    CHECK(ram.host(~0ull - 2, 8) == nullptr);           // no wrap-around
}

TEST_CASE("guest RAM: load_file copies a file range through the memfd, at any offset, bounds-checked") {
    auto p = plan_qemu_memory(parse_topology("2n2l1c1t"), 8, 0, fixture_header(), 0);
    GuestRam ram = GuestRam::create(p);
    TempDir dir;
    std::string path = dir / "image";
    std::string bytes(3 * 4096 + 123, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 7 + 3);
    write_file_atomic(path, bytes);
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    // An unaligned file offset into node 1's memfd (gpa 4 MiB + 10).
    REQUIRE(ram.load_file(4 * MiB + 10, fd.get(), 4096 + 5, 2 * 4096, "image"));
    std::string got(2 * 4096, '\0');
    REQUIRE(ram.read(4 * MiB + 10, got.data(), got.size()));
    CHECK(got == bytes.substr(4096 + 5, 2 * 4096));
    uint8_t before = 0xAA;
    REQUIRE(ram.read(4 * MiB + 9, &before, 1));
    CHECK(before == 0);                                     // nothing outside the range
    CHECK(ram.load_file(0, fd.get(), 0, 0, "image"));       // empty: nothing to do
    // Not inside one region: refused, nothing thrown.
    CHECK_FALSE(ram.load_file(4 * MiB - 100, fd.get(), 0, 200, "image"));
    CHECK_FALSE(ram.load_file(8 * MiB - 100, fd.get(), 0, 200, "image"));
    // Asking for more than the file holds is an input error naming the file.
    CHECK_THROWS_WITH_AS(ram.load_file(0, fd.get(), 4096, bytes.size(), "kernel /x/image"),
                         doctest::Contains("kernel /x/image"), Error);
}

TEST_CASE("QEMU argv: 1n1l2c1t on microvm with one memfd as the machine's RAM") {
    VmConfig c = config_for("1n1l2c1t", 512);
    auto plan = plan_qemu_memory(c.topology, c.memory_mb, c.shm_size, c.kernel.header, 2 * MiB);
    QemuFds fds{{7}, 8, 9, 10};
    auto argv = qemu_argv("qemu", c, plan, qemu_machine_for(c.topology, ""), "console=ttyS0", fds);
    CHECK(argv[0] == "qemu");
    CHECK(values_of(argv, "-machine") == std::vector<std::string>{"microvm,acpi=on", "memory-backend=ram-node0"});
    CHECK(values_of(argv, "-accel") == std::vector<std::string>{"tcg,thread=single"});
    CHECK(values_of(argv, "-smp") == std::vector<std::string>{"cpus=2,sockets=1,dies=1,cores=2,threads=1"});
    CHECK(values_of(argv, "-m") == std::vector<std::string>{"512M"});
    CHECK(values_of(argv, "-object") ==
          std::vector<std::string>{"memory-backend-file,id=ram-node0,size=512M,mem-path=/proc/self/fd/7,share=on"});
    CHECK(values_of(argv, "-numa").empty());
    CHECK(values_of(argv, "-chardev") == std::vector<std::string>{"file,id=com1,path=/proc/self/fd/8",
                                                                  "file,id=com2,path=/proc/self/fd/9",
                                                                  "socket,id=qmp,fd=10"});
    CHECK(values_of(argv, "-device") == std::vector<std::string>{"isa-serial,chardev=com2,iobase=0x2f8,irq=3"});
    CHECK(values_of(argv, "-serial") == std::vector<std::string>{"chardev:com1"});
    CHECK(values_of(argv, "-kernel") == std::vector<std::string>{"/k/bzImage"});
    CHECK(values_of(argv, "-initrd") == std::vector<std::string>{"/k/initrd"});
    CHECK(values_of(argv, "-append") == std::vector<std::string>{"console=ttyS0"});
    CHECK(std::count(argv.begin(), argv.end(), "-no-reboot") == 1);
    CHECK(std::count(argv.begin(), argv.end(), "-S") == 1);
    CHECK(values_of(argv, "-name") == std::vector<std::string>{"ktstr-vmm,debug-threads=on"});
}

TEST_CASE("QEMU argv: 1n2l2c2t makes each LLC a socket") {
    VmConfig c = config_for("1n2l2c2t", 512);
    auto plan = plan_qemu_memory(c.topology, c.memory_mb, c.shm_size, c.kernel.header, 0);
    auto argv = qemu_argv("qemu", c, plan, qemu_machine_for(c.topology, ""), "x", QemuFds{{3}, 4, 5, 6});
    CHECK(values_of(argv, "-smp") == std::vector<std::string>{"cpus=8,sockets=2,dies=1,cores=2,threads=2"});
    CHECK(values_of(argv, "-numa").empty());
}

TEST_CASE("QEMU argv: 2n2l2c1t on pc with a memdev per node, sockets on nodes, distances") {
    VmConfig c = config_for("2n2l2c1t", 512);
    auto plan = plan_qemu_memory(c.topology, c.memory_mb, c.shm_size, c.kernel.header, 0);
    std::string machine = qemu_machine_for(c.topology, "");
    CHECK(machine == "pc");
    auto argv = qemu_argv("qemu", c, plan, machine, "x", QemuFds{{3, 4}, 5, 6, 7});
    CHECK(values_of(argv, "-machine") == std::vector<std::string>{"pc,max-ram-below-4g=3G"});
    CHECK(values_of(argv, "-smp") == std::vector<std::string>{"cpus=4,sockets=2,dies=1,cores=2,threads=1"});
    CHECK(values_of(argv, "-object") ==
          std::vector<std::string>{"memory-backend-file,id=ram-node0,size=256M,mem-path=/proc/self/fd/3,share=on",
                                   "memory-backend-file,id=ram-node1,size=256M,mem-path=/proc/self/fd/4,share=on"});
    CHECK(values_of(argv, "-numa") ==
          std::vector<std::string>{"node,nodeid=0,memdev=ram-node0", "node,nodeid=1,memdev=ram-node1",
                                   "cpu,node-id=0,socket-id=0", "cpu,node-id=1,socket-id=1",
                                   "dist,src=0,dst=1,val=20", "dist,src=1,dst=0,val=20"});
    CHECK(values_of(argv, "-serial") == std::vector<std::string>{"chardev:com1", "chardev:com2"});
    CHECK(values_of(argv, "-device").empty());
}

TEST_CASE("QEMU argv: 2 nodes with 4 LLCs put two sockets on each node; uneven memory") {
    VmConfig c = config_for("2n4l1c1t", 1000);
    auto plan = plan_qemu_memory(c.topology, c.memory_mb, 0, c.kernel.header, 0);
    auto argv = qemu_argv("qemu", c, plan, "pc", "x", QemuFds{{3, 4}, 5, 6, 7});
    auto numa = values_of(argv, "-numa");
    CHECK(std::find(numa.begin(), numa.end(), "cpu,node-id=0,socket-id=1") != numa.end());
    CHECK(std::find(numa.begin(), numa.end(), "cpu,node-id=1,socket-id=2") != numa.end());
    CHECK(values_of(argv, "-object")[1] == "memory-backend-file,id=ram-node1,size=500M,mem-path=/proc/self/fd/4,share=on");
    CHECK(values_of(argv, "-m") == std::vector<std::string>{"1000M"});
}

TEST_CASE("QEMU version parsing") {
    auto v = parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright");
    REQUIRE(v);
    CHECK(*v == QemuVersion{7, 2, 22});
    CHECK(parse_qemu_version("QEMU emulator version 8.1\n") == QemuVersion{8, 1, 0});
    CHECK(!parse_qemu_version("no version here"));
    CHECK(QemuVersion{6, 1, 9} < QEMU_MIN_VERSION);
    CHECK_THROWS_WITH_AS(require_qemu_version("q", {5, 2, 0}), doctest::Contains("needs 6.2.0 or newer"), Error);
    CHECK(exit_reason_from_qmp("guest-shutdown") == ExitReason::shutdown);
    CHECK(exit_reason_from_qmp("guest-reset") == ExitReason::reboot);
    CHECK(exit_reason_from_qmp("host-signal") == std::nullopt);
}

TEST_CASE("memmap and SHM parameters") {
    CHECK(memmap_param({0x1EC00000, 16 * MiB}) == "memmap=16M$0x1ec00000");
    CHECK(memmap_param({0x140000000, 1 * GiB}) == "memmap=1G$0x140000000");
    CHECK(memmap_param({0x100000, 12 * 1024}) == "memmap=12K$0x100000");
    CHECK(shm_params({0x1EC00000, 16 * MiB}) == "KTSTR_SHM_BASE=0x1ec00000 KTSTR_SHM_SIZE=0x1000000");
}

TEST_CASE("kernel command line per accelerator") {
    CmdlineOptions o;
    o.accel = Accel::tcg;
    o.shm = ShmRegion{0x1EC00000, 16 * MiB};
    o.tsc_khz = 2445428;
    o.extra = {"sysctl.kernel.foo=1"};
    std::string tcg = build_cmdline(o);
    CHECK(tcg.rfind("console=ttyS0 nomodules mitigations=off no_timer_check ", 0) == 0);
    CHECK(tcg.find("kvm-clock") == std::string::npos);
    CHECK(tcg.find("nokaslr") == std::string::npos);
    CHECK(tcg.find(" tsc_early_khz=2445428 tsc=reliable ") != std::string::npos);
    CHECK(tcg.find(" loglevel=0 rdinit=/init initramfs_options=size=90% memmap=16M$0x1ec00000 "
                   "KTSTR_SHM_BASE=0x1ec00000 KTSTR_SHM_SIZE=0x1000000 numa_balancing=disable sysctl.kernel.foo=1") !=
          std::string::npos);
    CHECK(tcg.size() == tcg.find("sysctl.kernel.foo=1") + std::strlen("sysctl.kernel.foo=1"));

    o.accel = Accel::kvm;
    o.kaslr = false;
    o.verbose = true;
    o.tsc_khz.reset();
    o.has_memory_only_node = true;
    std::string kvm = build_cmdline(o);
    CHECK(kvm.find(" clocksource=kvm-clock ") != std::string::npos);
    CHECK(kvm.find(" nokaslr ") != std::string::npos);
    CHECK(kvm.find("memmap=") == std::string::npos);   // KVM leaves the region out of its own E820
    CHECK(kvm.find(" earlyprintk=serial loglevel=7 ") != std::string::npos);
    CHECK(kvm.find(" numa_balancing=enable") != std::string::npos);
    o.loglevel = 5;   // --kernel-log wins over --loglevel
    CHECK(build_cmdline(o).find("loglevel=5") == std::string::npos);
    o.verbose = false;
    std::string quiet = build_cmdline(o);
    CHECK(quiet.find(" loglevel=5 ") != std::string::npos);
    CHECK(quiet.find("earlyprintk") == std::string::npos);
    CHECK(quiet.find("loglevel=7") == std::string::npos);
}

TEST_CASE("layout JSON round trip (ktstr.layout/1)") {
    Layout l;
    l.accel = Accel::tcg;
    l.regions = {{0, 256 * MiB, 0, 0, 0}, {256 * MiB, 256 * MiB, 1, 0, 1}};
    l.mem_size = 512 * MiB;
    l.num_cpus = 4;
    l.vcpu_ids = {0, 1, 2, 3};
    l.vmm_pid = 1234;
    l.vcpu_tids = std::vector<pid_t>{11, 12, 13, 14};
    l.run_start_mono_ns = 99;
    l.kernel = "/k/bzImage";
    l.shm = ShmRegion{490 * MiB, 16 * MiB};
    l.cmdline = "console=ttyS0";
    ojson j = l.to_json();
    CHECK(j["schema"] == "ktstr.layout/1");
    CHECK(j["regions"][1]["fd_index"] == 1);
    CHECK(j["regions"][1]["gpa"] == 256 * MiB);
    CHECK(j["vmlinux"].is_null());
    CHECK(j["shm"]["base_pa"] == 490 * MiB);
    Layout back = Layout::from_json(json::parse(j.dump()), "t");
    CHECK(back.regions == l.regions);
    CHECK(back.vcpu_tids == l.vcpu_tids);
    CHECK(back.shm == l.shm);
    CHECK(back.vmm_pid == 1234);
    json bad = json::parse(j.dump());
    bad["schema"] = "ktstr.layout/2";
    CHECK_THROWS_AS(Layout::from_json(bad, "t"), Error);
    bad = json::parse(j.dump());
    bad["vcpu_tids"] = nullptr;
    CHECK(!Layout::from_json(bad, "t").vcpu_tids);
}

TEST_CASE("exit codes and the exit event") {
    ExitResult r;
    r.reason = ExitReason::shutdown;
    CHECK(process_exit_code(r) == 0);
    r.reason = ExitReason::reboot;
    CHECK(process_exit_code(r) == 3);   // a reset without an exit code is not a pass
    r.guest_exit_code = 0;
    CHECK(process_exit_code(r) == 0);
    r.guest_exit_code = 4;
    CHECK(process_exit_code(r) == 1);
    r.guest_exit_code.reset();
    r.reason = ExitReason::timeout;
    CHECK(process_exit_code(r) == 3);
    r.detail = "late";
    r.extra["qemu_status"] = 0;
    ojson e = exit_event(r, 3);
    CHECK(e["event"] == "exit");
    CHECK(e["reason"] == "timeout");
    CHECK(e["exit_code"] == 3);
    CHECK(e["guest_exit_code"].is_null());
    CHECK(e["qemu_status"] == 0);
}

TEST_CASE("configuration checks") {
    VmConfig c = config_for("2n2l1c1t", 512);
    CHECK_NOTHROW(validate_config(c));
    c.memory_mb = 0;
    CHECK_THROWS_WITH_AS(validate_config(c), doctest::Contains("--memory-mb"), Error);
    c = config_for("2n2l1c1t", 1);
    CHECK_THROWS_WITH_AS(validate_config(c), doctest::Contains("shared region"), Error);
    c = config_for("1n1l1c1t", 512);
    c.shm_size = 1000;
    CHECK_THROWS_WITH_AS(validate_config(c), doctest::Contains("multiple of 4096"), Error);
}

TEST_CASE("stop source: first reason wins, the eventfd wakes a poller") {
    StopSource s;
    CHECK(!s.requested());
    s.request(ExitReason::timeout);
    s.request(ExitReason::signal, 15);
    CHECK(s.reason() == ExitReason::timeout);
    uint64_t v = 0;
    CHECK(::read(s.fd(), &v, sizeof v) == sizeof v);
    CHECK(v == 2);
}

// ---- scenario mode (ktstr-vmm --scenario) ---------------------------------------------

#include "ktstr/vmm_scenario.h"

TEST_CASE("scenario mode: the agent's job, the scheduler's place, pre-flight") {
    ScenarioRequest req;
    req.scenarios = {scenario::catalog_scenario("steady"), scenario::catalog_scenario("cpuset_apply")};
    req.options.duration_s = 1.5;
    req.options.checks = {"max_gap_ms=500"};
    req.scheduler = "/opt/x/scx_simple";
    CHECK(guest_scheduler_path(req.scheduler) == "/ktstr-sched/scx_simple");
    CHECK_THROWS_WITH_AS(guest_scheduler_path("/opt/x/"), doctest::Contains("not a file name"), Error);
    initramfs::JobSpec job = scenario_job_spec(req);
    CHECK(job.kind == "scenario");
    CHECK_FALSE(job.exec_cmd);
    REQUIRE(job.files.size() == 2);
    CHECK(job.files[0].guest == "/scenario.json");
    CHECK(job.files[1].guest == "/scenario-2.json");
    CHECK(scenario::load_scenario_text(job.files[1].data, "x").name == "cpuset_apply");
    auto has = [&](std::vector<std::string> seq) {
        return std::search(job.args.begin(), job.args.end(), seq.begin(), seq.end()) != job.args.end();
    };
    CHECK(has({"--duration", "1.5"}));
    CHECK(has({"--check", "max_gap_ms=500"}));
    CHECK(has({"--scheduler", "/ktstr-sched/scx_simple"}));
    CHECK(has({"--file", "scenario.json", "--file", "scenario-2.json"}));
    auto inc = scenario_includes(req);
    REQUIRE(inc.size() == 1);
    CHECK(inc[0].host == "/opt/x/scx_simple");
    CHECK(inc[0].guest == "/ktstr-sched/scx_simple");
    // 60 s + 2 x (1.5 s + 0.5 s settle + 30 s + 10 s scheduler enable timeout)
    CHECK(scenario_default_timeout_s(req) == doctest::Approx(144));

    // Pre-flight against the VM's topology: input errors before boot, skips left to the guest.
    ScenarioRequest eevdf;
    eevdf.scenarios = {scenario::catalog_scenario("cpuset_resize")};   // skips on 4 CPUs
    CHECK_NOTHROW(preflight_scenarios(eevdf, parse_topology("1n2l2c1t")));
    eevdf.scenarios = {scenario::load_scenario_text(
        R"({"schema":"ktstr.scenario/1","name":"big","steps":[{"setup":[{"name":"a","cpuset":{"exact":[9]}}],"hold":{"ms":5}}]})",
        "big.json")};
    CHECK_THROWS_AS(preflight_scenarios(eevdf, parse_topology("1n2l2c1t")), Error);
    CHECK_NOTHROW(preflight_scenarios(eevdf, parse_topology("1n2l4c2t")));
    req.scheduler = "/nonexistent/scx_simple";
    CHECK_THROWS_WITH_AS(preflight_scenarios(req, parse_topology("1n2l2c1t")), doctest::Contains("--scheduler /nonexistent/scx_simple"),
                         Error);
}

TEST_CASE("scenario mode: exit status from the guest's exit code and scenario_end events") {
    auto end = [](const char *name, bool passed, int code) {
        return ojson{{"event", "scenario_end"}, {"scenario", name}, {"passed", passed}, {"skipped", false}, {"exit_code", code}};
    };
    ExitResult r;
    r.reason = ExitReason::shutdown;
    r.guest_exit_code = 0;
    ScenarioTally pass(1);
    pass.on_event({{"event", "scenario_start"}, {"scenario", "steady"}});
    pass.on_event(end("steady", true, 0));
    CHECK(pass.exit_code(r) == 0);
    CHECK(pass.problem(r).empty());
    CHECK(pass.summary() == ojson::parse(R"([{"scenario":"steady","passed":true,"skipped":false}])"));

    ScenarioTally failed(2);
    failed.on_event(end("steady", true, 0));
    failed.on_event(end("starve", false, 1));
    ExitResult r1 = r;
    r1.guest_exit_code = 1;
    CHECK(failed.exit_code(r1) == 1);

    // the guest said 0 but a scenario's end never arrived: not a pass
    ScenarioTally lost(2);
    lost.on_event(end("steady", true, 0));
    CHECK(lost.exit_code(r) == 3);
    CHECK(lost.problem(r) == "1 of 2 scenario_end events reached the host");

    // no exit code (timeout, crash) or a job that died (255): infrastructure
    ExitResult timeout;
    timeout.reason = ExitReason::timeout;
    CHECK(pass.exit_code(timeout) == 3);
    CHECK(pass.problem(timeout).find("without an exit code (timeout)") != std::string::npos);
    ExitResult crashed = r;
    crashed.guest_exit_code = 255;
    CHECK(pass.exit_code(crashed) == 3);
    // a scenario that could not run in the guest (environment) is 3 even if others passed
    ScenarioTally env(1);
    env.on_event(end("x", false, 3));
    ExitResult r3 = r;
    r3.guest_exit_code = 3;
    CHECK(env.exit_code(r3) == 3);
    // invalid for the guest's CPUs: 2
    ScenarioTally bad(1);
    bad.on_event(end("x", false, 2));
    ExitResult r2 = r;
    r2.guest_exit_code = 2;
    CHECK(bad.exit_code(r2) == 2);
}

TEST_CASE("bzImage version string: the release from the pointer at 0x20E, bounded by what was read") {
    std::string head(0x600, '\0');
    std::memcpy(head.data() + 0x202, "HdrS", 4);
    head[0x20E] = 0x00;
    head[0x20F] = 0x03;   // 0x200 + 0x300
    std::memcpy(head.data() + 0x500, "6.13.0-rc1 (x@y) #1 SMP", 23);
    CHECK(bzimage_version(head) == std::optional<std::string>("6.13.0-rc1"));
    CHECK_FALSE(bzimage_version(head.substr(0, 0x500)));      // the string lies beyond the head
    std::string no_hdrs = head;
    no_hdrs[0x202] = 'X';
    CHECK_FALSE(bzimage_version(no_hdrs));
    head[0x500] = '\0';
    CHECK_FALSE(bzimage_version(head));                        // empty string
    head[0x500] = '\xEB';
    CHECK_FALSE(bzimage_version(head));                        // not a release
    head[0x20E] = head[0x20F] = 0;
    CHECK_FALSE(bzimage_version(head));                        // no pointer
}
