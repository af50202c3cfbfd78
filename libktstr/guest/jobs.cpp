// Job kinds the agent can run, one row each in job_kinds().
//
//   exec      run /exec_cmd with busybox sh -c, stream its stdout/stderr to the host
//             (OUTP/ERRP messages), exit with its status
//   shell     an interactive busybox shell on COM2 (the host wires it to its terminal)
//
//   scenario  run /scenario.json (and more named by --file) with libktstr/scenario: cgroups,
//             workers, the scheduler under test, checks; every stage is a guest event
#include "ktstr/guest.h"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "ktstr/process.h"
#include "ktstr/scenario_job.h"

namespace ktstr::guest {

int status_code(int ws) {
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
    return 255;
}

std::optional<std::string> JobContext::file(const std::string &name) const {
    return try_read_file(root + (root.empty() || root.back() == '/' ? "" : "/") + name);
}

std::vector<std::string> parse_args_file(std::string_view text) {
    std::vector<std::string> lines = split(text, '\n', true);
    for (auto &l : lines)
        if (!l.empty() && l.back() == '\r') l.pop_back();
    while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
    return lines;
}

int run_streamed(const std::vector<std::string> &argv, HostChannel &host,
                 const std::vector<std::string> &env_add) {
    SpawnOptions opt;
    opt.capture_stdout = true;
    opt.capture_stderr = true;
    opt.env_add = env_add;
    opt.die_with_parent = false;   // the parent is PID 1; the child outlives nothing
    Child child = Child::spawn(argv, opt);
    struct Stream { int fd; uint32_t type; bool open; };
    Stream streams[2] = {{child.stdout_fd(), wire::msg::OUTP, true},
                         {child.stderr_fd(), wire::msg::ERRP, true}};
    for (auto &s : streams) ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    // Chunks fit comfortably in a ring slot and in a COM2 frame.
    std::string buf(64 * 1024, '\0');
    bool exited = false;
    Clock::time_point exited_at;
    auto pump = [&](Stream &s) {   // read what is there now; false at EOF
        for (;;) {
            ssize_t n = ::read(s.fd, buf.data(), buf.size());
            if (n > 0) {
                host.send(s.type, std::string_view(buf.data(), size_t(n)), true);
                continue;
            }
            if (n == 0) return false;
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
    };
    while (streams[0].open || streams[1].open) {
        pollfd pfd[2];
        nfds_t n = 0;
        Stream *which[2];
        for (auto &s : streams)
            if (s.open) { pfd[n] = {s.fd, POLLIN, 0}; which[n++] = &s; }
        int r = ::poll(pfd, n, exited ? 0 : 50);
        if (r < 0 && errno != EINTR) break;
        bool any = false;
        for (nfds_t i = 0; i < n; i++) {
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                any = true;
                if (!pump(*which[i])) which[i]->open = false;
            }
        }
        // Child gone and pipes quiet (or still busy a second later): whatever still holds
        // them is a background process of the job, not the job.
        if (exited && (!any || seconds_since(exited_at) > 1.0)) break;
        if (!exited && child.poll()) {
            exited = true;
            exited_at = Clock::now();
        }
    }
    int ws = child.wait();
    return status_code(ws);
}

namespace {

int run_exec(JobContext &ctx) {
    auto cmd = ctx.file("exec_cmd");
    if (!cmd) {
        ctx.host->line("ktstr-guest: exec job without /exec_cmd");
        return 255;
    }
    int code = run_streamed({ctx.shell, "sh", "-c", *cmd}, *ctx.host);
    ctx.host->line(cat(wire::sentinel::EXEC_EXIT_PREFIX, code));
    return code;
}

// An interactive shell on COM2: a session of its own with COM2 as controlling terminal,
// in the cooked mode a person expects (the agent keeps COM2 raw for frames otherwise).
int run_shell(JobContext &ctx) {
    int tty = ctx.host->com2_fd();
    if (tty < 0 || !::isatty(tty)) {
        ctx.host->line("ktstr-guest: shell job needs COM2 as a terminal");
        return 255;
    }
    struct termios t;
    if (::tcgetattr(tty, &t) == 0) {
        t.c_iflag = ICRNL | IXON | IUTF8;
        t.c_oflag = OPOST | ONLCR;
        t.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | IEXTEN | ECHOCTL | ECHOKE;
        t.c_cflag = (t.c_cflag & ~(CSIZE | PARENB)) | CS8 | CREAD;
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        ::tcsetattr(tty, TCSANOW, &t);
    }
    const char *rows = getenv("KTSTR_ROWS"), *cols = getenv("KTSTR_COLS");
    if (rows && cols) {
        struct winsize ws = {};
        ws.ws_row = uint16_t(parse_u64(rows).value_or(24));
        ws.ws_col = uint16_t(parse_u64(cols).value_or(80));
        ::ioctl(tty, TIOCSWINSZ, &ws);
    }
    std::string term = getenv("KTSTR_TERM") ? getenv("KTSTR_TERM") : "linux";
    // The host forwards its terminal only from here on: the tty is set up, so
    // what it sends waits in the line discipline until the shell reads it.
    ctx.host->com2_is_terminal();
    if (ctx.emit) ctx.emit(ojson{{"event", "shell_ready"}});
    pid_t pid = ::fork();
    if (pid < 0) return 255;
    if (pid == 0) {
        ::setsid();
        ::ioctl(tty, TIOCSCTTY, 1);
        for (int fd = 0; fd < 3; fd++) ::dup2(tty, fd);
        ::setenv("TERM", term.c_str(), 1);
        ::setenv("PS1", "ktstr:\\w# ", 1);
        ::setenv("HOME", "/tmp", 1);
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGQUIT, SIG_DFL);
        ::chdir("/tmp");
        auto cmd = ctx.file("exec_cmd");
        if (cmd && !trim(*cmd).empty())
            ::execl(ctx.shell.c_str(), "sh", "-c", cmd->c_str(), nullptr);
        else
            ::execl(ctx.shell.c_str(), "-sh", nullptr);   // "-": a login shell
        ::_exit(127);
    }
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return status_code(ws);
}

// The scenario job runs in the agent's own process: it owns the cgroups and the
// scheduler under test for the whole run, and its events go straight to the host.
int run_scenario(JobContext &ctx) {
    return scenario::run_scenario_job(ctx.args, ctx.root, ctx.emit);
}

} // namespace

const std::vector<JobKind> &job_kinds() {
    static const std::vector<JobKind> kinds = {
        {"exec", "run /exec_cmd with sh -c, stream its output, exit with its status", run_exec, true},
        {"shell", "interactive busybox shell on COM2", run_shell, false},
        {scenario::JOB_KIND, "run /scenario.json under EEVDF or --scheduler, report checks as events", run_scenario, true},
    };
    return kinds;
}

const JobKind *find_job_kind(const std::string &name) {
    for (const JobKind &k : job_kinds())
        if (k.name == name) return &k;
    return nullptr;
}

} // namespace ktstr::guest
