// libktstr/util: child processes with guaranteed cleanup.
#include "ktstr/process.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace ktstr {

Child::Child(Child &&o) noexcept
    : pid_(std::exchange(o.pid_, -1)), group_(o.group_), out_(std::move(o.out_)), err_(std::move(o.err_)),
      status_(std::exchange(o.status_, std::nullopt)) {}

Child &Child::operator=(Child &&o) noexcept {
    if (this != &o) {
        if (running()) { signal(SIGKILL); wait(); }
        pid_ = std::exchange(o.pid_, -1);
        group_ = o.group_;
        out_ = std::move(o.out_);
        err_ = std::move(o.err_);
        status_ = std::exchange(o.status_, std::nullopt);
    }
    return *this;
}

Child::~Child() {
    if (running()) {
        signal(SIGKILL);
        wait();
    }
}

Child Child::spawn(const std::vector<std::string> &argv, const SpawnOptions &opt) {
    if (argv.empty()) fail(ErrorKind::usage, "spawn: empty command");
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
    auto mkpipe = [](int p[2]) {
        if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(ErrorKind::environment, "pipe");
    };
    if (opt.capture_stdout || opt.merge_stderr) mkpipe(outp);
    if (opt.capture_stderr && !opt.merge_stderr) mkpipe(errp);
    mkpipe(execp);   // reports an exec failure (errno) back to the parent

    std::vector<char *> cargv;
    for (auto &a : argv) cargv.push_back(const_cast<char *>(a.c_str()));
    cargv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char **e = environ; *e; ++e) {
        std::string kv = *e;
        std::string key = kv.substr(0, kv.find('='));
        bool overridden = false;
        for (auto &add : opt.env_add)
            if (add.substr(0, add.find('=')) == key) overridden = true;
        if (!overridden) envs.push_back(kv);
    }
    for (auto &add : opt.env_add) envs.push_back(add);
    std::vector<char *> cenv;
    for (auto &e : envs) cenv.push_back(const_cast<char *>(e.c_str()));
    cenv.push_back(nullptr);
    pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid < 0) fail_errno(ErrorKind::environment, "fork");
    if (pid == 0) {
        if (opt.new_process_group) ::setpgid(0, 0);
        if (opt.die_with_parent) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
        }
        ::signal(SIGPIPE, SIG_DFL);
        if (opt.stdin_null) {
            int n = ::open("/dev/null", O_RDONLY);
            if (n >= 0) { ::dup2(n, 0); ::close(n); }
        }
        if (outp[1] >= 0) ::dup2(outp[1], 1);
        if (opt.merge_stderr) ::dup2(outp[1], 2);
        else if (errp[1] >= 0) ::dup2(errp[1], 2);
        for (int fd : opt.keep_fds) {
            int fl = ::fcntl(fd, F_GETFD);
            if (fl >= 0) ::fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
        }
        if (!opt.cwd.empty() && ::chdir(opt.cwd.c_str()) != 0) {
            int e = errno;
            ssize_t r = ::write(execp[1], &e, sizeof e);
            (void)r;
            ::_exit(127);
        }
        ::execvpe(cargv[0], cargv.data(), cenv.data());
        int e = errno;
        ssize_t r = ::write(execp[1], &e, sizeof e);
        (void)r;
        ::_exit(127);
    }
    Child c;
    c.pid_ = pid;
    c.group_ = opt.new_process_group;
    if (opt.new_process_group) ::setpgid(pid, pid);   // close the race with the child's own call
    if (outp[1] >= 0) { ::close(outp[1]); c.out_.reset(outp[0]); }
    if (errp[1] >= 0) { ::close(errp[1]); c.err_.reset(errp[0]); }
    ::close(execp[1]);
    int child_errno = 0;
    ssize_t n;
    do n = ::read(execp[0], &child_errno, sizeof child_errno); while (n < 0 && errno == EINTR);
    ::close(execp[0]);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        c.wait();
        fail(ErrorKind::environment, "cannot run ", argv[0],
             opt.cwd.empty() ? "" : " in " + opt.cwd, ": ", std::strerror(child_errno));
    }
    return c;
}

