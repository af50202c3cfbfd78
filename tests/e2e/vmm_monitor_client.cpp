// Test helper for vmm_tcg_monitor_socket.sh (built by that script, not a tool):
// connect to ktstr-vmm's --monitor-socket, receive the ktstr.layout/1 JSON with
// the guest-RAM memfds, map them and search guest memory for a string while the
// guest runs.  Prints one JSON line; exit 0 when found, 1 when not in time.
//   vmm_monitor_client SOCKET NEEDLE TIMEOUT_S
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

#include "ktstr/fdpass.h"
#include "ktstr/vmm.h"

using namespace ktstr;

int main(int argc, char **argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: %s SOCKET NEEDLE TIMEOUT_S\n", argv[0]); return 2; }
    std::string path = argv[1], needle = argv[2];
    double timeout = std::stod(argv[3]);
    auto t0 = Clock::now();
    try {
        unique_fd sock;
        while (!sock) {
            try {
                sock = unix_connect(path);
            } catch (const Error &) {
                if (seconds_since(t0) > timeout) throw;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
        std::string text;
        std::vector<unique_fd> fds;
        for (;;) {   // the fds come with the first bytes; read the rest to EOF
            Received r = recv_with_fds(sock.get());
            if (r.data.empty()) break;
            text += r.data;
            for (auto &f : r.fds) fds.push_back(std::move(f));
        }
        vmm::Layout layout = vmm::Layout::from_json(parse_json(text, "layout"), "layout");
        std::map<uint32_t, uint64_t> fd_len;
        for (auto &reg : layout.regions) fd_len[reg.fd_index] = std::max(fd_len[reg.fd_index], reg.fd_offset + reg.size);
        if (fd_len.size() != fds.size())
            fail(ErrorKind::input, "layout names ", fd_len.size(), " memfds but ", fds.size(), " came with it");
        std::vector<Mapping> maps;
        for (auto &[idx, len] : fd_len) maps.push_back(Mapping::map_fd(fds.at(idx).get(), len, PROT_READ));
        double got_layout = seconds_since(t0);
        while (seconds_since(t0) < timeout) {
            for (auto &reg : layout.regions) {
                const uint8_t *base = maps[reg.fd_index].data() + reg.fd_offset;
                const uint8_t *hit = static_cast<const uint8_t *>(
                    memmem(base, reg.size, needle.data(), needle.size()));
                if (hit) {
                    ojson out = {{"found", true}, {"gpa", reg.gpa + uint64_t(hit - base)},
                                 {"after_s", seconds_since(t0)}, {"layout_after_s", got_layout},
                                 {"accel", vmm::accel_name(layout.accel)}, {"fds", fds.size()},
                                 {"regions", layout.regions.size()}, {"vmm_pid", layout.vmm_pid},
                                 {"vcpu_tids", layout.vcpu_tids ? ojson(*layout.vcpu_tids) : ojson(nullptr)},
                                 {"shm", layout.shm ? ojson(layout.shm->base_pa) : ojson(nullptr)}};
                    emit_line(out);
                    return 0;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        emit_line(ojson{{"found", false}, {"after_s", seconds_since(t0)}});
        return 1;
    } catch (const Error &e) {
        std::fprintf(stderr, "vmm_monitor_client: %s\n", e.what());
        return 3;
    }
}
