// libktstr/wire: everything that crosses the guest/host boundary, shared by both sides.
//
//  * the shared-memory ring (vmm spec section 10): a 40-byte header, then a byte ring of
//    messages {u32 type, u32 length, u32 crc32, u32 0} + payload;
//  * the COM2 text channel (spec section 11): sentinel lines, plus our framed messages
//    "KTSTR_MSG=<type hex8> <length> <crc hex8>\n<payload>\n" that carry any ring message
//    when the ring is unavailable;
//  * the KTSTR_SHM_BASE / KTSTR_SHM_SIZE command-line parameters (spec sections 10, 16);
//  * exit-code resolution from both channels (spec section 11).
//
// The guest side links this statically: no host-only code here.  Every byte the host reads
// from the guest (ring or COM2) is untrusted: sizes are checked against the mapping, CRCs
// are verified, and bad entries are counted rather than believed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr::wire {

// ---- message types ------------------------------------------------------------

// Type values are four ASCII characters read big-endian: tag("EXIT") = 0x45584954,
// so in little-endian memory the bytes appear reversed ("TIXE").
constexpr uint32_t tag(const char (&s)[5]) {
    return uint32_t(uint8_t(s[0])) << 24 | uint32_t(uint8_t(s[1])) << 16 |
           uint32_t(uint8_t(s[2])) << 8 | uint32_t(uint8_t(s[3]));
}

namespace msg {
inline constexpr uint32_t STIM = tag("STIM");   // step timing (binary, spec table)
inline constexpr uint32_t SCST = tag("SCST");   // scenario start, empty
inline constexpr uint32_t SCEN = tag("SCEN");   // scenario end, empty
inline constexpr uint32_t EXIT = tag("EXIT");   // i32 exit code of the guest job
inline constexpr uint32_t TEST = tag("TEST");   // JSON test result
inline constexpr uint32_t SCDX = tag("SCDX");   // i32 1: scheduler died mid-test
inline constexpr uint32_t CRSH = tag("CRSH");   // UTF-8 crash text
inline constexpr uint32_t PMET = tag("PMET");   // JSON payload metrics
inline constexpr uint32_t RAWO = tag("RAWO");   // JSON raw payload output
inline constexpr uint32_t PRAW = tag("PRAW");   // LLVM profraw [v2]
// ktstr extensions (not upstream):
inline constexpr uint32_t EVNT = tag("EVNT");   // one JSON object with an "event" field:
                                                // the host prints it as a ktstr.vmm/1 line
inline constexpr uint32_t OUTP = tag("OUTP");   // a chunk of the guest job's stdout
inline constexpr uint32_t ERRP = tag("ERRP");   // a chunk of the guest job's stderr
} // namespace msg

// "EXIT" for printable tags, else "0x1234abcd".
std::string type_name(uint32_t type);

// ---- shared-memory ring ----------------------------------------------------------

inline constexpr uint32_t SHM_MAGIC = 0x53544D52;      // bytes 52 4D 54 53
inline constexpr uint32_t SHM_VERSION = 1;
inline constexpr size_t SHM_HEADER_SIZE = 40;
inline constexpr size_t ENTRY_HEADER_SIZE = 16;
inline constexpr uint64_t MAX_READER_CAPACITY = 1ull << 30;   // host rejects larger rings

// Header field offsets.
namespace off {
inline constexpr size_t MAGIC = 0, VERSION = 4, CAPACITY = 8;
inline constexpr size_t DUMP_REQUEST = 12;    // host 'D' -> guest sysrq-trigger "D"
inline constexpr size_t STALL_REQUEST = 13;   // host 'S' -> guest creates /tmp/ktstr_stall
inline constexpr size_t SLOT0 = 14;           // host -> guest: 1 BPF writes done, 0xDD flush
inline constexpr size_t SLOT1 = 15;           // guest -> host: 1 scheduler up, 2 scenario starting,
                                              // 3 shutting down (SLOT1_SHUTDOWN)
inline constexpr size_t WRITE_PTR = 16, READ_PTR = 24, DROPS = 32;
} // namespace off

inline constexpr uint8_t SLOT0_FLUSH = 0xDD;
// The agent's job is over and the guest is going down: from here on the kernel
// freezes every CPU on its way to reset, which the monitor must not take for a
// scheduler stall, so it stops sampling.
inline constexpr uint8_t SLOT1_SHUTDOWN = 3;

// capacity = size - 40, saturating at 0 (and at u32 max).
uint32_t ring_capacity_for(uint64_t shm_size);

// Host, before boot: zero the header and write magic, version and capacity.
// `shm` must be 8-byte aligned and hold `size` bytes.
void init_header(uint8_t *shm, size_t size);

