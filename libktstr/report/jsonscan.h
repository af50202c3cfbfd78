// libktstr/report (internal): a validating, allocation-free JSON pull scanner.
//
// Monitor streams are mostly `sample` lines (one object per CPU, ten per
// second); building a DOM for each is what makes a naive reader slower than
// jq.  The scanner walks the text once, hands out keys and scalars as views,
// and skips what the caller does not ask for.  Any syntax error (including a
// line cut short by a crashed producer) makes ok() false; the caller then asks
// nlohmann for the precise message.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace ktstr::report::detail {

class JsonScan {
public:
    explicit JsonScan(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    bool ok() const { return ok_; }
    bool at_end() { ws(); return p_ == end_; }

    // Object iteration (the caller keeps the "first member" state, so nesting is free):
    //   bool first; if (s.begin_object(first)) while (s.next_key(first, k)) { ...value... }
    bool begin_object(bool &first) { return expect('{', first); }
    bool next_key(bool &first, std::string_view &key) {
        if (!ok_) return false;
        ws();
        if (p_ < end_ && *p_ == '}') { ++p_; return false; }
        if (!first) {
            if (p_ >= end_ || *p_ != ',') return bad();
            ++p_;
        }
        first = false;
        if (!string(key)) return false;
        ws();
        if (p_ >= end_ || *p_ != ':') return bad();
        ++p_;
        return true;
    }
    // Array iteration:  bool first; if (s.begin_array(first)) while (s.next_element(first)) {...}
    bool begin_array(bool &first) { return expect('[', first); }
    bool next_element(bool &first) {
        if (!ok_) return false;
        ws();
        if (p_ < end_ && *p_ == ']') { ++p_; return false; }
        if (!first) {
            if (p_ >= end_ || *p_ != ',') return bad();
            ++p_;
        }
        first = false;
        return true;
    }
    bool is_next(char c) { ws(); return ok_ && p_ < end_ && *p_ == c; }

    // A string's raw contents (escapes left as they are: the keys and
    // values we look at are plain ASCII identifiers).
    bool string(std::string_view &out) {
        ws();
        if (p_ >= end_ || *p_ != '"') return bad();
        const char *s = ++p_;
        while (p_ < end_ && *p_ != '"') {
            if (static_cast<unsigned char>(*p_) < 0x20) return bad();
            if (*p_ == '\\') {
                if (++p_ >= end_) return bad();
            }
            ++p_;
        }
        if (p_ >= end_) return bad();
        out = std::string_view(s, p_ - s);
        ++p_;
        return true;
    }

    // Numbers; null reads as "absent" (returns false without an error).
    bool number(double &out) {
        ws();
        if (null()) return false;
        const char *s = p_;
        if (!scan_number()) return false;
        // Fast path for plain non-negative integers (the common case).
        bool integral = true;
        uint64_t v = 0;
        for (const char *q = s; q < p_; ++q) {
            if (*q < '0' || *q > '9' || q - s > 17) { integral = false; break; }
            v = v * 10 + static_cast<uint64_t>(*q - '0');
        }
        if (integral) { out = static_cast<double>(v); return true; }
        out = std::strtod(s, nullptr);   // bounded by the JSON grammar just checked
        return true;
    }
    bool integer(int64_t &out) {
        ws();
        if (null()) return false;
        const char *s = p_;
        if (!scan_number()) return false;
        bool neg = *s == '-';
        const char *q = neg ? s + 1 : s;
        uint64_t v = 0;
        bool integral = true;
        for (; q < p_; ++q) {
            if (*q < '0' || *q > '9') { integral = false; break; }
            uint64_t nv = v * 10 + static_cast<uint64_t>(*q - '0');
            if (nv / 10 != v) { v = UINT64_MAX; break; }  // saturate
            v = nv;
        }
        if (!integral) {
            double d = std::strtod(s, nullptr);
            if (!(d == d)) return false;
            out = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : static_cast<int64_t>(d);
            return true;
        }
        if (v > static_cast<uint64_t>(INT64_MAX)) v = static_cast<uint64_t>(INT64_MAX);
        out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
        return true;
    }

    // Skip any value, validating it.
    bool skip() {
        ws();
        if (p_ >= end_) return bad();
        switch (*p_) {
        case '"': { std::string_view s; return string(s); }
        case '{': {
            bool first;
            if (!begin_object(first)) return false;
            std::string_view k;
            while (next_key(first, k))
                if (!skip()) return false;
            return ok_;
        }
        case '[': {
            bool first;
            if (!begin_array(first)) return false;
            while (next_element(first))
                if (!skip()) return false;
            return ok_;
        }
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        default: return scan_number();
        }
    }

private:
    void ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
    }
    bool bad() { ok_ = false; p_ = end_; return false; }
    bool expect(char c, bool &first) {
        ws();
        if (p_ >= end_ || *p_ != c) return bad();
        ++p_;
        first = true;
        return true;
    }
    bool null() {
        if (end_ - p_ >= 4 && std::string_view(p_, 4) == "null") { p_ += 4; return true; }
        return false;
    }
    bool literal(std::string_view w) {
        if (static_cast<size_t>(end_ - p_) < w.size() || std::string_view(p_, w.size()) != w) return bad();
        p_ += w.size();
        return true;
    }
    bool digits() {
        const char *s = p_;
        while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        return p_ > s;
    }
    bool scan_number() {
        if (p_ < end_ && *p_ == '-') ++p_;
        if (!digits()) return bad();
        if (p_ < end_ && *p_ == '.') { ++p_; if (!digits()) return bad(); }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            ++p_;
            if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (!digits()) return bad();
        }
        return true;
    }

    const char *p_;
    const char *end_;
    bool ok_ = true;
};

} // namespace ktstr::report::detail
