// libktstr/guest: the guest agent, packed into the initramfs as /init and run as PID 1
// (vmm spec section 13).  Linked statically with util, wire and scenario only.
//
// The job comes from the initramfs suffix: /args holds the job kind on its first line and
// its arguments on the following lines; kinds read further files (exec: /exec_cmd).  A job
// kind is one row of job_kinds() (guest/jobs.cpp): adding one means adding a row.
//
// Everything the guest tells the host goes through HostChannel: ring messages when the
// shared region could be mapped, COM2 frames and sentinel lines otherwise.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ktstr/json.h"
#include "ktstr/util.h"
#include "ktstr/wire.h"

namespace ktstr::guest {

// The guest's end of both channels.
class HostChannel {
public:
    HostChannel() = default;
    HostChannel(const HostChannel &) = delete;
    HostChannel &operator=(const HostChannel &) = delete;

    // Attach to COM2 (a tty is switched to raw mode so frames pass unchanged) and, when the
    // command line names a shared region and `use_ring`, map it through /dev/mem.
    // Returns a one-line reason when the ring is not used ("" when it is).
    std::string open(const std::string &cmdline, const std::string &com2_path = "/dev/ttyS1",
                     bool use_ring = true);
    // For tests and other transports: write COM2 bytes to `fd` (not owned), use `ring`.
    void attach(int com2_fd, wire::RingWriter *ring);

    bool has_ring() const { return ring_ != nullptr; }
    wire::RingWriter *ring() { return ring_; }
    int com2_fd() const { return com2_fd_; }

    // One sentinel or diagnostic line on COM2 (a '\n' is added).
    void line(std::string_view text);
    // A message: into the ring when there is one, else as a COM2 frame.  `stream`: job
    // output that should wait for the host to make room rather than be dropped.
    void send(uint32_t type, std::string_view payload, bool stream = false);
    // A guest event for the host's ktstr.vmm/1 stream (EVNT message).
    void event(const ojson &ev);
    // The job's exit code: EXIT in the ring and KTSTR_EXIT=<n> on COM2 (spec step 17).
    void report_exit(int code);
    // Wait until COM2 has transmitted everything written so far.
    void drain();
    // Crash path: never blocks on the ring lock.
    void crash(std::string_view text);

    uint64_t stream_drops() const { return stream_drops_; }
    // COM2 has become a person's terminal (the shell job): from now on line() writes
    // nothing there when the ring carries the messages, so no sentinel such as
    // KTSTR_EXIT=<n> lands on the user's screen.  Without a ring lines still go out.
    void com2_is_terminal() { com2_terminal_ = true; }

private:
    unique_fd own_com2_, mem_fd_;
    Mapping shm_;
    std::unique_ptr<wire::RingWriter> own_ring_;
    wire::RingWriter *ring_ = nullptr;
    int com2_fd_ = -1;
    bool com2_terminal_ = false;
    bool host_draining_ = true;     // false after one stream write timed out
    uint64_t stream_drops_ = 0;
};

// What a job gets.
struct JobContext {
    std::vector<std::string> args;             // /args lines after the kind
    std::string root = "/";                    // where the job files live (tests use a dir)
    HostChannel *host = nullptr;
    std::function<void(const ojson &)> emit;   // guest events -> EVNT -> ktstr.vmm/1 lines
    std::string shell = "/bin/busybox";        // busybox providing `sh`
    // Read a job file from the initramfs (e.g. "exec_cmd"); nullopt when absent.
    std::optional<std::string> file(const std::string &name) const;
};

using JobFn = std::function<int(JobContext &)>;
struct JobKind {
    std::string name;
    std::string summary;
    JobFn run;
    bool report_init = true;    // print KTSTR_INIT_STARTED (not in shell mode)
};
// The table of job kinds: exec, shell, (scenario: added by the scenario runner).
const std::vector<JobKind> &job_kinds();
const JobKind *find_job_kind(const std::string &name);

// Parse /args: first line the kind, the rest its arguments; blank trailing lines dropped.
std::vector<std::string> parse_args_file(std::string_view text);

// Run `argv` with stdout/stderr piped to the host as OUTP/ERRP messages; returns the exit
// status (128+signal when killed).  Returns once the child has exited and its pipes are
// drained, even if a background grandchild keeps them open.
int run_streamed(const std::vector<std::string> &argv, HostChannel &host,
                 const std::vector<std::string> &env_add = {});

// Exit status of a wait status, shell style.
int status_code(int wait_status);

// The whole PID-1 program (tools/ktstr-guest.cpp calls this).
int agent_main(int argc, char **argv);

} // namespace ktstr::guest
