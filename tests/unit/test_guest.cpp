// Unit tests for libktstr/guest (run on the host: the job machinery and both channels)
// and the host's HostSession that reads what the guest sends.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "ktstr/guest.h"
#include "ktstr/process.h"
#include "ktstr/util.h"
#include "ktstr/wire.h"

using namespace ktstr;
using namespace ktstr::guest;
using namespace ktstr::wire;

namespace {

struct Region {
    std::vector<uint64_t> words;
    size_t size;
    explicit Region(size_t bytes) : words((bytes + 7) / 8, 0), size(bytes) { init_header(data(), size); }
    uint8_t *data() { return reinterpret_cast<uint8_t *>(words.data()); }
};

// A pipe whose read end is collected by a thread (so large writes never block).
struct Collector {
    int fds[2];
    std::string got;
    std::thread t;
    Collector() {
        REQUIRE(::pipe(fds) == 0);
        t = std::thread([this] {
            char buf[65536];
            ssize_t n;
            while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
        });
    }
    std::string finish() {
        ::close(fds[1]);
        t.join();
        ::close(fds[0]);
        return got;
    }
};

struct Captured {
    std::string out, err, diag;
    std::vector<std::string> events;
    HostSession::Sinks sinks() {
        return {[this](std::string_view s) { out += s; }, [this](std::string_view s) { err += s; },
                [this](const std::string &j) { events.push_back(j); },
                [this](std::string_view s) { diag += std::string(s) + "\n"; }};
    }
};

std::string expected_seq(size_t bytes) {
    std::string s;
    for (int i = 1; s.size() < bytes; i++) s += std::to_string(i) + "\n";
    return s.substr(0, bytes);
}

} // namespace

TEST_CASE("job table and /args parsing") {
    REQUIRE(find_job_kind("exec"));
    REQUIRE(find_job_kind("shell"));
    CHECK_FALSE(find_job_kind("nope"));
    CHECK(find_job_kind("exec")->report_init);
    CHECK_FALSE(find_job_kind("shell")->report_init);
    // The scenario runner's row: outside the guest's PID 1 it refuses to default to the
    // machine's real cgroups and sysctls (unit tests run as root on the host).
    REQUIRE(find_job_kind("scenario"));
    CHECK(find_job_kind("scenario")->report_init);
    JobContext ctx;
    ctx.root = "/nonexistent-job-root";   // refused before any file is read
    ctx.args = {"--duration", "0.1"};
    CHECK_THROWS_WITH_AS(find_job_kind("scenario")->run(ctx), doctest::Contains("give --cgroup-root and --proc-sys"), Error);
    CHECK(parse_args_file("exec\n--x\r\n\n\n") == std::vector<std::string>{"exec", "--x"});
    CHECK(parse_args_file("").empty());
}

TEST_CASE("run_streamed: output and status through the ring") {
    Region r(1 << 20);
    RingWriter w(r.data(), r.size);
    HostChannel host;
    host.attach(-1, &w);
    int code = run_streamed({"sh", "-c", "printf abc; printf err >&2; printf def; exit 7"}, host);
    CHECK(code == 7);
    Captured c;
    HostSession s(c.sinks());
    s.finish(r.data(), r.size);
    CHECK(c.out == "abcdef");
    CHECK(c.err == "err");
    CHECK(run_streamed({"sh", "-c", "kill -TERM $$"}, host) == 128 + SIGTERM);
}

