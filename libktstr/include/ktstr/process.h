// libktstr/util: child processes that never outlive their owner.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "ktstr/util.h"

namespace ktstr {

struct SpawnOptions {
    std::string cwd;                         // empty: inherit
    std::vector<std::string> env_add;        // "K=V" added/overriding
    bool capture_stdout = false;             // else inherited
    bool capture_stderr = false;             // else inherited
    bool merge_stderr = false;               // stderr into the stdout pipe
    bool stdin_null = true;                  // else inherited
    std::vector<int> keep_fds;               // fds to leave open (no CLOEXEC) in the child
    bool new_process_group = true;           // so a kill reaches grandchildren
    bool die_with_parent = true;             // PR_SET_PDEATHSIG(SIGKILL)
};

// A running child.  Destruction kills (SIGKILL to its process group) and reaps
// it if it is still running: no code path leaves a child behind.
class Child {
public:
    Child() = default;
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;
    Child(Child &&o) noexcept;
    Child &operator=(Child &&o) noexcept;
    ~Child();

    // Throws Error(environment) if the program cannot be started (naming it).
    static Child spawn(const std::vector<std::string> &argv, const SpawnOptions &opt = {});

    pid_t pid() const { return pid_; }
    int stdout_fd() const { return out_.get(); }
    int stderr_fd() const { return err_.get(); }
    bool running() const { return pid_ > 0 && !status_; }

    // Non-blocking: has it exited?  Fills the status when it has.
    bool poll();
    // Block until exit; returns the wait status.
    int wait();
    // Wait at most `seconds`; nullopt on timeout (child left running).
    std::optional<int> wait_for(double seconds);
    // Signal the process group (or the pid when no group).
    void signal(int sig);
    // SIGTERM, wait up to grace seconds, then SIGKILL; reaps.
    void terminate(double grace_seconds = 2.0);
    std::optional<int> status() const { return status_; }

private:
    pid_t pid_ = -1;
    bool group_ = false;
    unique_fd out_, err_;
    std::optional<int> status_;
};

// Decode a wait status: exit code, or 128+signal (shell style).
int exit_status_code(int wait_status);
std::string describe_wait_status(int wait_status);

struct RunResult {
    int status = -1;          // exit_status_code(); -1 when timed out
    bool timed_out = false;
    std::string out;          // captured stdout (stderr too when merged)
    std::string err;          // captured stderr
    double seconds = 0;
};

// Run to completion, capturing output; kills the group on timeout (<= 0: none).
RunResult run_capture(const std::vector<std::string> &argv, double timeout_seconds = 0,
                      const SpawnOptions &opt = {});

// Shell-quote one word for display in --verbose command lines.
std::string shell_quote(const std::string &s);
std::string shell_join(const std::vector<std::string> &argv);

} // namespace ktstr
