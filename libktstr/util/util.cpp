// libktstr/util: errors, logging, RAII holders, files, strings, time.
#include "ktstr/util.h"

#include <algorithm>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

namespace ktstr {

const char *error_kind_name(ErrorKind k) {
    switch (k) {
    case ErrorKind::usage: return "usage";
    case ErrorKind::input: return "input";
    case ErrorKind::environment: return "environment";
    case ErrorKind::guest: return "guest";
    }
    return "unknown";
}

int exit_code_for(ErrorKind k) {
    switch (k) {
    case ErrorKind::usage:
    case ErrorKind::input: return EXIT_USAGE;
    case ErrorKind::environment:
    case ErrorKind::guest: return EXIT_ENVIRONMENT;
    }
    return EXIT_ENVIRONMENT;
}

void fail_errno(ErrorKind kind, const std::string &what) { fail_errno(kind, what, errno); }

void fail_errno(ErrorKind kind, const std::string &what, int err) {
    throw Error(kind, what + ": " + std::strerror(err));
}

// ---- logging ----------------------------------------------------------------

namespace log {
namespace {
std::string g_program = "ktstr";
Level g_level = [] {
    const char *v = std::getenv("KTSTR_VERBOSE");
    return (v && *v && std::strcmp(v, "0") != 0) ? Level::debug : Level::info;
}();
std::mutex g_mutex;
} // namespace

void set_program(std::string name) { g_program = std::move(name); }
const std::string &program() { return g_program; }
void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

void write(Level l, const std::string &msg) {
    static const char *const words[] = {"error: ", "warning: ", "", "debug: "};
    std::string line = g_program + ": " + words[static_cast<int>(l)] + msg + "\n";
    std::lock_guard<std::mutex> lk(g_mutex);
    ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
    (void)r;
}
} // namespace log

// ---- RAII ---------------------------------------------------------------------

void notify_eventfd(int fd) {
    uint64_t one = 1;
    ssize_t n = ::write(fd, &one, sizeof one);
    (void)n;
}

void unique_fd::reset(int fd) {
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);
    fd_ = fd;
}

Mapping &Mapping::operator=(Mapping &&o) noexcept {
    if (this != &o) {
        reset();
        addr_ = std::exchange(o.addr_, nullptr);
        len_ = std::exchange(o.len_, 0);
    }
    return *this;
}

void Mapping::reset() {
    if (addr_) ::munmap(addr_, len_);
    addr_ = nullptr;
    len_ = 0;
}

Mapping Mapping::map_fd(int fd, size_t len, int prot, off_t offset) {
    void *p = ::mmap(nullptr, len, prot, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED) fail_errno(ErrorKind::environment, cat("mmap of ", len, " bytes"));
    return Mapping(p, len);
}

Mapping Mapping::anonymous(size_t len) {
    void *p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail_errno(ErrorKind::environment, cat("anonymous mmap of ", len, " bytes"));
    return Mapping(p, len);
}

// ---- files ----------------------------------------------------------------------

std::optional<std::string> try_read_file(const std::string &path, size_t max) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    std::string out;
    char buf[65536];
    while (out.size() < max) {
        ssize_t n = ::read(fd.get(), buf, std::min(sizeof buf, max - out.size()));
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

std::string read_file(const std::string &path, size_t max) {
    errno = 0;
    auto s = try_read_file(path, max);
    if (!s) fail_errno(ErrorKind::input, path, errno ? errno : EIO);
    return *s;
}

void write_all(int fd, const void *buf, size_t len) {
    const char *p = static_cast<const char *>(buf);
    while (len) {
        ssize_t n = ::write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno(ErrorKind::environment, "write");
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
}

size_t read_full(int fd, void *buf, size_t len) {
    char *p = static_cast<char *>(buf);
    size_t got = 0;
    while (got < len) {
        ssize_t n = ::read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno(ErrorKind::environment, "read");
        }
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    return got;
}

void write_file_atomic(const std::string &path, std::string_view data, mode_t mode) {
    std::string tmp = cat(path, ".tmp-", ::getpid());
    unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) fail_errno(ErrorKind::environment, cat("cannot write ", path, " (creating ", tmp, ")"));
    try {
        write_all(fd.get(), data);
        if (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0)
            fail_errno(ErrorKind::environment, cat("cannot write ", path, " (writing ", tmp, ")"));
        fd.reset();
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            fail_errno(ErrorKind::environment, "cannot rename " + tmp + " to " + path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

// ---- strings ----------------------------------------------------------------------

std::vector<std::string> split(std::string_view s, char sep, bool keep_empty) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t pos = s.find(sep, start);
        std::string_view piece = s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
        if (keep_empty || !piece.empty()) out.emplace_back(piece);
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    return out;
}

std::string_view trim(std::string_view s) {
    const char *ws = " \t\r\n\f\v";
    size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    size_t e = s.find_last_not_of(ws);
    return s.substr(b, e - b + 1);
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view x) {
    return s.size() >= x.size() && s.substr(s.size() - x.size()) == x;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
    if (s.empty()) return std::nullopt;
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);
    }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<int64_t> parse_i64(std::string_view s) {
    bool neg = !s.empty() && s[0] == '-';
    if (neg) s.remove_prefix(1);
    auto u = parse_u64(s);
    if (!u) return std::nullopt;
    if (neg) {
        if (*u > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
        return static_cast<int64_t>(0 - *u);
    }
    if (*u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(*u);
}

std::string hex8(uint32_t v) {
    char b[9];
    std::snprintf(b, sizeof b, "%08x", v);
    return b;
}

std::string hex16(uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return b;
}

uint32_t crc32_of(const void *data, size_t len) {
    uLong c = ::crc32(0L, Z_NULL, 0);
    const Bytef *p = static_cast<const Bytef *>(data);
    while (len) {   // zlib's length is uInt: feed huge buffers in pieces
        uInt chunk = len > (1u << 30) ? (1u << 30) : static_cast<uInt>(len);
        c = ::crc32(c, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return static_cast<uint32_t>(c);
}
uint32_t crc32_of(std::string_view d) { return crc32_of(d.data(), d.size()); }

// ---- time ---------------------------------------------------------------------------

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string utc_timestamp() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

// ---- companions ---------------------------------------------------------------------

std::string self_dir() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    std::string p(buf, static_cast<size_t>(n));
    auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::string find_companion(const std::string &name) {
    std::string dir = self_dir();
    for (const std::string &cand : {dir + "/" + name, dir + "/../libexec/ktstr/" + name}) {
        if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
    return {};
}

std::string which(const std::string &name) {
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
    const char *path = std::getenv("PATH");
    for (const auto &dir : split(path ? path : "/usr/bin:/bin", ':', false)) {
        std::string cand = dir + "/" + name;
        if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
    return {};
}

} // namespace ktstr
