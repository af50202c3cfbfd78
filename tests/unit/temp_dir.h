// A fresh directory under /tmp for one test case, removed with all it holds.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <stdlib.h>

#include "ktstr/util.h"

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/ktstr-unit-XXXXXX";
        REQUIRE(::mkdtemp(t));
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    std::string operator/(const std::string &rel) const { return path + "/" + rel; }
    // Writes `text` to rel (parent directories created).
    void write(const std::string &rel, const std::string &text) const {
        std::filesystem::path p = std::filesystem::path(path) / rel;
        std::filesystem::create_directories(p.parent_path());
        ktstr::write_file_atomic(p.string(), text);
    }
};
