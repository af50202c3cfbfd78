// libktstr/scenario: the step engine (spec 1.3, 1.4, 4.1, 5).
//
// Resolve the plan (nothing is created for a scenario that would skip or is
// invalid), create cgroups, fork and place workers, apply step ops, hold
// while probing the scheduler, collect every group's reports, evaluate the
// checks and report each stage through the emit callback.
#include "ktstr/scenario_run.h"

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <random>
#include <sched.h>
#include <time.h>
#include <unistd.h>

namespace ktstr::scenario {

namespace {

uint64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// SIGCHLD must not be ignored while we reap workers for their exit status
// (the guest's PID 1 ignores it); restored on every exit path.
class SigchldDefault {
public:
    SigchldDefault() {
        struct sigaction sa{};
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGCHLD, &sa, &old_);
    }
    ~SigchldDefault() { sigaction(SIGCHLD, &old_, nullptr); }

private:
    struct sigaction old_{};
};

// Scenario sysctls, restored afterwards.
class Sysctls {
public:
    Sysctls(const std::map<std::string, std::string> &values, const std::string &proc_sys) {
        for (auto &[k, v] : values) {
            std::string rel = k;
            for (auto &c : rel)
                if (c == '.') c = '/';
            std::string path = proc_sys + "/" + rel;
            auto old = try_read_file(path);
            if (!old) fail(ErrorKind::environment, "sysctl ", k, ": cannot read ", path);
            unique_fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd || ::write(fd.get(), v.data(), v.size()) < 0)
                fail(ErrorKind::environment, "sysctl ", k, "=", v, ": write ", path, ": ", strerror(errno));
            saved_.push_back({path, std::string(trim(*old))});
            log::info("sysctl ", k, " = ", v, " (was ", trim(*old), ")");
        }
    }
    ~Sysctls() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
            unique_fd fd(open(it->first.c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd || ::write(fd.get(), it->second.data(), it->second.size()) < 0)
                log::warn("cannot restore ", it->first, " to ", it->second);
        }
    }

private:
    std::vector<std::pair<std::string, std::string>> saved_;
};

struct Group {
    std::string cgroup;            // "" = the harness's own cgroup (spawn_host)
    bool backdrop = false;
    CheckConfig checks;
    std::unique_ptr<WorkerGroup> workers;
};

struct CgroupState {
    std::optional<CpuSet> cpuset;
    bool backdrop = false;
};

class Engine {
public:
    Engine(const Plan &plan, const CpuLayout &layout, const RunOptions &opt, const EmitFn &emit)
        : plan_(plan), layout_(layout), opt_(opt), emit_(emit) {}

    RunOutcome run();

private:
    double elapsed_s() const { return static_cast<double>(mono_ns() - t0_) / 1e9; }

    void emit(ojson e) { if (emit_) emit_(e); }

    void create_cgroup(const ResolvedCgroup &c, bool backdrop) {
        cgroups_->create(c.name);
        CgroupState st;
        st.backdrop = backdrop;
        if (c.cpuset) {
            cgroups_->set_cpus(c.name, *c.cpuset);
            st.cpuset = c.cpuset;
        }
        state_[c.name] = st;
    }

    // Fork, place and (unless deferred) start one group.
    Group &spawn(const std::string &cgroup, const Work &work, uint32_t count, bool backdrop, bool start) {
        WorkerGroup::Options o;
        o.work = work;
        o.count = count;
        o.scenario_start_ns = t0_;
        std::optional<CpuSet> cpuset;
        if (!cgroup.empty() && state_.count(cgroup)) cpuset = state_[cgroup].cpuset;
        for (uint32_t i = 0; i < count; ++i) o.affinity.push_back(resolve_affinity(work.affinity, cpuset, layout_, rng_()));
        Group g;
        g.cgroup = cgroup;
        g.backdrop = backdrop;
        g.checks = plan_.checks.merged(work.checks).merged(opt_.check_overrides);
        g.workers = WorkerGroup::spawn(o);
        groups_.push_back(std::move(g));
        Group &ref = groups_.back();
        if (!cgroup.empty())
            for (pid_t p : ref.workers->pids()) cgroups_->move(p, cgroup);
        if (start) ref.workers->start();
        return ref;
    }

