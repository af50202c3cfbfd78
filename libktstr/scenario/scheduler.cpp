// libktstr/scenario: the sched_ext scheduler under test, in the guest.
//
// Started before the scenario with its output in a log file; "up" means
// /sys/kernel/sched_ext/state reads "enabled" and root/ops names it.  How it
// ended comes from three places: its wait status, the sched_ext state, and
// the kernel's own lines in /dev/kmsg ("sched_ext: BPF scheduler "simple"
// disabled (unregistered from user space)", plus the error message line for
// error exits), read from where the log stood when we started it.
#include "ktstr/scenario_run.h"
#include "ktstr/process.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ktstr::scenario {

std::string sched_ext_state(const std::string &dir) {
    auto s = try_read_file(dir + "/state");
    return s ? std::string(trim(*s)) : std::string();
}

namespace {
std::string root_ops(const std::string &dir) {
    auto s = try_read_file(dir + "/root/ops");
    return s ? std::string(trim(*s)) : std::string();
}

std::string tail_lines(const std::string &text, size_t lines) {
    size_t pos = text.size();
    if (pos && text[pos - 1] == '\n') --pos;
    for (size_t n = 0; n < lines && pos != std::string::npos && pos > 0; ++n) pos = text.rfind('\n', pos - 1);
    return pos == std::string::npos ? text : text.substr(pos + (pos < text.size() && text[pos] == '\n' ? 1 : 0));
}
} // namespace

std::unique_ptr<Scheduler> Scheduler::start(const SchedulerOptions &opt) {
    if (access(opt.path.c_str(), X_OK) != 0) fail_errno(ErrorKind::input, cat("scheduler ", opt.path));
    std::unique_ptr<Scheduler> s(new Scheduler());
    s->opt_ = opt;
    s->kmsg_.reset(open(opt.kmsg_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (s->kmsg_) lseek(s->kmsg_.get(), 0, SEEK_END);
    unique_fd log(open(opt.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!log) fail_errno(ErrorKind::environment, cat("scheduler log ", opt.log_path));
    std::vector<std::string> argv = {opt.path};
    argv.insert(argv.end(), opt.args.begin(), opt.args.end());
    std::vector<char *> cargv;
    for (auto &a : argv) cargv.push_back(const_cast<char *>(a.c_str()));
    cargv.push_back(nullptr);
    fflush(nullptr);
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid < 0) fail_errno(ErrorKind::environment, "fork for the scheduler");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0);
        dup2(log.get(), 1);
        dup2(log.get(), 2);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        for (int sig : {SIGUSR1, SIGUSR2, SIGINT, SIGTERM, SIGCHLD, SIGPIPE}) ::signal(sig, SIG_DFL);
        execv(opt.path.c_str(), cargv.data());
        dprintf(2, "exec %s: %s\n", opt.path.c_str(), strerror(errno));
        _exit(127);
    }
    s->pid_ = pid;
    log::info("scheduler ", shell_join(argv), " started (pid ", pid, "), waiting for sched_ext");
    while (true) {
        s->reap(false);
        std::string state = sched_ext_state(opt.sched_ext_dir), ops = root_ops(opt.sched_ext_dir);
        if (state == "enabled" && !ops.empty()) {
            s->ops_ = ops;
            s->enable_s_ = seconds_since(t0);
            log::info("sched_ext enabled ops '", ops, "' after ", s->enable_s_, " s");
            return s;
        }
        if (s->status_) {
            s->read_kmsg();
            fail(ErrorKind::guest, "scheduler ", opt.path, " ", describe_wait_status(*s->status_),
                 " before sched_ext was enabled (state '", state, "'); output:\n", s->output_tail());
        }
        if (seconds_since(t0) > opt.enable_timeout_s) {
            s->read_kmsg();
            fail(ErrorKind::guest, "scheduler ", opt.path, " not attached after ", opt.enable_timeout_s, " s (sched_ext state '",
                 state.empty() ? "absent: no /sys/kernel/sched_ext" : state, "', root/ops '", ops, "'); output:\n", s->output_tail());
        }
        usleep(50000);
    }
}

Scheduler::~Scheduler() {
    if (pid_ > 0 && !status_) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        reap(true);
    }
}

void Scheduler::reap(bool block) {
    if (status_ || pid_ <= 0) return;
    int st = 0;
    pid_t r = waitpid(pid_, &st, block ? 0 : WNOHANG);
    if (r == pid_) status_ = st;
    else if (r < 0 && errno == ECHILD) status_ = 0;   // reaped elsewhere (SIGCHLD ignored)
}

