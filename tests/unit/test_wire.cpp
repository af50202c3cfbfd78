// Unit tests for libktstr/wire: ring layout, writer/reader, wrap-around, corruption,
// COM2 sentinels and frames, the KTSTR_SHM_* parser, exit-code resolution.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "ktstr/util.h"
#include "ktstr/wire.h"

using namespace ktstr;
using namespace ktstr::wire;

namespace {

// An 8-byte aligned region standing in for the guest's shared memory.
struct Region {
    std::vector<uint64_t> words;
    size_t size;
    explicit Region(size_t bytes) : words((bytes + 7) / 8, 0), size(bytes) { init_header(data(), size); }
    uint8_t *data() { return reinterpret_cast<uint8_t *>(words.data()); }
    uint64_t u64(size_t off) { uint64_t v; std::memcpy(&v, data() + off, 8); return v; }
    uint32_t u32(size_t off) { uint32_t v; std::memcpy(&v, data() + off, 4); return v; }
    void set_u64(size_t off, uint64_t v) { std::memcpy(data() + off, &v, 8); }
    void set_u32(size_t off, uint32_t v) { std::memcpy(data() + off, &v, 4); }
};

std::string hexbytes(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        static const char *d = "0123456789ABCDEF";
        if (!out.empty()) out += ' ';
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

} // namespace

TEST_CASE("message type tags are ASCII read big-endian") {
    CHECK(msg::EXIT == 0x45584954u);
    CHECK(msg::STIM == 0x5354494Du);
    CHECK(msg::SCST == 0x53435354u);
    CHECK(msg::SCEN == 0x5343454Eu);
    CHECK(msg::TEST == 0x54455354u);
    CHECK(msg::SCDX == 0x53434458u);
    CHECK(msg::CRSH == 0x43525348u);
    CHECK(msg::PMET == 0x504D4554u);
    CHECK(msg::RAWO == 0x5241574Fu);
    CHECK(msg::PRAW == 0x50524157u);
    CHECK(msg::EVNT == 0x45564E54u);
    CHECK(type_name(msg::EXIT) == "EXIT");
    CHECK(type_name(0x01020304) == "0x01020304");
}

TEST_CASE("header layout of a 16 MiB region") {
    Region r(16 << 20);
    // magic bytes 52 4D 54 53, version 1, capacity size-40 = 0xFFFFD8
    CHECK(hexbytes(std::string_view(reinterpret_cast<char *>(r.data()), 12)) ==
          "52 4D 54 53 01 00 00 00 D8 FF FF 00");
    CHECK(r.u64(off::WRITE_PTR) == 0);
    CHECK(r.u64(off::READ_PTR) == 0);
    CHECK(r.u64(off::DROPS) == 0);
    CHECK(ring_capacity_for(16 << 20) == 0xFFFFD8u);
    CHECK(ring_capacity_for(40) == 0);
    CHECK(ring_capacity_for(10) == 0);
    CHECK(ring_capacity_for(1ull << 40) == UINT32_MAX);
    std::vector<uint64_t> tiny(4);
    CHECK_THROWS_AS(init_header(reinterpret_cast<uint8_t *>(tiny.data()), 32), Error);
}

TEST_CASE("EXIT(0) entry bytes and the CRC check value") {
    CHECK(crc32_of("123456789") == 0xCBF43926u);
    CHECK(hexbytes(encode_entry(msg::EXIT, encode_i32(0))) ==
          "54 49 58 45 04 00 00 00 1C DF 44 21 00 00 00 00 00 00 00 00");
    CHECK(decode_i32(encode_i32(-7)) == -7);
    CHECK_FALSE(decode_i32("abc"));
}

TEST_CASE("writer and reader round trip, live drain frees space") {
    Region r(4096);
    RingWriter w(r.data(), r.size);
    CHECK(w.max_payload() == 4096 - 40 - 16);
    CHECK(w.write(msg::EXIT, encode_i32(7)) == RingWriter::Status::ok);
    CHECK(w.write(msg::TEST, "{\"ok\":true}") == RingWriter::Status::ok);
    CHECK(w.write(msg::SCST, "") == RingWriter::Status::ok);
    CHECK(r.u64(off::WRITE_PTR) == 16 + 4 + 16 + 11 + 16);

    // A snapshot drain leaves read_ptr alone.
    auto snap = drain_ring(r.data(), r.size, false);
    REQUIRE(snap.messages.size() == 3);
    CHECK(r.u64(off::READ_PTR) == 0);

    auto d = drain_ring(r.data(), r.size, true);
    CHECK(d.rejected.empty());
    CHECK(d.corrupt.empty());
    REQUIRE(d.messages.size() == 3);
    CHECK(d.messages[0].type == msg::EXIT);
    CHECK(decode_i32(d.messages[0].payload) == 7);
    CHECK(d.messages[1].payload == "{\"ok\":true}");
    CHECK(d.messages[2].type == msg::SCST);
    CHECK(d.messages[2].payload.empty());
    for (auto &m : d.messages) CHECK(m.crc_ok);
    CHECK(r.u64(off::READ_PTR) == r.u64(off::WRITE_PTR));
    CHECK(drain_ring(r.data(), r.size, true).messages.empty());
}

TEST_CASE("wrap-around: entries straddling the end of the data area") {
    Region r(40 + 100);   // capacity 100
    RingWriter w(r.data(), r.size);
    std::string payload_seen;
    for (int i = 0; i < 40; i++) {
        std::string p(size_t(5 + i % 23), char('a' + i % 26));
        REQUIRE(w.write(msg::OUTP, p) == RingWriter::Status::ok);
        auto d = drain_ring(r.data(), r.size, true);
        REQUIRE(d.messages.size() == 1);
        CHECK(d.messages[0].payload == p);
        CHECK(d.messages[0].crc_ok);
    }
    CHECK(r.u64(off::WRITE_PTR) > 100 * 5);   // wrapped several times
    CHECK(r.u64(off::DROPS) == 0);
}

TEST_CASE("a full ring counts drops; a too-large message is dropped") {
    Region r(40 + 64);
    RingWriter w(r.data(), r.size);
    CHECK(w.write(msg::OUTP, std::string(30, 'x')) == RingWriter::Status::ok);   // 46 used
    CHECK(w.write(msg::OUTP, std::string(2, 'y')) == RingWriter::Status::ok);    // 46 + 18 = 64: fits exactly
    CHECK(w.write(msg::OUTP, "z") == RingWriter::Status::full);                   // 65+17 > 64
    CHECK(w.write(msg::OUTP, std::string(100, 'q')) == RingWriter::Status::full);
    CHECK(w.drops() == 2);
    auto d = drain_ring(r.data(), r.size, true);
    CHECK(d.drops == 2);
    CHECK(d.messages.size() == 2);
    // write_wait gives up after its timeout while nobody drains, and counts the drop
    CHECK(w.write(msg::OUTP, std::string(40, 'a')) == RingWriter::Status::ok);
    CHECK(w.write_wait(msg::OUTP, std::string(40, 'b'), 0.02) == RingWriter::Status::full);
    CHECK(w.drops() == 3);
    r.set_u64(off::DROPS, UINT64_MAX);
    CHECK(w.write(msg::OUTP, std::string(40, 'c')) == RingWriter::Status::full);
    CHECK(w.drops() == UINT64_MAX);   // saturates
}

TEST_CASE("reader rejects bad headers") {
    Region r(4096);
    RingWriter w(r.data(), r.size);
    REQUIRE(w.write(msg::EXIT, encode_i32(0)) == RingWriter::Status::ok);

    SUBCASE("bad magic") {
        r.data()[0] ^= 1;
        auto d = drain_ring(r.data(), r.size, true);
        CHECK(d.messages.empty());
        CHECK(d.rejected.find("magic") != std::string::npos);
    }
    SUBCASE("capacity zero") {
        r.set_u32(off::CAPACITY, 0);
        CHECK_FALSE(drain_ring(r.data(), r.size, true).rejected.empty());
        CHECK(w.write(msg::EXIT, encode_i32(0)) == RingWriter::Status::unusable);
    }
    SUBCASE("capacity beyond the mapping") {
        r.set_u32(off::CAPACITY, 4096);
        CHECK_FALSE(drain_ring(r.data(), r.size, true).rejected.empty());
        CHECK(w.write(msg::EXIT, encode_i32(0)) == RingWriter::Status::unusable);
    }
    SUBCASE("capacity over 1 GiB") {
        std::vector<uint64_t> big(8);
        uint8_t *p = reinterpret_cast<uint8_t *>(big.data());
        init_header(p, 40);
        std::memcpy(p + off::CAPACITY, "\x00\x00\x00\x80", 4);
        CHECK_FALSE(drain_ring(p, size_t(3) << 30, false).rejected.empty());
    }
    SUBCASE("write - read beyond capacity") {
        r.set_u64(off::WRITE_PTR, 100000);
        auto d = drain_ring(r.data(), r.size, true);
        CHECK(d.rejected.find("exceeds capacity") != std::string::npos);
        CHECK(w.write(msg::EXIT, encode_i32(0)) == RingWriter::Status::unusable);
    }
    SUBCASE("read ahead of write (wrapping difference)") {
        r.set_u64(off::READ_PTR, r.u64(off::WRITE_PTR) + 1);
        CHECK_FALSE(drain_ring(r.data(), r.size, true).rejected.empty());
    }
    SUBCASE("region smaller than a header") {
        CHECK_FALSE(drain_ring(r.data(), 39, true).rejected.empty());
        CHECK_FALSE(drain_ring(nullptr, 0, true).rejected.empty());
    }
}

TEST_CASE("reader: corrupt lengths and CRCs") {
    Region r(4096);
    RingWriter w(r.data(), r.size);
    REQUIRE(w.write(msg::TEST, "first") == RingWriter::Status::ok);
    REQUIRE(w.write(msg::TEST, "second") == RingWriter::Status::ok);
    uint8_t *data = r.data() + SHM_HEADER_SIZE;

    SUBCASE("bad CRC is kept, flagged and counted") {
        data[16] ^= 0xff;   // first payload byte
        auto d = drain_ring(r.data(), r.size, true);
        REQUIRE(d.messages.size() == 2);
        CHECK_FALSE(d.messages[0].crc_ok);
        CHECK(d.messages[1].crc_ok);
        CHECK(d.bad_crc == 1);
        Outcome o;
        for (auto &m : d.messages) o.on_ring(m);
        CHECK(o.result() == "second");
    }
    SUBCASE("length larger than the ring") {
        std::memcpy(data + 4, "\xff\xff\xff\x7f", 4);
        auto d = drain_ring(r.data(), r.size, true);
        CHECK(d.messages.empty());
        CHECK(d.corrupt.find("more than the ring holds") != std::string::npos);
        // the live reader skips to write_ptr so later messages are readable again
        CHECK(r.u64(off::READ_PTR) == r.u64(off::WRITE_PTR));
        REQUIRE(w.write(msg::TEST, "third") == RingWriter::Status::ok);
        auto d2 = drain_ring(r.data(), r.size, true);
        REQUIRE(d2.messages.size() == 1);
        CHECK(d2.messages[0].payload == "third");
    }
    SUBCASE("length beyond what was written") {
        std::memcpy(data + 16 + 5 + 4, "\x40\x00\x00\x00", 4);   // second entry claims 64 bytes
        auto d = drain_ring(r.data(), r.size, false);
        REQUIRE(d.messages.size() == 1);
        CHECK(d.messages[0].payload == "first");
        CHECK(d.corrupt.find("incomplete") != std::string::npos);
    }
}

TEST_CASE("drain bounded by max_bytes returns the rest on the next call") {
    Region r(8192);
    RingWriter w(r.data(), r.size);
    for (int i = 0; i < 5; i++) REQUIRE(w.write(msg::OUTP, std::string(100, char('0' + i))) == RingWriter::Status::ok);
    auto a = drain_ring(r.data(), r.size, true, 250);
    CHECK(a.messages.size() == 2);
    auto b = drain_ring(r.data(), r.size, true, 0);
    CHECK(b.messages.size() == 3);
    CHECK(b.messages[0].payload[0] == '2');
}

TEST_CASE("KTSTR_SHM_BASE / KTSTR_SHM_SIZE parsing") {
    auto a = parse_shm_cmdline("console=ttyS0 KTSTR_SHM_BASE=0xfc000000 KTSTR_SHM_SIZE=0x1000000 quiet");
    REQUIRE(a);
    CHECK(a->base == 0xfc000000u);
    CHECK(a->size == 0x1000000u);
    CHECK(parse_shm_cmdline("KTSTR_SHM_BASE=0XFC000000 KTSTR_SHM_SIZE=1000000")->base == 0xfc000000u);
    CHECK(parse_shm_cmdline("KTSTR_SHM_BASE=fc000000 KTSTR_SHM_SIZE=0x1000000\n")->size == 0x1000000u);
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0xfc000000"));
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0xfz000000 KTSTR_SHM_SIZE=0x1000"));
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0x KTSTR_SHM_SIZE=0x1000"));
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0x1000 KTSTR_SHM_SIZE=0"));
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0x1ffffffffffffffff KTSTR_SHM_SIZE=0x1000"));
    CHECK_FALSE(parse_shm_cmdline("KTSTR_SHM_BASE=0xffffffffffffffff KTSTR_SHM_SIZE=0x2"));
    CHECK(format_shm_cmdline({0x1f000000, 0x1000000}) ==
          "KTSTR_SHM_BASE=0x1f000000 KTSTR_SHM_SIZE=0x1000000");
    CHECK(parse_shm_cmdline(format_shm_cmdline({0x1f000000, 0x1000000}))->base == 0x1f000000u);
}

namespace {
std::vector<Com2Record> parse_com2(const std::vector<std::string> &pieces, uint64_t *bad = nullptr) {
    std::vector<Com2Record> out;
    Com2Parser p([&](Com2Record &&r) { out.push_back(std::move(r)); });
    for (auto &s : pieces) p.feed(s);
    p.finish();
    if (bad) *bad = p.bad_frames();
    return out;
}
using K = Com2Record::Kind;
} // namespace

TEST_CASE("COM2 sentinels with CRLF, split reads and interleaved text") {
    auto recs = parse_com2({"KTSTR_INIT_ST", "ARTED\r\nhello\r\n  KTSTR_PAYLOAD_STARTING \r\n",
                            "===KTSTR_TEST_RESULT_START===\r\n{\"a\":\r\n1}\r\n===KTSTR_TEST_RESULT_END===\r\n",
                            "KTSTR_EXEC_EXIT=7\nKTSTR_EXIT=1\r\nKTSTR_EXIT=x\nSCHEDULER_DIED\n",
                            "SCHEDULER_NOT_ATTACHED: timeout\nPANIC: oops\ntail-without-newline"});
    std::vector<K> kinds;
    for (auto &r : recs) kinds.push_back(r.kind);
    std::vector<K> want = {K::init_started, K::text, K::payload_starting, K::test_result,
                           K::exec_exit, K::exit_code, K::text, K::scheduler_died,
                           K::scheduler_not_attached, K::panic, K::text};
    REQUIRE(kinds == want);
    CHECK(recs[1].text == "hello");
    CHECK(recs[3].text == "{\"a\":\n1}");
    CHECK(recs[4].value == 7);
    CHECK(recs[5].value == 1);
    CHECK(recs[6].text == "KTSTR_EXIT=x");
    CHECK(recs[8].text == "timeout");
    CHECK(recs[10].text == "tail-without-newline");
    Outcome o;
    for (auto &r : recs) o.on_com2(r);
    CHECK(o.exit_code() == 1);
    CHECK(o.exit_source() == "com2");
    CHECK(o.exec_exit() == 7);
    CHECK(o.result() == "{\"a\":\n1}");
    CHECK(o.scheduler_died());
    CHECK(o.crash() == "oops");
}

TEST_CASE("COM2 frames carry binary payloads, bad ones are counted") {
    std::string payload = std::string("a\nb\r\n\0\xff", 7) + "KTSTR_EXIT=9\n";
    std::string framed = com2_frame_header(msg::OUTP, payload) + payload + "\n";
    CHECK(starts_with(framed, "KTSTR_MSG=4f555450 20 "));
    uint64_t bad = 0;
    // delivered one byte at a time
    std::vector<std::string> bytes;
    for (char c : framed + "after\n") bytes.emplace_back(1, c);
    auto recs = parse_com2(bytes, &bad);
    REQUIRE(recs.size() == 2);
    CHECK(recs[0].kind == K::message);
    CHECK(recs[0].msg.type == msg::OUTP);
    CHECK(recs[0].msg.payload == payload);
    CHECK(recs[0].msg.crc_ok);
    CHECK(recs[1].text == "after");
    CHECK(bad == 0);

    std::string corrupted = framed;
    corrupted[framed.size() - 3] ^= 1;
    recs = parse_com2({corrupted}, &bad);
    REQUIRE(recs.size() == 1);
    CHECK_FALSE(recs[0].msg.crc_ok);
    CHECK(bad == 1);

    // an oversized announcement is not believed: it is text
    recs = parse_com2({"KTSTR_MSG=4f555450 99999999999 00000000\nnext\n"}, &bad);
    REQUIRE(recs.size() == 2);
    CHECK(recs[0].kind == K::text);
    CHECK(recs[1].text == "next");
    CHECK(bad == 1);

    // a truncated frame at end of stream is counted
    recs = parse_com2({com2_frame_header(msg::OUTP, "abcdef"), "abc"}, &bad);
    CHECK(recs.empty());
    CHECK(bad == 1);

    // an empty payload frame
    recs = parse_com2({com2_frame_header(msg::SCST, "") + "\n"}, &bad);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].msg.type == msg::SCST);
    CHECK(recs[0].msg.crc_ok);
}