// One message as encoded in the ring (header + payload); also the unit of the COM2 frames.
std::string encode_entry(uint32_t type, std::string_view payload);
std::string encode_i32(int32_t v);                        // EXIT / SCDX payloads
std::optional<int32_t> decode_i32(std::string_view payload);   // exactly 4 bytes

struct Message {
    uint32_t type = 0;
    std::string payload;
    bool crc_ok = false;      // consumers ignore entries whose CRC does not match
};

// Guest side.  Thread-safe (one mutex); the crash path uses try_write, which never blocks.
class RingWriter {
public:
    RingWriter() = default;
    // `shm` maps the whole region (header included) of `size` bytes.
    RingWriter(uint8_t *shm, size_t size) : shm_(shm), size_(size) {}
    bool attached() const { return shm_ != nullptr; }

    enum class Status { ok, full, unusable };
    // Spec semantics: a message that does not fit counts one drop and is lost.
    // `unusable`: no ring, bad header (capacity 0 or beyond the mapping), or corrupt pointers.
    Status write(uint32_t type, std::string_view payload);
    Status try_write(uint32_t type, std::string_view payload);   // crash path
    // For streams that must not lose bytes (job output): while the ring is full, wait for
    // the host to drain it, polling every few ms, up to timeout_s; then count a drop.
    Status write_wait(uint32_t type, std::string_view payload, double timeout_s);

    // Largest payload one message may carry in this ring.
    size_t max_payload() const;

    uint8_t load_byte(size_t offset) const;
    void store_byte(size_t offset, uint8_t v);
    uint64_t drops() const;

private:
    Status write_locked(uint32_t type, std::string_view payload);
    uint8_t *shm_ = nullptr;
    size_t size_ = 0;
    std::mutex mu_;
};

// Host side.  Reads the ring in a mapping of guest RAM that the guest can scribble on at
// any time: every value is re-validated, nothing read is trusted for a size.
struct DrainResult {
    std::vector<Message> messages;
    uint64_t drops = 0;          // the guest's drop counter (saturating)
    uint64_t bad_crc = 0;        // entries whose payload CRC did not match
    std::string rejected;        // non-empty: the header or pointers were unusable (why)
    std::string corrupt;         // non-empty: the drain stopped at a corrupt entry (why)
};

// Drain the unread messages.  `consume`: store read_ptr back (live drains, so the guest can
// reuse the space); otherwise read from a snapshot and leave the header untouched.
// max_bytes bounds how much one call copies (0: everything available).
DrainResult drain_ring(uint8_t *shm, size_t size, bool consume, size_t max_bytes = 0);

// ---- command line ------------------------------------------------------------------

struct ShmLocation {
    uint64_t base = 0;
    uint64_t size = 0;
};
// Find KTSTR_SHM_BASE=... and KTSTR_SHM_SIZE=... in a kernel command line.  Hex with or
// without 0x/0X; nullopt when either is missing, malformed, zero-sized or overflowing.
std::optional<ShmLocation> parse_shm_cmdline(std::string_view cmdline);
// "KTSTR_SHM_BASE=0x1f000000 KTSTR_SHM_SIZE=0x1000000"
std::string format_shm_cmdline(const ShmLocation &loc);

// ---- COM2 sentinels ------------------------------------------------------------------

namespace sentinel {
inline constexpr std::string_view INIT_STARTED = "KTSTR_INIT_STARTED";
inline constexpr std::string_view PAYLOAD_STARTING = "KTSTR_PAYLOAD_STARTING";
inline constexpr std::string_view RESULT_START = "===KTSTR_TEST_RESULT_START===";
inline constexpr std::string_view RESULT_END = "===KTSTR_TEST_RESULT_END===";
inline constexpr std::string_view EXIT_PREFIX = "KTSTR_EXIT=";
inline constexpr std::string_view EXEC_EXIT_PREFIX = "KTSTR_EXEC_EXIT=";
inline constexpr std::string_view SCHED_OUTPUT_START = "===SCHED_OUTPUT_START===";
inline constexpr std::string_view SCHED_OUTPUT_END = "===SCHED_OUTPUT_END===";
inline constexpr std::string_view SCHEDULER_DIED = "SCHEDULER_DIED";
inline constexpr std::string_view SCHEDULER_NOT_ATTACHED = "SCHEDULER_NOT_ATTACHED: ";
inline constexpr std::string_view PANIC_PREFIX = "PANIC: ";
inline constexpr std::string_view FATAL_PREFIX = "FATAL: ";
// ktstr extension: a ring message sent over COM2.
inline constexpr std::string_view MSG_PREFIX = "KTSTR_MSG=";
} // namespace sentinel

// Largest payload a COM2 frame may announce; a larger announcement is treated as text.
inline constexpr size_t MAX_COM2_FRAME = 1u << 20;

// The frame header line (with its '\n'); the payload and one '\n' follow it.
std::string com2_frame_header(uint32_t type, std::string_view payload);

