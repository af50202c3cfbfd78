// libktstr/util: pass file descriptors over Unix sockets (SCM_RIGHTS).
#pragma once

#include <string>
#include <vector>

#include "ktstr/util.h"

namespace ktstr {

// Send `data` (at least one byte; empty is sent as "\n") with `fds` attached.
void send_with_fds(int sock, const std::string &data, const std::vector<int> &fds);

struct Received {
    std::string data;                  // empty at EOF
    std::vector<unique_fd> fds;        // owned; closed when dropped
};
// One recvmsg() of up to max_bytes with up to max_fds descriptors (CLOEXEC).
// Extra descriptors beyond max_fds are closed, never leaked.
Received recv_with_fds(int sock, size_t max_bytes = 65536, size_t max_fds = 16);

// Unix stream sockets: a listener bound to `path` (unlinking a stale socket
// first) and a client connection.  Errors are Error(environment) naming the path.
unique_fd unix_listen(const std::string &path, int backlog = 8);
unique_fd unix_connect(const std::string &path);

} // namespace ktstr
