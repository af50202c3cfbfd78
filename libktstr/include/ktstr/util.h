// libktstr/util: errors, RAII holders for fds/mappings/children, logging, strings.
// Every other module builds on this one; it depends on nothing but libc/libstdc++.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace ktstr {

// ---- errors -------------------------------------------------------------

// What went wrong, which decides the process exit code:
//   usage, input        -> 2 (the caller can fix the command or the file)
//   environment, guest  -> 3 (the machine, the build, or the VM failed us)
// A failed *test verdict* is not an Error: tools return 1 for it directly.
enum class ErrorKind { usage, input, environment, guest };

const char *error_kind_name(ErrorKind k);
int exit_code_for(ErrorKind k);

inline constexpr int EXIT_OK = 0;
inline constexpr int EXIT_VERDICT_FAILED = 1;
inline constexpr int EXIT_USAGE = 2;
inline constexpr int EXIT_ENVIRONMENT = 3;

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string &msg) : std::runtime_error(msg), kind_(kind) {}
    ErrorKind kind() const { return kind_; }
    int exit_code() const { return exit_code_for(kind_); }

private:
    ErrorKind kind_;
};

// Concatenate anything streamable: cat("bad value '", v, "' in ", file).
template <typename... Args>
std::string cat(Args &&...args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, Args &&...args) {
    throw Error(kind, cat(std::forward<Args>(args)...));
}

// "<what>: <strerror(errno)>" as an Error of the given kind.
[[noreturn]] void fail_errno(ErrorKind kind, const std::string &what);
[[noreturn]] void fail_errno(ErrorKind kind, const std::string &what, int err);

// ---- logging --------------------------------------------------------------

// One style for every tool, on stderr: "ktstr-vmm: warning: ...".
// Data never goes through here; stdout is for machine-readable output only.
namespace log {
enum class Level { error = 0, warning = 1, info = 2, debug = 3 };
void set_program(std::string name);       // e.g. "ktstr-vmm"
const std::string &program();
void set_level(Level l);                  // default info; KTSTR_VERBOSE=1 -> debug
Level level();
void write(Level l, const std::string &msg);
template <typename... A> void error(A &&...a) { write(Level::error, cat(std::forward<A>(a)...)); }
template <typename... A> void warn(A &&...a) { write(Level::warning, cat(std::forward<A>(a)...)); }
template <typename... A> void info(A &&...a) { if (level() >= Level::info) write(Level::info, cat(std::forward<A>(a)...)); }
template <typename... A> void debug(A &&...a) { if (level() >= Level::debug) write(Level::debug, cat(std::forward<A>(a)...)); }
} // namespace log

// ---- RAII holders -----------------------------------------------------------

// Adds 1 to an eventfd (wakes a poller); async-signal-safe, errors ignored
// (a full counter already wakes it).
void notify_eventfd(int fd);

class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) : fd_(fd) {}
    unique_fd(const unique_fd &) = delete;
    unique_fd &operator=(const unique_fd &) = delete;
    unique_fd(unique_fd &&o) noexcept : fd_(o.release()) {}
    unique_fd &operator=(unique_fd &&o) noexcept { reset(o.release()); return *this; }
    ~unique_fd() { reset(); }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { int f = fd_; fd_ = -1; return f; }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// A mmap()ed range, unmapped on destruction.
class Mapping {
public:
    Mapping() = default;
    Mapping(void *addr, size_t len) : addr_(addr), len_(len) {}
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;
    Mapping(Mapping &&o) noexcept : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
    Mapping &operator=(Mapping &&o) noexcept;
    ~Mapping() { reset(); }
    void reset();
    uint8_t *data() const { return static_cast<uint8_t *>(addr_); }
    size_t size() const { return len_; }
    explicit operator bool() const { return addr_ != nullptr; }

    // mmap(fd) of [offset, offset+len), MAP_SHARED; throws Error(environment).
    static Mapping map_fd(int fd, size_t len, int prot, off_t offset = 0);
    // Anonymous private mapping.
    static Mapping anonymous(size_t len);

private:
    void *addr_ = nullptr;
    size_t len_ = 0;
};

// ---- files and strings ------------------------------------------------------

// Whole-file read, or its first `max` bytes; throws Error(input) naming the
// path on failure.
std::string read_file(const std::string &path, size_t max = SIZE_MAX);
std::optional<std::string> try_read_file(const std::string &path, size_t max = SIZE_MAX);
// Write via a temp file in the same directory and rename(): readers never see a
// partial file, and a failure leaves nothing behind.  Throws Error(environment).
void write_file_atomic(const std::string &path, std::string_view data, mode_t mode = 0644);
// Full write()/read() loops on fds, retrying EINTR.  write_all throws.
void write_all(int fd, const void *buf, size_t len);
inline void write_all(int fd, std::string_view s) { write_all(fd, s.data(), s.size()); }
// Returns bytes read (< len only at EOF).
size_t read_full(int fd, void *buf, size_t len);

std::vector<std::string> split(std::string_view s, char sep, bool keep_empty = true);
std::string_view trim(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);
// Strict integer parsing (whole string, base 10 or 0x hex); nullopt on junk or overflow.
std::optional<uint64_t> parse_u64(std::string_view s);
std::optional<int64_t> parse_i64(std::string_view s);
std::string hex8(uint32_t v);    // 8 lowercase hex digits
std::string hex16(uint64_t v);   // 16 lowercase hex digits
uint32_t crc32_of(std::string_view data);
uint32_t crc32_of(const void *data, size_t len);

// ---- time -----------------------------------------------------------------

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0);
// Wall-clock UTC "YYYY-MM-DDTHH:MM:SSZ".
std::string utc_timestamp();

// ---- locating companions ------------------------------------------------------

// Directory of the running executable (/proc/self/exe).
std::string self_dir();
// Find a companion program installed beside us: $dir/NAME, then
// $dir/../libexec/ktstr/NAME.  Empty if neither exists.
std::string find_companion(const std::string &name);
// Search $PATH; empty if not found.
std::string which(const std::string &name);

} // namespace ktstr
