// libktstr/util: schema-stamped JSON documents and JSON-lines output.
#include "ktstr/json.h"

#include "ktstr/util.h"

namespace ktstr {

std::string schema_name(const std::string &kind, int major) { return cat("ktstr.", kind, "/", major); }

ojson make_doc(const std::string &kind, int major) {
    ojson d = ojson::object();
    d["schema"] = schema_name(kind, major);
    return d;
}

SchemaId parse_schema(const std::string &s) {
    SchemaId id;
    if (!starts_with(s, "ktstr.")) return id;
    auto slash = s.rfind('/');
    if (slash == std::string::npos || slash <= 6) return id;
    auto major = parse_u64(s.substr(slash + 1));
    if (!major || *major > 1000000) return id;
    id.kind = s.substr(6, slash - 6);
    id.major = static_cast<int>(*major);
    return id;
}

void require_schema(const json &doc, const std::string &kind, int major, const std::string &where) {
    if (!doc.is_object() || !doc.contains("schema") || !doc["schema"].is_string())
        fail(ErrorKind::input, where, ": missing \"schema\" (expected \"", schema_name(kind, major), "\")");
    std::string s = doc["schema"].get<std::string>();
    SchemaId id = parse_schema(s);
    if (id.kind.empty())
        fail(ErrorKind::input, where, ": malformed schema \"", s, "\" (expected \"", schema_name(kind, major), "\")");
    if (id.kind != kind)
        fail(ErrorKind::input, where, ": schema \"", s, "\" is not a ", kind, " document (expected \"",
             schema_name(kind, major), "\")");
    if (id.major != major)
        fail(ErrorKind::input, where, ": unsupported schema version \"", s, "\" (this build reads \"",
             schema_name(kind, major), "\")");
}

json parse_json(const std::string &text, const std::string &where) {
    try {
        return json::parse(text);
    } catch (const json::parse_error &e) {
        std::string what = e.what();
        auto p = what.find("parse error");
        fail(ErrorKind::input, where, ": invalid JSON: ", p == std::string::npos ? what : what.substr(p));
    }
}

namespace {
void put_line(const std::string &s, FILE *out) {
    std::fputs(s.c_str(), out);
    std::fputc('\n', out);
    std::fflush(out);
}
} // namespace

void emit_line(const ojson &doc, FILE *out) { put_line(doc.dump(-1, ' ', false, json::error_handler_t::replace), out); }
void emit_line(const json &doc, FILE *out) { put_line(doc.dump(-1, ' ', false, json::error_handler_t::replace), out); }

namespace detail {
const char *json_type_word(const json &j) {
    switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::number_float: return "number (float)";
    case json::value_t::number_integer: return j.get<int64_t>() < 0 ? "negative number" : "number";
    case json::value_t::number_unsigned: return "number";
    default: return "other";
    }
}
} // namespace detail

} // namespace ktstr