    void spawn_cgroup(const ResolvedCgroup &c, bool backdrop, bool start) {
        for (auto &w : c.works) spawn(c.name, w.work, w.workers, backdrop, start);
    }

    std::vector<Group *> groups_in(const std::string &cgroup) {
        std::vector<Group *> v;
        for (auto &g : groups_)
            if (g.workers && g.cgroup == cgroup) v.push_back(&g);
        return v;
    }

    void discard(const std::string &cgroup) {
        for (Group *g : groups_in(cgroup)) {
            g->workers->kill_all();
            g->workers.reset();
        }
    }

    void apply(const ResolvedOp &r) {
        const Op &o = r.op;
        switch (o.kind) {
        case OpKind::add_cgroup:
            cgroups_->create(o.name);
            state_[o.name] = CgroupState{};
            break;
        case OpKind::remove_cgroup:
            discard(o.cgroup);   // results of a removed cgroup are discarded (spec 1.3)
            cgroups_->remove(o.cgroup);
            state_.erase(o.cgroup);
            break;
        case OpKind::stop_cgroup:
            discard(o.cgroup);
            break;
        case OpKind::set_cpuset:
            cgroups_->set_cpus(o.cgroup, *r.cpus);
            state_[o.cgroup].cpuset = r.cpus;
            for (Group *g : groups_in(o.cgroup)) g->workers->bump_cpuset_epoch();
            break;
        case OpKind::clear_cpuset:
            cgroups_->clear_cpus(o.cgroup);
            state_[o.cgroup].cpuset.reset();
            for (Group *g : groups_in(o.cgroup)) g->workers->bump_cpuset_epoch();
            break;
        case OpKind::swap_cpusets: {
            std::string a = cgroups_->read_cpus(o.a), b = cgroups_->read_cpus(o.b);
            // An empty side is not copied.
            if (!b.empty()) cgroups_->set_cpus(o.a, parse_cpuset(b));
            if (!a.empty()) cgroups_->set_cpus(o.b, parse_cpuset(a));
            std::swap(state_[o.a].cpuset, state_[o.b].cpuset);
            for (auto *n : {&o.a, &o.b})
                for (Group *g : groups_in(*n)) g->workers->bump_cpuset_epoch();
            break;
        }
        case OpKind::spawn:
            spawn(o.cgroup, *o.work, r.workers, state_[o.cgroup].backdrop, true);
            break;
        case OpKind::spawn_host:
            spawn("", *o.work, r.workers, false, true);
            break;
        case OpKind::set_affinity:
            for (Group *g : groups_in(o.cgroup))
                for (pid_t p : g->workers->pids()) {
                    CpuSet set = resolve_affinity(*o.affinity, state_[o.cgroup].cpuset, layout_, rng_());
                    if (set.empty()) continue;   // degenerate: no-op
                    cpu_set_t cs;
                    CPU_ZERO(&cs);
                    for (uint32_t c : set)
                        if (c < CPU_SETSIZE) CPU_SET(c, &cs);
                    sched_setaffinity(p, sizeof cs, &cs);   // errors ignored (spec 1.3)
                }
            break;
        case OpKind::move_all_tasks:
            cgroups_->clear_subtree_control(o.to);
            for (Group *g : groups_in(o.from)) {
                for (pid_t p : g->workers->pids()) cgroups_->move(p, o.to);
                g->cgroup = o.to;
                g->backdrop = state_[o.to].backdrop;
                g->workers->bump_cpuset_epoch();
            }
            break;
        case OpKind::sleep:
            hold_ms(o.ms);
            break;
        case OpKind::kill_scheduler:
            if (!opt_.scheduler) {
                log::warn("op kill_scheduler: no scheduler under test (EEVDF); nothing to kill");
            } else {
                log::info("op kill_scheduler: signal ", o.signal, " to pid ", opt_.scheduler->pid());
                opt_.scheduler->signal(o.signal);
            }
            break;
        }
    }