void Scheduler::read_kmsg() {
    if (!kmsg_) return;
    char buf[8192];
    while (true) {
        ssize_t n = ::read(kmsg_.get(), buf, sizeof buf - 1);
        if (n < 0 && errno == EPIPE) continue;   // overwritten records: skip ahead
        if (n <= 0) break;
        std::string rec(buf, static_cast<size_t>(n));
        auto semi = rec.find(';');
        std::string msg = semi == std::string::npos ? rec : rec.substr(semi + 1);
        msg = std::string(trim(msg.substr(0, msg.find('\n'))));
        if (msg.find("sched_ext") != std::string::npos && kernel_lines_.size() < 64) kernel_lines_.push_back(msg);
    }
}

bool Scheduler::alive() {
    reap(false);
    if (status_) return false;
    return sched_ext_state(opt_.sched_ext_dir) == "enabled";
}

void Scheduler::signal(int sig) {
    if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void Scheduler::stop() {
    if (pid_ <= 0 || status_) return;
    stopped_by_us_ = true;
    ::kill(pid_, SIGINT);
    for (int i = 0; i < 40 && !status_; ++i) {
        usleep(50000);
        reap(false);
    }
    if (!status_) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        reap(true);
    }
}

std::string Scheduler::output_tail(size_t lines) const {
    auto s = try_read_file(opt_.log_path);
    return s ? tail_lines(*s, lines) : std::string();
}

bool Scheduler::kernel_reason_seen() const {
    for (auto &l : kernel_lines_)
        if (l.find(" disabled (") != std::string::npos) return true;
    return false;
}

// A probe may see the end half-way: after a SIGKILL the kernel starts disabling the
// scheduler while the process is still exiting, and logs the reason only once it is
// done.  Wait (bounded) for all three so that the record says what really happened.
void Scheduler::settle_end() {
    if (end_settled_) return;
    end_settled_ = true;
    const auto t0 = Clock::now();
    while (true) {
        reap(false);
        read_kmsg();
        const std::string state = sched_ext_state(opt_.sched_ext_dir);
        const bool kernel_done = !kmsg_ || (state != "disabling" && kernel_reason_seen());
        if ((status_ && kernel_done) || seconds_since(t0) >= opt_.end_grace_s) return;
        usleep(20000);
    }
}

ojson Scheduler::end_record() {
    reap(false);
    if (status_ || sched_ext_state(opt_.sched_ext_dir) != "enabled") settle_end();
    read_kmsg();
    ojson j;
    j["path"] = opt_.path;
    j["pid"] = pid_;
    j["ops"] = ops_;
    j["enable_s"] = enable_s_;
    std::string state = sched_ext_state(opt_.sched_ext_dir);
    if (!status_ && state == "enabled") j["status"] = "running";
    else if (!status_) j["status"] = "kicked_out";   // process alive, kernel detached it
    else j["status"] = stopped_by_us_ ? "stopped" : "exited";
    if (status_) j["exit"] = describe_wait_status(*status_);
    j["sched_ext_state"] = state;
    // The kernel's reason: 'BPF scheduler "x" disabled (<reason>)' and, for
    // errors, the next line with the message.
    std::string reason, message;
    for (size_t i = 0; i < kernel_lines_.size(); ++i) {
        const std::string &l = kernel_lines_[i];
        auto d = l.find(" disabled (");
        if (d != std::string::npos) {
            reason = l.substr(d + 11);
            if (!reason.empty() && reason.back() == ')') reason.pop_back();
            if (i + 1 < kernel_lines_.size() && kernel_lines_[i + 1].find(" disabled (") == std::string::npos &&
                kernel_lines_[i + 1].find(" enabled") == std::string::npos)
                message = kernel_lines_[i + 1];
        }
    }
    if (!reason.empty()) j["exit_kind"] = reason;
    if (!message.empty()) j["exit_message"] = message;
    j["kernel_log"] = kernel_lines_;
    j["output_tail"] = output_tail();
    return j;
}

std::string Scheduler::describe_end() {
    ojson r = end_record();
    std::string out = r.contains("exit") ? r["exit"].get<std::string>() : r["status"].get<std::string>();
    out += cat("; sched_ext state '", r["sched_ext_state"].get<std::string>(), "'");
    if (r.contains("exit_kind")) out += cat("; kernel: disabled (", r["exit_kind"].get<std::string>(), ")");
    if (r.contains("exit_message")) out += cat(" ", r["exit_message"].get<std::string>());
    std::string tail = tail_lines(r["output_tail"].get<std::string>(), 1);
    if (!tail.empty()) out += cat("; last output: ", trim(tail));
    return out;
}

} // namespace ktstr::scenario