// One thing recognised on COM2.
struct Com2Record {
    enum class Kind {
        text,               // a line that is no sentinel (guest diagnostics)
        init_started,
        payload_starting,
        exit_code,          // KTSTR_EXIT=<n>; value
        exec_exit,          // KTSTR_EXEC_EXIT=<n>; value
        test_result,        // text between the result delimiters
        sched_output,       // text between the scheduler-output delimiters
        scheduler_died,
        scheduler_not_attached,   // text: the reason
        panic,              // text: after "PANIC: "
        fatal,              // text: after "FATAL: "
        message,            // a framed ring message; msg
    };
    Kind kind = Kind::text;
    std::string text;
    int64_t value = 0;
    Message msg;
};

// Incremental COM2 parser: feed bytes as they arrive.  Lines end in '\n'; '\r' is stripped
// and lines are trimmed before matching (the guest tty may add CRLF).  Frames are read by
// length, so their payload may hold any bytes.
class Com2Parser {
public:
    using Sink = std::function<void(Com2Record &&)>;
    explicit Com2Parser(Sink sink) : sink_(std::move(sink)) {}
    void feed(std::string_view bytes);
    // End of stream: a partial line is delivered as text; an unfinished frame or block counts
    // as bad (and its text is delivered).
    void finish();
    uint64_t bad_frames() const { return bad_frames_; }

private:
    void on_line(std::string_view line);
    void frame_done();
    Sink sink_;
    std::string line_;
    // frame state
    bool in_frame_ = false;
    uint32_t frame_type_ = 0, frame_crc_ = 0;
    size_t frame_len_ = 0;
    std::string frame_;
    // delimited block state
    enum class Block { none, result, sched } block_ = Block::none;
    std::string block_text_;
    uint64_t bad_frames_ = 0;
};

// ---- exit-code resolution ---------------------------------------------------------------

// Collects what both channels said about the guest job and resolves the outcome (spec 11):
// exit code = last CRC-valid 4-byte EXIT entry of the ring, else the last COM2 KTSTR_EXIT=,
// else unknown.  Result = last valid TEST, else the COM2 block.  Crash = first valid CRSH.
class Outcome {
public:
    void on_ring(const Message &m);
    void on_com2(const Com2Record &r);

    std::optional<int> exit_code() const;
    std::optional<int> exec_exit() const { return exec_exit_; }
    std::optional<std::string> result() const;
    std::optional<std::string> crash() const { return crash_; }
    bool init_started() const { return init_started_; }
    bool payload_started() const { return payload_started_; }
    bool scheduler_died() const { return scheduler_died_; }
    std::string exit_source() const;   // "ring", "com2" or "none"
    // Why the run failed to report, in the words of spec 11's diagnostics.
    std::string diagnosis() const;

private:
    std::optional<int> ring_exit_, com2_exit_, exec_exit_;
    std::optional<std::string> ring_result_, com2_result_, crash_, not_attached_, fatal_;
    bool init_started_ = false, payload_started_ = false, scheduler_died_ = false;
};

} // namespace ktstr::wire

namespace ktstr::wire {

// ---- host side of a run ------------------------------------------------------------------

// Everything the host does with what the guest sends, independent of the accelerator: feed
// it COM2 bytes as they arrive and poll the ring (a mapping of the shared region inside
// guest RAM) every few ms; it routes job output, guest events and diagnostics to the
// sinks and keeps the Outcome.  Not thread-safe: call from one thread (or under a lock).
class HostSession {
public:
    struct Sinks {
        std::function<void(std::string_view)> out;          // job stdout (OUTP)
        std::function<void(std::string_view)> err;          // job stderr (ERRP)
        std::function<void(const std::string &json)> event; // EVNT: one JSON object with "event"
        std::function<void(std::string_view)> diag;         // guest text lines, bad data reports
    };
    explicit HostSession(Sinks sinks);

    void on_com2(std::string_view bytes);
    // Live drain of the ring; shm may be null (no ring).  Returns messages consumed.
    size_t poll_ring(uint8_t *shm, size_t size);
    // After the guest stopped: drain the ring and flush the COM2 parser.
    void finish(uint8_t *shm, size_t size);

    const Outcome &outcome() const { return outcome_; }
    struct Stats {
        uint64_t ring_messages = 0, ring_bad_crc = 0, ring_drops = 0, com2_messages = 0,
                 com2_bad_frames = 0, bad_events = 0, out_bytes = 0, err_bytes = 0;
        std::string ring_problem;   // last rejection/corruption reason, if any
    };
    Stats stats() const;

private:
    void on_message(const Message &m, bool from_ring);
    Sinks sinks_;
    Outcome outcome_;
    Com2Parser com2_;
    Stats stats_;
};

} // namespace ktstr::wire