    // Sleep, probing the scheduler every 100 ms; false when it died.
    bool hold_ms(uint64_t ms) {
        const uint64_t until = mono_ns() + ms * 1000000;
        while (true) {
            if (!scheduler_alive()) return false;
            uint64_t now = mono_ns();
            if (now >= until) return true;
            uint64_t chunk = std::min<uint64_t>(until - now, 100000000);
            timespec ts{static_cast<time_t>(chunk / 1000000000), static_cast<long>(chunk % 1000000000)};
            nanosleep(&ts, nullptr);
        }
    }

    bool scheduler_alive() {
        if (!opt_.scheduler || fate_.died) return !fate_.died;
        if (opt_.scheduler->alive()) return true;
        fate_.died = true;
        fate_.died_at_s = elapsed_s();
        return false;
    }

    void emit_step(size_t index) {
        ojson e;
        e["event"] = "step";
        e["scenario"] = plan_.scenario.name;
        e["step_index"] = index;
        e["elapsed_ms"] = static_cast<uint64_t>(elapsed_s() * 1000);
        const auto &st = plan_.steps[index];
        uint32_t kinds = 0;
        for (auto &o : st.ops) kinds |= 1u << op_kind_bit(o.op.kind);
        e["op_count"] = st.ops.size();
        e["op_kinds"] = kinds;
        e["hold_ms"] = st.hold_ms;
        size_t workers = 0;
        uint64_t iterations = 0;
        for (auto &g : groups_)
            if (g.workers) workers += g.workers->pids().size(), iterations += g.workers->total_iterations();
        e["cgroup_count"] = state_.size();
        ojson cpusets = ojson::object();   // null: no cpuset (all CPUs)
        for (auto &[name, st] : state_)
            cpusets[name] = st.cpuset ? ojson(std::vector<uint32_t>(st.cpuset->begin(), st.cpuset->end())) : ojson(nullptr);
        e["cpusets"] = cpusets;
        e["worker_count"] = workers;
        e["total_iterations"] = iterations;
        emit(e);
    }

    void collect_all() {
        // Reverse creation order: a late hog goes before the workers it starved.
        std::vector<Group *> live;
        for (auto it = groups_.rbegin(); it != groups_.rend(); ++it)
            if (it->workers) live.push_back(&*it);
        // Stop every group at once, then read them all within one deadline.
        for (Group *g : live) g->workers->request_stop();
        const uint64_t deadline = mono_ns() + static_cast<uint64_t>(opt_.collect_deadline_s * 1e9);
        for (Group *g : live) {
            GroupResult r;
            r.cgroup = g->cgroup;
            r.work = g->workers->work().type.describe();
            r.checks = g->checks;
            if (!g->cgroup.empty() && state_.count(g->cgroup)) r.cpuset = state_[g->cgroup].cpuset;
            uint64_t now = mono_ns();
            r.reports = g->workers->collect(now < deadline ? static_cast<double>(deadline - now) / 1e9 : 0.0);
            g->workers.reset();
            results_.push_back(std::move(r));
        }
        std::reverse(results_.begin(), results_.end());
    }

    const Plan &plan_;
    const CpuLayout &layout_;
    const RunOptions &opt_;
    const EmitFn &emit_;
    uint64_t t0_ = 0;
    std::mt19937_64 rng_{static_cast<uint64_t>(getpid()) ^ mono_ns()};
    std::unique_ptr<Cgroups> cgroups_;
    std::map<std::string, CgroupState> state_;
    std::list<Group> groups_;
    std::vector<GroupResult> results_;
    SchedulerFate fate_;
};

