// The COM2 text channel (vmm spec section 11): sentinel lines and framed ring messages.
//
// COM2 is the fallback when the ring is unavailable and the channel of the few lines the
// spec defines.  The guest puts ttyS1 in raw mode, but another writer may still interleave
// text, so lines are split on '\n', stripped of '\r' and trimmed before matching.  Framed
// messages are read by their announced length (bounded by MAX_COM2_FRAME) and CRC-checked.
#include "ktstr/wire.h"

#include "ktstr/util.h"

namespace ktstr::wire {

namespace {
// Bound on one text line or delimited block kept in memory: the guest controls the text.
constexpr size_t MAX_LINE = 1u << 20;
constexpr size_t MAX_BLOCK = 64u << 20;

std::optional<uint32_t> parse_hex32(std::string_view s) {
    if (s.size() != 8) return std::nullopt;
    uint32_t v = 0;
    for (char c : s) {
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return std::nullopt;
        v = v << 4 | uint32_t(d);
    }
    return v;
}
} // namespace

std::string com2_frame_header(uint32_t type, std::string_view payload) {
    return cat(sentinel::MSG_PREFIX, hex8(type), ' ', payload.size(), ' ', hex8(crc32_of(payload)),
               '\n');
}

void Com2Parser::feed(std::string_view bytes) {
    size_t i = 0;
    while (i < bytes.size()) {
        if (in_frame_) {
            size_t take = std::min(bytes.size() - i, frame_len_ - frame_.size());
            frame_.append(bytes.data() + i, take);
            i += take;
            if (frame_.size() == frame_len_) frame_done();
            continue;
        }
        size_t nl = bytes.find('\n', i);
        if (nl == std::string_view::npos) {
            line_.append(bytes.data() + i, bytes.size() - i);
            if (line_.size() > MAX_LINE) {   // an endless line: deliver it in pieces
                sink_({Com2Record::Kind::text, std::move(line_), 0, {}});
                line_.clear();
            }
            return;
        }
        line_.append(bytes.data() + i, nl - i);
        i = nl + 1;
        std::string line = std::move(line_);
        line_.clear();
        on_line(line);
    }
}

void Com2Parser::frame_done() {
    in_frame_ = false;
    Com2Record r;
    r.kind = Com2Record::Kind::message;
    r.msg.type = frame_type_;
    r.msg.crc_ok = crc32_of(frame_) == frame_crc_;
    if (!r.msg.crc_ok) bad_frames_++;
    r.msg.payload = std::move(frame_);
    frame_.clear();
    sink_(std::move(r));
}

void Com2Parser::on_line(std::string_view raw) {
    std::string_view line = trim(raw);   // trim() also drops the '\r' of CRLF
    using K = Com2Record::Kind;
    if (block_ != Block::none) {
        std::string_view end = block_ == Block::result ? sentinel::RESULT_END
                                                       : sentinel::SCHED_OUTPUT_END;
        if (line == end) {
            sink_({block_ == Block::result ? K::test_result : K::sched_output,
                   std::move(block_text_), 0, {}});
            block_text_.clear();
            block_ = Block::none;
        } else if (block_text_.size() + raw.size() < MAX_BLOCK) {
            if (!block_text_.empty()) block_text_ += '\n';
            block_text_ += block_ == Block::result ? line : raw;
        } else {
            bad_frames_++;   // runaway block: keep what fits
        }
        return;
    }
    if (line.empty()) return;
    if (starts_with(line, sentinel::MSG_PREFIX)) {
        // KTSTR_MSG=<type hex8> <len> <crc hex8>
        // (Parsed only when there are three fields: optionals built from
        // "cond ? parse : nullopt" trip g++ 12's -Wmaybe-uninitialized at -O1.)
        auto f = split(line.substr(sentinel::MSG_PREFIX.size()), ' ', false);
        if (f.size() == 3) {
            auto type = parse_hex32(f[0]);
            auto len = parse_u64(f[1]);
            auto crc = parse_hex32(f[2]);
            if (type && len && crc && *len <= MAX_COM2_FRAME) {
                frame_type_ = *type;
                frame_crc_ = *crc;
                frame_len_ = size_t(*len);
                in_frame_ = true;
                if (frame_len_ == 0) frame_done();
                return;
            }
        }
        bad_frames_++;
        sink_({K::text, std::string(line), 0, {}});
        return;
    }
    auto int_after = [&](std::string_view prefix) -> std::optional<int64_t> {
        if (!starts_with(line, prefix)) return std::nullopt;
        return parse_i64(trim(line.substr(prefix.size())));
    };
    if (line == sentinel::INIT_STARTED) {
        sink_({K::init_started, {}, 0, {}});
    } else if (line == sentinel::PAYLOAD_STARTING) {
        sink_({K::payload_starting, {}, 0, {}});
    } else if (line == sentinel::RESULT_START) {
        block_ = Block::result;
    } else if (line == sentinel::SCHED_OUTPUT_START) {
        block_ = Block::sched;
    } else if (auto v = int_after(sentinel::EXIT_PREFIX)) {
        sink_({K::exit_code, {}, *v, {}});
    } else if (auto v2 = int_after(sentinel::EXEC_EXIT_PREFIX)) {
        sink_({K::exec_exit, {}, *v2, {}});
    } else if (line == sentinel::SCHEDULER_DIED) {
        sink_({K::scheduler_died, {}, 0, {}});
    } else if (starts_with(line, sentinel::SCHEDULER_NOT_ATTACHED)) {
        sink_({K::scheduler_not_attached,
               std::string(line.substr(sentinel::SCHEDULER_NOT_ATTACHED.size())), 0, {}});
    } else if (starts_with(line, sentinel::PANIC_PREFIX)) {
        sink_({K::panic, std::string(line.substr(sentinel::PANIC_PREFIX.size())), 0, {}});
    } else if (starts_with(line, sentinel::FATAL_PREFIX)) {
        sink_({K::fatal, std::string(line.substr(sentinel::FATAL_PREFIX.size())), 0, {}});
    } else {
        sink_({K::text, std::string(line), 0, {}});
    }
}

void Com2Parser::finish() {
    if (in_frame_) {
        bad_frames_++;
        in_frame_ = false;
        frame_.clear();
    }
    if (block_ != Block::none) {
        bad_frames_++;
        if (!block_text_.empty())
            sink_({Com2Record::Kind::text, std::move(block_text_), 0, {}});
        block_text_.clear();
        block_ = Block::none;
    }
    if (!line_.empty()) {
        std::string line = std::move(line_);
        line_.clear();
        on_line(line);
    }
}

} // namespace ktstr::wire
