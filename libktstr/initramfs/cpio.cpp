// cpio "newc" writer and reader (the format of the kernel's Documentation/driver-api/
// early-userspace/buffer-format.rst): 110-byte ASCII header "070701" + 13 fields of 8 hex
// digits, the name with its NUL padded so header+name is a multiple of 4, the data padded
// to 4, and a "TRAILER!!!" entry at the end.
#include "ktstr/initramfs.h"

#include <sys/stat.h>

namespace ktstr::initramfs {

namespace {

size_t pad4(size_t n) { return (4 - n % 4) % 4; }

void put_hex8(std::string &out, uint32_t v) {
    static const char digits[] = "0123456789ABCDEF";
    char buf[8];
    for (int i = 7; i >= 0; i--, v >>= 4) buf[i] = digits[v & 15];
    out.append(buf, 8);
}

} // namespace

std::string archive_path(std::string_view guest_path) {
    std::string_view p = guest_path;
    while (!p.empty() && p.front() == '/') p.remove_prefix(1);
    if (p.empty()) fail(ErrorKind::input, "empty initramfs path '", guest_path, "'");
    if (p.find('\0') != std::string_view::npos)
        fail(ErrorKind::input, "initramfs path contains a NUL byte");
    if (p.size() > CPIO_MAX_NAME)
        fail(ErrorKind::input, "initramfs path of ", p.size(), " bytes is longer than ",
             CPIO_MAX_NAME);
    for (const std::string &c : split(p, '/', true)) {
        if (c.empty() || c == "." || c == "..")
            fail(ErrorKind::input, "initramfs path '", guest_path,
                 "' has an empty, '.' or '..' component");
    }
    return std::string(p);
}

void CpioWriter::entry(std::string_view path, uint32_t mode, uint32_t ino, uint32_t nlink,
                       std::string_view data, uint32_t rdev_major, uint32_t rdev_minor) {
    // TRAILER!!! is written verbatim; every other name is validated.
    std::string name = path == "TRAILER!!!" ? std::string(path) : archive_path(path);
    size_t namesize = name.size() + 1;
    out_.reserve(out_.size() + CPIO_HEADER_SIZE + namesize + 3 + data.size() + 3);
    out_ += "070701";
    uint32_t fields[13] = {ino, mode, 0, 0, nlink, 0, uint32_t(data.size()), 0, 0,
                           rdev_major, rdev_minor, uint32_t(namesize), 0};
    for (uint32_t f : fields) put_hex8(out_, f);
    out_ += name;
    out_.append(1 + pad4(CPIO_HEADER_SIZE + namesize), '\0');
    out_ += data;
    out_.append(pad4(data.size()), '\0');
    entries_++;
}

void CpioWriter::dir(std::string_view path, uint32_t perm) {
    entry(path, S_IFDIR | (perm & 07777), next_ino_++, 2, {});
}

void CpioWriter::file(std::string_view path, std::string_view data, uint32_t perm) {
    if (data.size() > UINT32_MAX)
        fail(ErrorKind::input, "file '", path, "' of ", data.size(), " bytes is too large for cpio");
    entry(path, S_IFREG | (perm & 07777), next_ino_++, 1, data);
}

void CpioWriter::symlink(std::string_view path, std::string_view target) {
    if (target.empty()) fail(ErrorKind::input, "symlink '", path, "' has an empty target");
    entry(path, S_IFLNK | 0777, next_ino_++, 1, target);
}

void CpioWriter::device(std::string_view path, char type, uint32_t major, uint32_t minor,
                        uint32_t perm) {
    if (type != 'c' && type != 'b')
        fail(ErrorKind::input, "device '", path, "': type must be 'c' or 'b', not '", type, "'");
    entry(path, (type == 'c' ? S_IFCHR : S_IFBLK) | (perm & 07777), next_ino_++, 1, {}, major,
          minor);
}

void CpioWriter::hardlinks(const std::vector<std::string> &paths, std::string_view data,
                           uint32_t perm) {
    if (paths.empty()) return;
    uint32_t ino = next_ino_++;
    for (size_t i = 0; i < paths.size(); i++) {
        bool last = i + 1 == paths.size();
        entry(paths[i], S_IFREG | (perm & 07777), ino, uint32_t(paths.size()),
              last ? data : std::string_view());
    }
}

void CpioWriter::trailer(size_t align) {
    entry("TRAILER!!!", 0, 0, 1, {});
    if (align > 1 && out_.size() % align) out_.append(align - out_.size() % align, '\0');
}

std::vector<CpioEntry> read_cpio(std::string_view a) {
    std::vector<CpioEntry> out;
    size_t pos = 0;
    auto field = [&](size_t at, int i) -> uint32_t {
        uint32_t v = 0;
        for (size_t k = 0; k < 8; k++) {
            char c = a[at + 6 + size_t(i) * 8 + k];
            int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (d < 0) fail(ErrorKind::input, "cpio header at ", at, ": bad hex digit in field ", i);
            v = v << 4 | uint32_t(d);
        }
        return v;
    };
    for (;;) {
        while (pos < a.size() && a[pos] == '\0') pos++;   // padding between archives
        if (pos >= a.size()) break;
        if (a.size() - pos < CPIO_HEADER_SIZE || a.substr(pos, 6) != "070701")
            fail(ErrorKind::input, "no cpio newc header at offset ", pos);
        CpioEntry e;
        e.ino = field(pos, 0);
        e.mode = field(pos, 1);
        e.nlink = field(pos, 4);
        uint32_t filesize = field(pos, 6);
        e.rdev_major = field(pos, 9);
        e.rdev_minor = field(pos, 10);
        uint32_t namesize = field(pos, 11);
        size_t name_at = pos + CPIO_HEADER_SIZE;
        if (namesize == 0 || name_at + namesize > a.size() || a[name_at + namesize - 1] != '\0')
            fail(ErrorKind::input, "cpio entry at ", pos, ": bad name size ", namesize);
        e.name.assign(a.data() + name_at, namesize - 1);
        size_t data_at = name_at + namesize + pad4(CPIO_HEADER_SIZE + namesize);
        if (data_at + filesize > a.size())
            fail(ErrorKind::input, "cpio entry '", e.name, "': data runs past the end");
        pos = data_at + filesize + pad4(filesize);
        if (e.name == "TRAILER!!!") continue;   // a later archive may follow
        e.data.assign(a.data() + data_at, filesize);
        out.push_back(std::move(e));
    }
    return out;
}

} // namespace ktstr::initramfs