TEST_CASE("1 MiB of output arrives intact through the ring with a live drain") {
    Region r(256 << 10);   // smaller than the output: the writer must wait for the drain
    RingWriter w(r.data(), r.size);
    HostChannel host;
    host.attach(-1, &w);
    Captured c;
    HostSession s(c.sinks());
    std::atomic<bool> done{false};
    std::thread drainer([&] {
        while (!done) {
            s.poll_ring(r.data(), r.size);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    });
    int code = run_streamed({"sh", "-c", "seq 1 300000 | head -c 1048576"}, host);
    done = true;
    drainer.join();
    s.finish(r.data(), r.size);
    CHECK(code == 0);
    CHECK(c.out.size() == 1048576);
    CHECK(c.out == expected_seq(1048576));
    CHECK(s.stats().ring_drops == 0);
    CHECK(host.stream_drops() == 0);
}

TEST_CASE("the same output through COM2 frames when there is no ring") {
    Collector com2;
    HostChannel host;
    host.attach(com2.fds[1], nullptr);
    int code = run_streamed({"sh", "-c", "seq 1 300000 | head -c 1048576; echo oops >&2; exit 3"}, host);
    host.report_exit(code);
    std::string bytes = com2.finish();
    Captured c;
    HostSession s(c.sinks());
    // fed in odd-sized pieces, as a serial port delivers them
    for (size_t i = 0; i < bytes.size(); i += 4093) s.on_com2(std::string_view(bytes).substr(i, 4093));
    s.finish(nullptr, 0);
    CHECK(code == 3);
    CHECK(c.out == expected_seq(1048576));
    CHECK(c.err == "oops\n");
    CHECK(s.outcome().exit_code() == 3);
    CHECK(s.outcome().exit_source() == "com2");
    CHECK(s.stats().com2_bad_frames == 0);
}

TEST_CASE("a background process holding the pipes does not hold up the job") {
    Region r(1 << 20);
    RingWriter w(r.data(), r.size);
    HostChannel host;
    host.attach(-1, &w);
    auto t0 = Clock::now();
    CHECK(run_streamed({"sh", "-c", "sleep 20 & echo started"}, host) == 0);
    CHECK(seconds_since(t0) < 10);
    Captured c;
    HostSession s(c.sinks());
    s.finish(r.data(), r.size);
    CHECK(c.out == "started\n");
}

TEST_CASE("exec job: /exec_cmd, KTSTR_EXEC_EXIT and the exit report") {
    if (::access("/bin/busybox", X_OK) != 0) {
        MESSAGE("skipped: /bin/busybox missing");
        return;
    }
    char tmpl[] = "/tmp/ktstr-unit-guest.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    write_file_atomic(dir + "/exec_cmd", "echo hello; exit 5");
    Region r(1 << 20);
    RingWriter w(r.data(), r.size);
    Collector com2;
    HostChannel host;
    host.attach(com2.fds[1], &w);
    JobContext ctx;
    ctx.root = dir;
    ctx.host = &host;
    ctx.shell = "/bin/busybox";
    int code = find_job_kind("exec")->run(ctx);
    host.report_exit(code);
    CHECK(code == 5);
    Captured c;
    HostSession s(c.sinks());
    s.on_com2(com2.finish());
    s.finish(r.data(), r.size);
    CHECK(c.out == "hello\n");
    CHECK(s.outcome().exit_code() == 5);
    CHECK(s.outcome().exit_source() == "ring");
    CHECK(s.outcome().exec_exit() == 5);
    // no exec_cmd: an error line and 255
    ::unlink((dir + "/exec_cmd").c_str());
    Collector com2b;
    host.attach(com2b.fds[1], &w);
    CHECK(find_job_kind("exec")->run(ctx) == 255);
    CHECK(com2b.finish().find("without /exec_cmd") != std::string::npos);
    ::rmdir(dir.c_str());
}

TEST_CASE("guest events: EVNT in the ring and as COM2 frames; malformed ones are counted") {
    Region r(1 << 16);
    RingWriter w(r.data(), r.size);
    Collector com2;
    HostChannel host;
    host.attach(com2.fds[1], &w);
    ojson ev;
    ev["event"] = "step";
    ev["index"] = 1;
    host.event(ev);
    host.send(msg::EVNT, "{not json");
    host.send(msg::EVNT, "{\"no_event_field\":1}");
    host.send(msg::EVNT, "[1,2]");
    HostChannel fallback;   // the same through COM2
    fallback.attach(com2.fds[1], nullptr);
    fallback.event(ev);
    Captured c;
    HostSession s(c.sinks());
    s.on_com2(com2.finish());
    s.finish(r.data(), r.size);
    REQUIRE(c.events.size() == 2);
    CHECK(c.events[0] == "{\"event\":\"step\",\"index\":1}");
    CHECK(c.events[1] == c.events[0]);
    CHECK(s.stats().bad_events == 3);
    CHECK(s.stats().com2_messages == 1);
}

TEST_CASE("a ring that turns unusable falls back to COM2") {
    Region r(4096);
    RingWriter w(r.data(), r.size);
    Collector com2;
    HostChannel host;
    host.attach(com2.fds[1], &w);
    std::memset(r.data() + off::CAPACITY, 0, 4);   // the header got clobbered
    host.send(msg::OUTP, "still delivered");
    CHECK_FALSE(host.has_ring());
    Captured c;
    HostSession s(c.sinks());
    s.on_com2(com2.finish());
    s.finish(nullptr, 0);
    CHECK(c.out == "still delivered");
    CHECK(c.diag.find("became unusable") != std::string::npos);
}

TEST_CASE("host session: bad CRCs in the ring are reported and ignored") {
    Region r(4096);
    RingWriter w(r.data(), r.size);
    REQUIRE(w.write(msg::OUTP, "good") == RingWriter::Status::ok);
    REQUIRE(w.write(msg::OUTP, "evil") == RingWriter::Status::ok);
    r.data()[SHM_HEADER_SIZE + 20 + 16] ^= 1;   // first byte of the second payload
    REQUIRE(w.write(msg::EXIT, encode_i32(0)) == RingWriter::Status::ok);
    Captured c;
    HostSession s(c.sinks());
    s.finish(r.data(), r.size);
    CHECK(c.out == "good");
    CHECK(s.stats().ring_bad_crc == 1);
    CHECK(c.diag.find("bad CRC") != std::string::npos);
    CHECK(s.outcome().exit_code() == 0);
    // an unwritten region (no magic) is quiet: the ring was simply not used
    Region blank(4096);
    std::memset(blank.data(), 0, 40);
    Captured q;
    HostSession s2(q.sinks());
    s2.finish(blank.data(), blank.size);
    CHECK(q.diag.empty());
}
