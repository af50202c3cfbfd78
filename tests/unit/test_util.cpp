// Unit tests for libktstr/util: errors, strings, files, processes, JSON, fd passing, CLI.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/fdpass.h"
#include "ktstr/json.h"
#include "ktstr/process.h"
#include "ktstr/saturating.h"
#include "ktstr/util.h"

using namespace ktstr;

TEST_CASE("error kinds map to exit codes 2 and 3") {
    CHECK(exit_code_for(ErrorKind::usage) == 2);
    CHECK(exit_code_for(ErrorKind::input) == 2);
    CHECK(exit_code_for(ErrorKind::environment) == 3);
    CHECK(exit_code_for(ErrorKind::guest) == 3);
    try {
        fail(ErrorKind::input, "file ", "x.json", ": field ", 3);
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(std::string(e.what()) == "file x.json: field 3");
        CHECK(e.exit_code() == 2);
    }
}

TEST_CASE("integer parsing is strict") {
    CHECK(parse_u64("0") == 0u);
    CHECK(parse_u64("4096") == 4096u);
    CHECK(parse_u64("0x1f000000") == 0x1f000000u);
    CHECK(parse_u64("0XFF") == 255u);
    CHECK_FALSE(parse_u64(""));
    CHECK_FALSE(parse_u64("12a"));
    CHECK_FALSE(parse_u64("-1"));
    CHECK_FALSE(parse_u64("18446744073709551616"));
    CHECK(parse_i64("-5") == -5);
    CHECK(parse_i64("-9223372036854775808") == INT64_MIN);
    CHECK_FALSE(parse_i64("9223372036854775808"));
}

TEST_CASE("saturating arithmetic clamps instead of overflowing") {
    CHECK(saturating_add<int64_t>(2, 3) == 5);
    CHECK(saturating_add<int64_t>(INT64_MAX, 1) == INT64_MAX);
    CHECK(saturating_add<int64_t>(INT64_MIN, -1) == INT64_MIN);
    CHECK(saturating_sub<int64_t>(-5, 7) == -12);
    CHECK(saturating_sub<int64_t>(INT64_MIN, 1) == INT64_MIN);
    CHECK(saturating_sub<int64_t>(INT64_MAX, -1) == INT64_MAX);
    CHECK(saturating_sub<uint32_t>(3, 5) == 0u);              // unsigned: clamps at 0
    CHECK(saturating_add<uint32_t>(UINT32_MAX, 1) == UINT32_MAX);
}

TEST_CASE("strings: split, trim, hex, crc32") {
    CHECK(split("a,,b", ',') == std::vector<std::string>{"a", "", "b"});
    CHECK(split("a,,b", ',', false) == std::vector<std::string>{"a", "b"});
    CHECK(trim("  x y\r\n") == "x y");
    CHECK(trim(" \t ") == "");
    CHECK(hex8(0xCBF43926) == "cbf43926");
    CHECK(hex16(1) == "0000000000000001");
    CHECK(crc32_of(std::string_view("123456789")) == 0xCBF43926u);
    CHECK(crc32_of(std::string_view("")) == 0u);
}

TEST_CASE("files: atomic write leaves no temp file and read_file names the path") {
    char dir[] = "/tmp/ktstr-unit-XXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string p = std::string(dir) + "/f";
    write_file_atomic(p, "hello", 0600);
    CHECK(read_file(p) == "hello");
    CHECK(read_file(p, 3) == "hel");         // only the head
    CHECK(read_file(p, 99) == "hello");
    CHECK(read_file(p, 0).empty());
    CHECK(try_read_file(p, 4).value() == "hell");
    struct stat st{};
    REQUIRE(stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(access((p + ".tmp-" + std::to_string(getpid())).c_str(), F_OK) != 0);
    try {
        read_file(std::string(dir) + "/missing");
        FAIL("no throw");
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("/missing") != std::string::npos);
        CHECK(e.kind() == ErrorKind::input);
    }
    // Writing into a missing directory fails cleanly.
    CHECK_THROWS_AS(write_file_atomic(std::string(dir) + "/no/such", "x"), Error);
    unlink(p.c_str());
    rmdir(dir);
}

TEST_CASE("processes: capture, exit status, timeout kills the group") {
    auto r = run_capture({"sh", "-c", "echo out; echo err >&2; exit 7"});
    CHECK(r.status == 7);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK_FALSE(r.timed_out);

    auto t = run_capture({"sh", "-c", "sleep 30 & sleep 30"}, 0.3);
    CHECK(t.timed_out);
    CHECK(t.seconds < 5);

    CHECK_THROWS_AS(Child::spawn({"/nonexistent/ktstr-no-such-program"}), Error);

    pid_t pid;
    {
        Child c = Child::spawn({"sleep", "30"});
        pid = c.pid();
        CHECK(c.running());
    }   // destructor kills and reaps
    CHECK(kill(pid, 0) != 0);
}

TEST_CASE("shell quoting for --verbose command lines") {
    CHECK(shell_quote("abc") == "abc");
    CHECK(shell_quote("a b") == "'a b'");
    CHECK(shell_quote("it's") == "'it'\\''s'");
    CHECK(shell_quote("") == "''");
    CHECK(shell_join({"ktstr-vmm", "--exec", "cat /proc/cmdline"}) == "ktstr-vmm --exec 'cat /proc/cmdline'");
}

