// The host's side of a run: route what the guest sends (ring messages and COM2 bytes) to
// job output, guest events, diagnostics and the Outcome.  Guest data is untrusted: bad
// CRCs, malformed events and corrupt ring state are counted and reported, never believed.
#include "ktstr/wire.h"

#include "ktstr/json.h"
#include "ktstr/util.h"

namespace ktstr::wire {

HostSession::HostSession(Sinks sinks)
    : sinks_(std::move(sinks)), com2_([this](Com2Record &&r) {
          if (r.kind == Com2Record::Kind::message) {
              stats_.com2_messages++;
              if (r.msg.crc_ok) on_message(r.msg, false);
          } else if (r.kind == Com2Record::Kind::text) {
              if (sinks_.diag) sinks_.diag(r.text);
          }
          outcome_.on_com2(r);
      }) {}

void HostSession::on_message(const Message &m, bool from_ring) {
    switch (m.type) {
    case msg::OUTP:
        stats_.out_bytes += m.payload.size();
        if (sinks_.out) sinks_.out(m.payload);
        break;
    case msg::ERRP:
        stats_.err_bytes += m.payload.size();
        if (sinks_.err) sinks_.err(m.payload);
        break;
    case msg::EVNT: {
        json ev = json::parse(m.payload, nullptr, false);
        if (ev.is_discarded() || !ev.is_object() || !ev.contains("event") || !ev["event"].is_string()) {
            stats_.bad_events++;
            if (sinks_.diag) sinks_.diag(cat("ignored a malformed guest event (", m.payload.size(), " bytes)"));
            break;
        }
        if (sinks_.event) sinks_.event(m.payload);
        break;
    }
    default:
        break;
    }
    if (from_ring) outcome_.on_ring(m);   // COM2 frames reach the outcome through on_com2
}

void HostSession::on_com2(std::string_view bytes) { com2_.feed(bytes); }

size_t HostSession::poll_ring(uint8_t *shm, size_t size) {
    if (!shm) return 0;
    DrainResult d = drain_ring(shm, size, true);
    stats_.ring_drops = std::max(stats_.ring_drops, d.drops);
    stats_.ring_bad_crc += d.bad_crc;
    std::string problem = !d.rejected.empty() ? d.rejected : d.corrupt;
    if (!problem.empty() && problem != stats_.ring_problem) {
        stats_.ring_problem = problem;
        // an unused region (no magic) is normal with the ring disabled: not worth a line
        if (sinks_.diag && d.rejected.find("magic") == std::string::npos)
            sinks_.diag(cat("shared ring: ", problem));
    }
    for (const Message &m : d.messages) {
        stats_.ring_messages++;
        if (m.crc_ok) on_message(m, true);
        else if (sinks_.diag) sinks_.diag(cat("shared ring: ", type_name(m.type), " entry with a bad CRC ignored"));
    }
    return d.messages.size();
}

void HostSession::finish(uint8_t *shm, size_t size) {
    poll_ring(shm, size);
    com2_.finish();
}

HostSession::Stats HostSession::stats() const {
    Stats s = stats_;
    s.com2_bad_frames = com2_.bad_frames();
    return s;
}

} // namespace ktstr::wire