bool Child::poll() {
    if (pid_ <= 0) return true;
    if (status_) return true;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) { status_ = st; return true; }
    if (r < 0 && errno == ECHILD) { status_ = 0; return true; }
    return false;
}

int Child::wait() {
    if (pid_ <= 0) return -1;
    while (!status_) {
        int st = 0;
        pid_t r = ::waitpid(pid_, &st, 0);
        if (r == pid_) status_ = st;
        else if (r < 0 && errno != EINTR) status_ = 0;
    }
    return *status_;
}

std::optional<int> Child::wait_for(double seconds) {
    auto t0 = Clock::now();
    int sleep_us = 1000;
    while (!poll()) {
        if (seconds_since(t0) >= seconds) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
        sleep_us = std::min(sleep_us * 2, 50000);
    }
    return status_;
}

void Child::signal(int sig) {
    if (pid_ <= 0 || status_) return;
    if (group_) ::kill(-pid_, sig);
    ::kill(pid_, sig);
}

void Child::terminate(double grace) {
    if (!running()) { wait(); return; }
    signal(SIGTERM);
    if (!wait_for(grace)) {
        signal(SIGKILL);
        wait();
    } else if (group_) {
        ::kill(-pid_, SIGKILL);   // stragglers in the group
    }
}

int exit_status_code(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 255;
}

std::string describe_wait_status(int st) {
    if (WIFEXITED(st)) return cat("exited with status ", WEXITSTATUS(st));
    if (WIFSIGNALED(st)) return cat("killed by signal ", WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")");
    return "ended abnormally";
}

RunResult run_capture(const std::vector<std::string> &argv, double timeout, const SpawnOptions &in) {
    SpawnOptions opt = in;
    opt.capture_stdout = true;
    if (!opt.merge_stderr) opt.capture_stderr = true;
    auto t0 = Clock::now();
    Child c = Child::spawn(argv, opt);
    RunResult r;
    std::vector<pollfd> fds;
    if (c.stdout_fd() >= 0) fds.push_back({c.stdout_fd(), POLLIN, 0});
    if (c.stderr_fd() >= 0) fds.push_back({c.stderr_fd(), POLLIN, 0});
    size_t open_fds = fds.size();
    char buf[65536];
    while (open_fds) {
        int wait_ms = -1;
        if (timeout > 0) {
            double left = timeout - seconds_since(t0);
            if (left <= 0) { r.timed_out = true; break; }
            wait_ms = static_cast<int>(left * 1000) + 1;
        }
        int n = ::poll(fds.data(), fds.size(), wait_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno(ErrorKind::environment, "poll");
        for (auto &p : fds) {
            if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t k = ::read(p.fd, buf, sizeof buf);
            if (k > 0) (p.fd == c.stdout_fd() ? r.out : r.err).append(buf, static_cast<size_t>(k));
            else if (k == 0 || errno != EINTR) { p.fd = -1; --open_fds; }
        }
    }
    if (r.timed_out) {
        c.signal(SIGKILL);
        c.wait();
        r.status = -1;
    } else {
        r.status = exit_status_code(c.wait());
    }
    r.seconds = seconds_since(t0);
    return r;
}

std::string shell_quote(const std::string &s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == std::string::npos)
        return s;
    std::string o = "'";
    for (char ch : s) {
        if (ch == '\'') o += "'\\''";
        else o += ch;
    }
    return o + "'";
}

std::string shell_join(const std::vector<std::string> &argv) {
    std::string o;
    for (auto &a : argv) {
        if (!o.empty()) o += ' ';
        o += shell_quote(a);
    }
    return o;
}

} // namespace ktstr