TEST_CASE("json: schema stamping and checking") {
    ojson d = make_doc("run", 1);
    CHECK(d.dump() == R"({"schema":"ktstr.run/1"})");
    auto id = parse_schema("ktstr.monitor.sample/12");
    CHECK(id.kind == "monitor.sample");
    CHECK(id.major == 12);
    CHECK(parse_schema("other/1").kind.empty());
    CHECK(parse_schema("ktstr.x/").kind.empty());
    json ok = json::parse(R"({"schema":"ktstr.run/1","extra":1})");
    CHECK_NOTHROW(require_schema(ok, "run", 1, "f"));
    json v2 = json::parse(R"({"schema":"ktstr.run/2"})");
    CHECK_THROWS_WITH_AS(require_schema(v2, "run", 1, "f:3"),
                         doctest::Contains("unsupported schema version"), Error);
    json none = json::parse(R"({"a":1})");
    CHECK_THROWS_WITH_AS(require_schema(none, "run", 1, "f"), doctest::Contains("missing \"schema\""), Error);
    CHECK_THROWS_WITH_AS(parse_json("{", "in.json"), doctest::Contains("in.json: invalid JSON"), Error);
}

TEST_CASE("json: typed fields name what is wrong") {
    json d = json::parse(R"({"n":"x","m":5,"neg":-1})");
    CHECK(get_field<int>(d, "m", "f") == 5);
    CHECK_THROWS_WITH_AS(get_field<int>(d, "n", "f"), "f: field 'n': expected number, got string", Error);
    CHECK_THROWS_WITH_AS(get_field<int>(d, "q", "f"), "f: missing field 'q'", Error);
    CHECK_THROWS_AS(get_field<uint32_t>(d, "neg", "f"), Error);
    CHECK(get_field_or<int>(d, "q", 9, "f") == 9);
}

TEST_CASE("fd passing over a socketpair") {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    unique_fd a(sv[0]), b(sv[1]);
    int p[2];
    REQUIRE(pipe(p) == 0);
    unique_fd pr(p[0]), pw(p[1]);
    send_with_fds(a.get(), "layout", {pw.get()});
    Received r = recv_with_fds(b.get());
    CHECK(r.data == "layout");
    REQUIRE(r.fds.size() == 1);
    write_all(r.fds[0].get(), "z");
    char ch = 0;
    CHECK(read(pr.get(), &ch, 1) == 1);
    CHECK(ch == 'z');
}

TEST_CASE("unix sockets: listen refuses to replace a regular file") {
    char dir[] = "/tmp/ktstr-unit-XXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string path = std::string(dir) + "/s";
    write_file_atomic(path, "not a socket");
    CHECK_THROWS_AS(unix_listen(path), Error);
    unlink(path.c_str());
    {
        unique_fd l = unix_listen(path);
        unique_fd c = unix_connect(path);
        CHECK(c);
    }
    unlink(path.c_str());
    rmdir(dir);
}

TEST_CASE("cli: options, values, repeats and errors") {
    std::vector<cli::Option> opts = {
        {"topology", 't', "T", "topology", false},
        {"include", 'i', "PATH", "file", true},
        {"json", 0, "", "JSON output", false},
    };
    auto a = cli::parse({"-t", "1n1l1c1t", "--include=a", "--include", "b", "--json", "pos", "--", "--x"}, opts);
    CHECK(a.get("topology") == "1n1l1c1t");
    CHECK(a.all("include") == std::vector<std::string>{"a", "b"});
    CHECK(a.has("json"));
    CHECK(a.positional() == std::vector<std::string>{"pos", "--x"});
    auto later = cli::parse({"--topology", "a", "--topology", "b"}, opts);
    CHECK(later.get("topology") == "b");
    CHECK_THROWS_WITH_AS(cli::parse({"--nope"}, opts), "unknown option '--nope' (see --help)", Error);
    CHECK_THROWS_WITH_AS(cli::parse({"--topology"}, opts), doctest::Contains("needs a value"), Error);
    CHECK_THROWS_WITH_AS(cli::parse({"--json=1"}, opts), doctest::Contains("takes no value"), Error);
    auto g = cli::parse({"--json", "verb", "--topology", "x"}, opts, true);
    CHECK(g.positional() == std::vector<std::string>{"verb", "--topology", "x"});
    auto n = cli::parse({"--topology", "12"}, opts);
    CHECK(n.get_u64("topology", 0) == 12);
    auto bad = cli::parse({"--topology", "12x"}, opts);
    CHECK_THROWS_WITH_AS(bad.get_u64("topology", 0), "--topology: '12x' is not a non-negative integer", Error);
}

TEST_CASE("cli: dispatch names the verbs") {
    std::vector<cli::Verb> verbs = {{"emit", "", [](auto &) { return 0; }}, {"hash", "", [](auto &a) { return (int)a.size(); }}};
    CHECK(cli::dispatch("t", {"hash", "x", "y"}, verbs) == 2);
    CHECK_THROWS_WITH_AS(cli::dispatch("t", {"zz"}, verbs), "unknown command 'zz'; one of: emit, hash", Error);
    CHECK_THROWS_AS(cli::dispatch("t", {}, verbs), Error);
}