RunOutcome Engine::run() {
    const Scenario &s = plan_.scenario;
    RunOutcome out;
    t0_ = mono_ns();
    fate_.present = opt_.scheduler != nullptr;
    fate_.steps_total = static_cast<int>(plan_.steps.size());
    SigchldDefault sigchld;
    std::optional<Sysctls> sysctls;
    std::vector<std::pair<DetailKind, std::string>> errors;
    int steps_done = 0;
    try {
        sysctls.emplace(s.sysctls, opt_.proc_sys);
        cgroups_ = std::make_unique<Cgroups>(opt_.cgroup_root, opt_.cgroup_parent);
        try {
            for (auto &c : plan_.backdrop) create_cgroup(c, true);
            for (auto &c : plan_.backdrop) spawn_cgroup(c, true, false);
            for (auto &o : plan_.backdrop_ops) apply(o);
            if (!plan_.backdrop.empty() || !plan_.backdrop_ops.empty()) {
                hold_ms(opt_.ctx.settle_ms);
                for (auto &g : groups_) if (g.workers) g.workers->start();
            }
        } catch (const Error &e) {
            throw Error(e.kind(), cat("Backdrop setup failed: ", e.what()));
        }
        for (size_t i = 0; i < plan_.steps.size(); ++i) {
            const ResolvedStep &st = plan_.steps[i];
            if (i > 0 && !scheduler_alive()) {
                fate_.steps_completed = static_cast<int>(i);
                break;
            }
            try {
                for (auto &o : st.ops) apply(o);
                for (auto &c : st.setup) create_cgroup(c, false);
                if (plan_.steady) {
                    // Create all, settle, then place every group and start them together.
                    hold_ms(opt_.ctx.settle_ms);
                    if (!scheduler_alive())
                        throw Error(ErrorKind::guest, cat("scheduler process died after cgroup creation (pid=",
                                                          opt_.scheduler->pid(), ")"));
                    for (auto &c : st.setup) spawn_cgroup(c, false, false);
                    for (auto &g : groups_) if (g.workers) g.workers->start();
                } else {
                    for (auto &c : st.setup) spawn_cgroup(c, false, true);
                }
            } catch (const Error &e) {
                errors.push_back({DetailKind::Other, cat("step ", i, " failed: ", e.what())});
                break;
            }
            emit_step(i);
            bool ok;
            if (st.hold.loop) {
                const uint64_t end = t0_ + static_cast<uint64_t>(opt_.ctx.duration_s * 1e9);
                ok = true;
                while (ok && mono_ns() < end) {
                    try {
                        for (auto &o : st.ops) apply(o);
                    } catch (const Error &e) {
                        errors.push_back({DetailKind::Other, cat("step ", i, " failed: ", e.what())});
                        break;
                    }
                    ok = hold_ms(std::min<uint64_t>(st.hold.loop_ms, (end - std::min(end, mono_ns())) / 1000000 + 1));
                }
            } else {
                ok = hold_ms(st.hold_ms);
            }
            if (!ok) break;   // scheduler died during this step's workload
            steps_done = static_cast<int>(i) + 1;
        }
        if (!fate_.died && opt_.scheduler && !scheduler_alive()) {
            fate_.after_all_steps = true;
            fate_.steps_completed = steps_done;
        }
    } catch (const Error &e) {
        errors.push_back({DetailKind::Other, e.what()});
    }
    // Live groups are collected whatever happened.
    collect_all();
    try {
        cgroups_.reset();
    } catch (const Error &e) {
        log::warn(e.what());
    }

    // ---- verdicts ----
    Verdict &v = out.verdict;
    std::vector<GroupStats> stats;
    for (auto &r : results_) {
        stats.push_back(group_stats(r));
        for (size_t i = 0; i < r.reports.size(); ++i) {
            const WorkerReport &w = r.reports[i];
            ojson e;
            e["event"] = "worker_report";
            e["scenario"] = s.name;
            e["cgroup"] = r.cgroup;
            e["work"] = r.work;
            e["index"] = i;
            ojson body = w.to_json();
            // The raw reservoir (up to 100 000 samples) stays in the guest;
            // the event carries its summary.
            body.erase("resume_latencies_ns");
            body["wake_samples_kept"] = w.resume_latencies_ns.size();
            body["wake_latency_p50_ns"] = percentile(w.resume_latencies_ns, 0.5);
            body["wake_latency_p99_ns"] = percentile(w.resume_latencies_ns, 0.99);
            if (body["migrations"].size() > 32) {
                body["migrations_truncated"] = true;
                body["migrations"].erase(body["migrations"].begin() + 32, body["migrations"].end());
            }
            for (auto &[k, val] : body.items()) e[k] = val;
            emit(e);
        }
        for (auto &c : evaluate_group(r)) {
            v.add(c);
            ojson e = c.to_json();
            e["event"] = "check";
            e["scenario"] = s.name;
            e["cgroup"] = r.cgroup;
            emit(e);
        }
    }
    if (fate_.present) {
        if (fate_.died) fate_.how = opt_.scheduler->describe_end();
        CheckOutcome c = evaluate_scheduler(fate_);
        v.add(c);
        ojson e = c.to_json();
        e["event"] = "check";
        e["scenario"] = s.name;
        emit(e);
    }
    for (auto &err : errors) {
        v.passed = false;
        v.details.push_back(err);
        ojson e;
        e["event"] = "check";
        e["scenario"] = s.name;
        e["check"] = "run";
        e["group"] = "";
        e["passed"] = false;
        e["message"] = err.second;
        emit(e);
    }
    v.stats = rollup_stats(stats);
    out.exit_code = v.passed ? 0 : 1;
    return out;
}

} // namespace

