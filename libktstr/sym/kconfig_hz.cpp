// libktstr/sym: the kernel's own .config (IKCONFIG) and CONFIG_HZ.
#include "ktstr/sym.h"

#include <filesystem>

#include <sys/utsname.h>
#include <zlib.h>

namespace ktstr::sym {

std::optional<std::string> extract_ikconfig(std::string_view image) {
    static constexpr std::string_view marker = "IKCFG_ST";
    size_t pos = image.find(marker);
    if (pos == std::string_view::npos) return std::nullopt;
    std::string_view gz = image.substr(pos + marker.size());
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return std::nullopt;
    zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(gz.data()));
    zs.avail_in = uInt(std::min<size_t>(gz.size(), 64u << 20));
    std::string out;
    char buf[65536];
    int rc = Z_OK;
    while (rc == Z_OK && out.size() < (64u << 20)) {
        zs.next_out = reinterpret_cast<Bytef *>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) return std::nullopt;
    return out;
}

std::optional<std::string> config_value(std::string_view text, std::string_view name) {
    for (const auto &raw : split(text, '\n')) {
        std::string_view line = trim(raw);
        if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != '=')
            continue;
        return std::string(trim(line.substr(name.size() + 1)));
    }
    return std::nullopt;
}

namespace {
std::optional<uint32_t> hz_of(std::string_view config_text) {
    auto v = config_value(config_text, "CONFIG_HZ");
    if (!v) return std::nullopt;
    auto n = parse_u64(*v);
    if (!n || *n == 0 || *n > 100000) return std::nullopt;
    return uint32_t(*n);
}
} // namespace

HzResult resolve_hz(std::optional<uint32_t> explicit_hz, const ElfSymbols *vmlinux) {
    if (explicit_hz && *explicit_hz > 0) return {*explicit_hz, "explicit"};
    if (vmlinux) {
        if (auto cfg = extract_ikconfig(vmlinux->file_bytes()))
            if (auto hz = hz_of(*cfg)) return {*hz, "ikconfig"};
        namespace fs = std::filesystem;
        std::error_code ec;
        fs::path dir = fs::absolute(vmlinux->path(), ec).parent_path();
        for (int up = 0; up <= 4 && !dir.empty(); up++, dir = dir.parent_path()) {
            for (const char *name : {".config", "config"}) {
                auto text = try_read_file((dir / name).string());
                if (text)
                    if (auto hz = hz_of(*text)) return {*hz, cat((dir / name).string())};
            }
            if (dir == dir.root_path()) break;
        }
        return {250, "default"};
    }
    utsname u{};
    if (uname(&u) == 0)
        if (auto text = try_read_file(cat("/boot/config-", u.release)))
            if (auto hz = hz_of(*text)) return {*hz, "host"};
    return {250, "default"};
}

} // namespace ktstr::sym
