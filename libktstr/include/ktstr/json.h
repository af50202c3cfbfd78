// libktstr/util: JSON documents and JSON-lines streams.
//
// Every document carries "schema": "ktstr.<kind>/<major>".  Consumers reject an
// unknown major version and ignore unknown fields.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace ktstr {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;   // keeps insertion order: stable, readable output

// {"schema": "ktstr.<kind>/<major>"}
ojson make_doc(const std::string &kind, int major);
std::string schema_name(const std::string &kind, int major);

struct SchemaId {
    std::string kind;
    int major = 0;
};
// Parse "ktstr.<kind>/<major>"; nullopt-like empty kind when malformed.
SchemaId parse_schema(const std::string &s);

// Throws Error(input) when doc has no schema, another kind, or another major.
// `where` names the file/line for the message.
void require_schema(const json &doc, const std::string &kind, int major, const std::string &where);

// Parse text as JSON; throws Error(input) "WHERE: invalid JSON: ...".
json parse_json(const std::string &text, const std::string &where);

// Write one compact JSON line and flush: safe to tee/jq/grep mid-pipe.
void emit_line(const ojson &doc, FILE *out = stdout);
void emit_line(const json &doc, FILE *out = stdout);

// Typed field access with errors that name the field:
//   get_field<int>(doc, "memory_mb", "topo.json")
// throws Error(input) "topo.json: field 'memory_mb': expected number, got string".
template <typename T>
T get_field(const json &doc, const std::string &field, const std::string &where);
template <typename T>
T get_field_or(const json &doc, const std::string &field, const T &dflt, const std::string &where);

} // namespace ktstr

#include "ktstr/json_impl.h"