RunOutcome run_scenario(const Scenario &s, const CpuLayout &layout, const RunOptions &opt, const EmitFn &emit) {
    if (opt.cgroup_root.empty() || opt.proc_sys.empty())
        fail(ErrorKind::usage, "run_scenario: RunOptions.cgroup_root and .proc_sys must be set (the guest job sets "
                               "/sys/fs/cgroup and /proc/sys; tests use scratch directories)");
    Plan plan = make_plan(s, layout, opt.ctx);
    plan.checks = plan.checks.merged(opt.check_overrides);
    const auto t_start = Clock::now();
    ojson start;
    start["event"] = "scenario_start";
    start["scenario"] = s.name;
    start["category"] = s.category;
    start["description"] = s.description;
    start["topology"] = layout.to_json();
    start["duration_s"] = opt.ctx.duration_s;
    start["workers_per_cgroup"] = opt.ctx.workers_per_cgroup;
    start["settle_ms"] = opt.ctx.settle_ms;
    if (opt.scheduler) {
        // "name" (the binary's, e.g. scx_simple) is what reports show; "ops"
        // is what sched_ext calls it (simple).
        const std::string &path = opt.scheduler->path();
        start["scheduler"] = {{"name", path.substr(path.rfind('/') + 1)}, {"path", path}, {"args", opt.scheduler->args()},
                              {"pid", opt.scheduler->pid()}, {"ops", opt.scheduler->ops_name()},
                              {"enable_s", opt.scheduler->enable_seconds()}};
    } else {
        start["scheduler"] = "eevdf";
    }
    start["checks"] = plan.checks.to_json();
    start["definition"] = s.to_json();
    if (emit) emit(start);

    RunOutcome out;
    if (!plan.skip_reason.empty()) {
        log::write(log::Level::warning, cat("SKIP: ", s.name, ": ", plan.skip_reason));
        out.verdict.skipped = true;
        out.verdict.details.push_back({DetailKind::Skip, plan.skip_reason});
    } else {
        Engine engine(plan, layout, opt, emit);
        out = engine.run();
    }
    ojson end = out.verdict.to_json();
    end["event"] = "scenario_end";
    end["scenario"] = s.name;
    if (out.verdict.skipped) end["skip_reason"] = plan.skip_reason;
    end["run_s"] = seconds_since(t_start);
    if (opt.scheduler) end["scheduler"] = opt.scheduler->end_record();
    end["exit_code"] = out.exit_code;
    // Reorder so "event" comes first for readers of raw lines.
    ojson ordered;
    ordered["event"] = "scenario_end";
    for (auto &[k, v] : end.items())
        if (k != "event") ordered[k] = v;
    if (emit) emit(ordered);
    return out;
}

} // namespace ktstr::scenario
