// The shared-region command-line parameters and exit-code resolution (vmm spec 10, 11, 16).
#include "ktstr/wire.h"

#include "ktstr/util.h"

namespace ktstr::wire {

namespace {
// Hex with or without 0x/0X; nullopt on junk, empty or overflow.
std::optional<uint64_t> parse_hex64(std::string_view s) {
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    if (s.empty() || s.size() > 16) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return std::nullopt;
        v = v << 4 | uint64_t(d);
    }
    return v;
}
} // namespace

std::optional<ShmLocation> parse_shm_cmdline(std::string_view cmdline) {
    std::optional<uint64_t> base, size;
    bool bad = false;
    for (const std::string &word : split(cmdline, ' ', false)) {
        std::string_view w = trim(word);
        auto value = [&](std::string_view key, std::optional<uint64_t> &out) {
            if (!starts_with(w, key)) return;
            out = parse_hex64(w.substr(key.size()));
            if (!out) bad = true;
        };
        value("KTSTR_SHM_BASE=", base);
        value("KTSTR_SHM_SIZE=", size);
    }
    if (bad || !base || !size || *size == 0 || *base + *size < *base) return std::nullopt;
    return ShmLocation{*base, *size};
}

std::string format_shm_cmdline(const ShmLocation &loc) {
    return cat("KTSTR_SHM_BASE=0x", std::hex, loc.base, " KTSTR_SHM_SIZE=0x", loc.size);
}

// ---- outcome -------------------------------------------------------------------------

void Outcome::on_ring(const Message &m) {
    if (!m.crc_ok) return;
    switch (m.type) {
    case msg::EXIT:
        if (auto v = decode_i32(m.payload)) ring_exit_ = *v;
        break;
    case msg::TEST:
        ring_result_ = m.payload;
        break;
    case msg::CRSH:
        if (!crash_) crash_ = m.payload;
        break;
    case msg::SCDX:
        scheduler_died_ = true;
        break;
    default:
        break;
    }
}

void Outcome::on_com2(const Com2Record &r) {
    using K = Com2Record::Kind;
    switch (r.kind) {
    case K::init_started: init_started_ = true; break;
    case K::payload_starting: payload_started_ = true; break;
    case K::exit_code:
        if (r.value >= INT32_MIN && r.value <= INT32_MAX) com2_exit_ = int(r.value);
        break;
    case K::exec_exit:
        if (r.value >= INT32_MIN && r.value <= INT32_MAX) exec_exit_ = int(r.value);
        break;
    case K::test_result: com2_result_ = r.text; break;
    case K::scheduler_died: scheduler_died_ = true; break;
    case K::scheduler_not_attached: not_attached_ = r.text; break;
    case K::panic:
        if (!crash_) crash_ = r.text;
        break;
    case K::fatal: fatal_ = r.text; break;
    case K::message:
        // A ring message that travelled over COM2 counts as COM2 evidence: the ring's own
        // EXIT (if any) still wins.
        if (!r.msg.crc_ok) break;
        if (r.msg.type == msg::EXIT) {
            if (auto v = decode_i32(r.msg.payload)) com2_exit_ = *v;
        } else if (r.msg.type == msg::TEST) {
            com2_result_ = r.msg.payload;
        } else {
            on_ring(r.msg);
        }
        break;
    default:
        break;
    }
}

std::optional<int> Outcome::exit_code() const { return ring_exit_ ? ring_exit_ : com2_exit_; }

std::optional<std::string> Outcome::result() const {
    return ring_result_ ? ring_result_ : com2_result_;
}

std::string Outcome::exit_source() const {
    return ring_exit_ ? "ring" : com2_exit_ ? "com2" : "none";
}

std::string Outcome::diagnosis() const {
    if (crash_) return cat("guest crashed: ", *crash_);
    if (fatal_) return cat("guest init failed: ", *fatal_);
    if (scheduler_died_) return "the scheduler died";
    if (not_attached_) return cat("the scheduler did not attach: ", *not_attached_);
    if (exit_code()) return cat("guest exited with ", *exit_code());
    if (!init_started_) return "the kernel never reached the guest init (no KTSTR_INIT_STARTED)";
    if (!payload_started_) return "guest setup failed before the job started";
    return "the guest job crashed or hung (no exit code reported)";
}

} // namespace ktstr::wire
