// libktstr/util: SCM_RIGHTS descriptor passing and Unix sockets.
#include "ktstr/fdpass.h"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace ktstr {

namespace {
sockaddr_un unix_addr(const std::string &path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path)
        fail(ErrorKind::usage, "socket path '", path, "' must be 1..", sizeof a.sun_path - 1, " bytes");
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}
} // namespace

void send_with_fds(int sock, const std::string &data_in, const std::vector<int> &fds) {
    std::string data = data_in.empty() ? std::string("\n") : data_in;
    iovec iov{const_cast<char *>(data.data()), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = ctrl.data();
        msg.msg_controllen = ctrl.size();
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n < 0) fail_errno(ErrorKind::environment, "sendmsg");
    // The descriptors travel with the first byte; the rest is ordinary data.
    if (static_cast<size_t>(n) < data.size())
        write_all(sock, data.data() + n, data.size() - static_cast<size_t>(n));
}

Received recv_with_fds(int sock, size_t max_bytes, size_t max_fds) {
    Received r;
    std::string buf(max_bytes, '\0');
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * max_fds));
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    ssize_t n;
    do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n < 0) fail_errno(ErrorKind::environment, "recvmsg");
    for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            r.fds.emplace_back(fd);
        }
    }
    if (r.fds.size() > max_fds) r.fds.resize(max_fds);   // extras closed by unique_fd
    buf.resize(static_cast<size_t>(n));
    r.data = std::move(buf);
    return r;
}

unique_fd unix_listen(const std::string &path, int backlog) {
    sockaddr_un a = unix_addr(path);
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) fail_errno(ErrorKind::environment, "socket");
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) fail(ErrorKind::usage, path, ": exists and is not a socket; refusing to replace it");
        ::unlink(path.c_str());
    }
    if (::bind(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
        fail_errno(ErrorKind::environment, "bind " + path);
    if (::listen(s.get(), backlog) != 0) fail_errno(ErrorKind::environment, "listen " + path);
    return s;
}

unique_fd unix_connect(const std::string &path) {
    sockaddr_un a = unix_addr(path);
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) fail_errno(ErrorKind::environment, "socket");
    int r;
    do r = ::connect(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof a); while (r != 0 && errno == EINTR);
    if (r != 0) fail_errno(ErrorKind::environment, "connect " + path);
    return s;
}

} // namespace ktstr