TEST_CASE("exit code resolution prefers the ring, then COM2, else unknown") {
    Outcome none;
    CHECK_FALSE(none.exit_code());
    CHECK(none.exit_source() == "none");
    CHECK(none.diagnosis().find("never reached") != std::string::npos);

    Outcome o;
    o.on_com2({K::init_started, {}, 0, {}});
    o.on_com2({K::payload_starting, {}, 0, {}});
    CHECK(o.diagnosis().find("crashed or hung") != std::string::npos);
    o.on_com2({K::exit_code, {}, 3, {}});
    CHECK(o.exit_code() == 3);
    o.on_ring({msg::EXIT, encode_i32(5), false});   // bad CRC: ignored
    CHECK(o.exit_code() == 3);
    o.on_ring({msg::EXIT, "12345", true});          // not 4 bytes: ignored
    CHECK(o.exit_code() == 3);
    o.on_ring({msg::EXIT, encode_i32(0), true});
    o.on_ring({msg::EXIT, encode_i32(4), true});    // the last valid one wins
    CHECK(o.exit_code() == 4);
    CHECK(o.exit_source() == "ring");
    o.on_ring({msg::CRSH, "first crash", true});
    o.on_ring({msg::CRSH, "second crash", true});
    CHECK(o.crash() == "first crash");

    Outcome framed;   // a framed EXIT over COM2 is COM2 evidence
    Com2Record r;
    r.kind = K::message;
    r.msg = {msg::EXIT, encode_i32(6), true};
    framed.on_com2(r);
    CHECK(framed.exit_code() == 6);
    CHECK(framed.exit_source() == "com2");
}
