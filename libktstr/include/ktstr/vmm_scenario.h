// libktstr/vmm: ktstr-vmm's scenario mode (--scenario) — what the host does around the
// guest's "scenario" job: validate the scenarios against the VM's topology before boot,
// pack them (and the scheduler under test with its library closure) into the agent's
// boot image, follow the guest's scenario events, and turn the run into an exit status.
#pragma once

#include <string>
#include <vector>

#include "ktstr/initramfs.h"
#include "ktstr/scenario_job.h"
#include "ktstr/topology.h"
#include "ktstr/vmm.h"

namespace ktstr::vmm {

struct ScenarioRequest {
    std::vector<scenario::Scenario> scenarios;   // run in this order in one boot
    scenario::ScenarioJobOptions options;        // duration, workers, checks, sched args ...
    std::string scheduler;                       // host path of the scheduler; "" = EEVDF
};

// What needs no topology: at least one scenario, the job options, an executable
// scheduler.  Error(usage/input) naming the option.
void validate_scenario_request(const ScenarioRequest &req);

// validate_scenario_request(), then the input errors a scenario would hit in the guest (cpusets outside the topology, worker
// counts a paired type cannot split, ...), raised before boot: Error(input) naming the
// scenario, field and value.  Skips are left to the guest, which reports them.
void preflight_scenarios(const ScenarioRequest &req, const Topology &topology);

// The guest path of the scheduler binary: /ktstr-sched/<basename>.
std::string guest_scheduler_path(const std::string &host_path);

// The agent's job (kind "scenario", its arguments, scenario.json ...) and the files to
// include (the scheduler: an ELF brings its interpreter and libraries).
initramfs::JobSpec scenario_job_spec(const ScenarioRequest &req);
std::vector<initramfs::Include> scenario_includes(const ScenarioRequest &req);

// Default --timeout for a scenario run: boot and teardown allowance (60 s) plus, per
// scenario, its duration, settle, 30 s for setup and collection and, with a scheduler,
// its enable timeout.
double scenario_default_timeout_s(const ScenarioRequest &req);

// Follows the guest's events and decides the run's exit status:
//   0 every scenario passed or was skipped,
//   1 a check failed (scheduler death and a scheduler that never attached included),
//   2 the guest found a scenario invalid for its CPUs,
//   3 infrastructure: no exit code from the guest (crash, timeout, hang), the job failed
//     to run a scenario, or a scenario's end never reached the host.
class ScenarioTally {
public:
    explicit ScenarioTally(size_t expected) : expected_(expected) {}
    void on_event(const ojson &ev);
    int exit_code(const ExitResult &r) const;
    // For the exit event: [{scenario, passed, skipped}] and what is missing.
    ojson summary() const;
    // Why exit_code() chose 3 ("" otherwise).
    std::string problem(const ExitResult &r) const;

private:
    size_t expected_;
    size_t started_ = 0;
    std::vector<ojson> ends_;
};

} // namespace ktstr::vmm
