// libktstr/scenario: work types and the worker processes that run them
// (spec 3 and 4).  Each worker measures itself: CPU time, iterations, wake
// latency samples, the longest gap between checkpoints and the CPUs it ran on.
//
// Checkpoint quirk kept from upstream (spec 3.1): types that block and
// "reset" (IoSync, PipeIo, FutexPingPong) restart the checkpoint clock right
// after the blocking call, so their gaps measure only the running part,
// while Bursty's gaps include its sleep.  Ours: a last checkpoint runs when
// the loop ends, so a worker starved until the stop still reports its gap.
#include "ktstr/scenario_run.h"
#include "ktstr/process.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <random>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace ktstr::scenario {

namespace {

constexpr size_t RESERVOIR_CAP = 100000;
constexpr size_t MIGRATIONS_CAP = 4096;

uint64_t now_ns(clockid_t clk = CLOCK_MONOTONIC) {
    timespec ts;
    clock_gettime(clk, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    asm volatile("" ::: "memory");
#endif
}

// Shared with the parent: one cache line per worker.
struct alignas(64) WorkerSlot {
    std::atomic<uint64_t> iterations{0};
    std::atomic<uint64_t> cpuset_epoch{0};
};
// Per pair of a paired type (FutexPingPong).
struct alignas(64) PairSlot {
    std::atomic<uint32_t> turn{0};
    std::atomic<uint64_t> stamp_ns{0};
};

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct ScheduleStat {
    uint64_t cpu = 0, delay = 0, count = 0;
    bool ok = false;
};
ScheduleStat read_schedstat() {
    ScheduleStat s;
    auto text = try_read_file("/proc/self/schedstat");
    if (!text) return s;
    auto words = split(trim(*text), ' ', false);
    if (words.size() < 3) return s;
    auto a = parse_u64(words[0]), b = parse_u64(words[1]), c = parse_u64(words[2]);
    if (!a || !b || !c) return s;
    return {*a, *b, *c, true};
}

// Everything a worker measures about itself.
class Meter {
public:
    Meter(WorkerSlot *slot, uint64_t scenario_start_ns, const std::atomic<bool> *stop)
        : slot_(slot), scenario_start_(scenario_start_ns), ext_stop_(stop), rng_(static_cast<uint64_t>(getpid()) * 7919 + now_ns()) {
        start_ = last_ = now_ns();
        cpu0_ = now_ns(CLOCK_THREAD_CPUTIME_ID);
        sched0_ = read_schedstat();
        int cpu = sched_getcpu();
        cur_cpu_ = cpu < 0 ? 0 : static_cast<uint32_t>(cpu);
        r_.cpus_used.insert(cur_cpu_);
        epoch_ = slot_ ? slot_->cpuset_epoch.load(std::memory_order_relaxed) : 0;
        r_.cpus_since_cpuset.insert(cur_cpu_);
        r_.tid = getpid();
    }

    bool stopping() const { return g_stop || (ext_stop_ && ext_stop_->load(std::memory_order_relaxed)); }
    uint64_t &units() { return r_.work_units; }

    // After each outer iteration.
    void iteration_done() {
        ++r_.iterations;
        if (slot_) slot_->iterations.store(r_.iterations, std::memory_order_relaxed);
        if (r_.work_units % 1024 == 0) checkpoint();
    }

    void checkpoint() {
        uint64_t now = now_ns();
        uint64_t gap = now - last_;
        if (gap > max_gap_ns_) {
            max_gap_ns_ = gap;
            r_.max_gap_ms = gap / 1000000;
            r_.max_gap_cpu = cur_cpu_;
            r_.max_gap_at_ms = last_ > scenario_start_ ? (last_ - scenario_start_) / 1000000 : 0;
        }
        last_ = now;
        int c = sched_getcpu();
        uint32_t cpu = c < 0 ? cur_cpu_ : static_cast<uint32_t>(c);
        if (cpu != cur_cpu_) {
            ++r_.migration_count;
            if (r_.migrations.size() < MIGRATIONS_CAP) r_.migrations.push_back({now - start_, cur_cpu_, cpu});
            cur_cpu_ = cpu;
            r_.cpus_used.insert(cpu);
        }
        if (slot_) {
            uint64_t e = slot_->cpuset_epoch.load(std::memory_order_relaxed);
            if (e != epoch_) {
                epoch_ = e;
                r_.cpus_since_cpuset.clear();
            }
        }
        r_.cpus_since_cpuset.insert(cpu);
    }

    void reset_clock() { last_ = now_ns(); }

    // Reservoir sampling: keep <= cap, replace a random slot w.p. cap/seen.
    void sample(uint64_t latency_ns) {
        ++r_.wake_sample_total;
        if (r_.resume_latencies_ns.size() < RESERVOIR_CAP) {
            r_.resume_latencies_ns.push_back(latency_ns);
            return;
        }
        std::uniform_int_distribution<uint64_t> pick(0, r_.wake_sample_total - 1);
        uint64_t k = pick(rng_);
        if (k < RESERVOIR_CAP) r_.resume_latencies_ns[k] = latency_ns;
    }

    WorkerReport finish(bool completed) {
        checkpoint();
        uint64_t end = now_ns();
        r_.wall_time_ns = end - start_;
        r_.cpu_time_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0_;
        r_.off_cpu_ns = r_.wall_time_ns > r_.cpu_time_ns ? r_.wall_time_ns - r_.cpu_time_ns : 0;
        ScheduleStat s = read_schedstat();
        if (s.ok && sched0_.ok) {
            r_.schedstat_cpu_time_ns = s.cpu - sched0_.cpu;
            r_.schedstat_run_delay_ns = s.delay - sched0_.delay;
            r_.schedstat_run_count = s.count - sched0_.count;
        }
        r_.cpuset_epoch_current = !slot_ || slot_->cpuset_epoch.load(std::memory_order_relaxed) == epoch_;
        if (slot_) slot_->iterations.store(r_.iterations, std::memory_order_relaxed);
        r_.completed = completed;
        return r_;
    }

private:
    WorkerSlot *slot_;
    uint64_t scenario_start_;
    const std::atomic<bool> *ext_stop_;
    std::mt19937_64 rng_;
    uint64_t start_ = 0, last_ = 0, cpu0_ = 0, max_gap_ns_ = 0, epoch_ = 0;
    uint32_t cur_cpu_ = 0;
    ScheduleStat sched0_;
    WorkerReport r_;
};

void spin(Meter &m, uint64_t n) {
    uint64_t &u = m.units();
    for (uint64_t i = 0; i < n; ++i) {
        ++u;
        cpu_relax();
    }
}

// Sleep `ns`, waking every <= 100 ms to honour the stop flag; returns the
// oversleep (resume latency) or nullopt when stopped early.
std::optional<uint64_t> sleep_for(Meter &m, uint64_t ns) {
    uint64_t t0 = now_ns(), until = t0 + ns;
    while (true) {
        uint64_t now = now_ns();
        if (now >= until) return now - until;
        if (m.stopping()) return std::nullopt;
        uint64_t chunk = std::min<uint64_t>(until - now, 100000000);
        timespec ts{static_cast<time_t>(chunk / 1000000000), static_cast<long>(chunk % 1000000000)};
        nanosleep(&ts, nullptr);
    }
}

long futex(std::atomic<uint32_t> *addr, int op, uint32_t val, const timespec *ts) {
    return syscall(SYS_futex, reinterpret_cast<uint32_t *>(addr), op, val, ts, nullptr, 0);
}

struct Peer {
    int read_fd = -1, write_fd = -1;   // PipeIo
    PairSlot *pair = nullptr;          // FutexPingPong
    uint32_t token = 0;                // 0 first, 1 second of the pair
};

WorkerReport run_loop(const WorkType &t, WorkerSlot *slot, uint64_t scenario_start_ns, const Peer &peer,
                      const std::atomic<bool> *stop, double max_s) {
    Meter m(slot, scenario_start_ns, stop);
    const uint64_t deadline = max_s > 0 ? now_ns() + static_cast<uint64_t>(max_s * 1e9) : UINT64_MAX;
    auto done = [&] { return m.stopping() || now_ns() >= deadline; };
    std::vector<uint8_t> buffer;
    unique_fd io_fd;
    std::string io_path;
    if (t.kind == WorkKind::CachePressure && t.size_kb && t.stride) buffer.assign(t.size_kb * 1024, 0);
    if (t.kind == WorkKind::IoSync) {
        io_path = cat("/tmp/ktstr-iosync-", getpid());
        io_fd.reset(open(io_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!io_fd) log::warn("IoSync worker ", getpid(), ": cannot open ", io_path, ": ", strerror(errno));
    }
    static const char page[4096] = {};
    size_t pos = 0;
    bool completed = true;
    while (!done()) {
        switch (t.kind) {
        case WorkKind::CpuSpin:
            spin(m, 1024);
            break;
        case WorkKind::YieldHeavy:
            ++m.units();
            sched_yield();
            break;
        case WorkKind::Mixed:
            spin(m, 1024);
            sched_yield();
            break;
        case WorkKind::IoSync: {
            if (io_fd) {
                if (ftruncate(io_fd.get(), 0) != 0 || lseek(io_fd.get(), 0, SEEK_SET) < 0) {}
                for (int i = 0; i < 16; ++i) {
                    if (::write(io_fd.get(), page, sizeof page) < 0) break;
                    ++m.units();
                }
            } else {
                m.units() += 16;
            }
            if (auto late = sleep_for(m, 100000)) m.sample(*late);
            m.reset_clock();
            break;
        }
        case WorkKind::Bursty: {
            uint64_t until = now_ns() + t.burst_ms * 1000000;
            while (now_ns() < until && !m.stopping()) spin(m, 1024);
            if (t.sleep_ms)
                if (auto late = sleep_for(m, t.sleep_ms * 1000000)) m.sample(*late);
            break;
        }
        case WorkKind::PipeIo: {
            spin(m, t.burst_iters);
            uint64_t stamp = now_ns();
            if (::write(peer.write_fd, &stamp, sizeof stamp) < 0 && errno != EINTR) { completed = false; goto out; }
            // Wait for the partner's message, rechecking the stop flag every 100 ms.
            while (!m.stopping()) {
                pollfd p{peer.read_fd, POLLIN, 0};
                int r = poll(&p, 1, 100);
                if (r > 0) {
                    uint64_t theirs = 0;
                    ssize_t n = ::read(peer.read_fd, &theirs, sizeof theirs);
                    if (n == static_cast<ssize_t>(sizeof theirs)) {
                        uint64_t now = now_ns();
                        m.sample(now > theirs ? now - theirs : 0);
                        break;
                    }
                    if (n == 0) { completed = false; goto out; }   // partner gone
                }
            }
            m.reset_clock();
            break;
        }
        case WorkKind::FutexPingPong: {
            PairSlot *ps = peer.pair;
            // Wait for our token; 100 ms timeouts keep the stop flag honoured.
            while (!m.stopping() && ps->turn.load(std::memory_order_acquire) != peer.token) {
                timespec ts{0, 100000000};
                futex(&ps->turn, FUTEX_WAIT, 1 - peer.token, &ts);
            }
            if (m.stopping()) break;
            uint64_t stamp = ps->stamp_ns.load(std::memory_order_relaxed);
            if (stamp) {
                uint64_t now = now_ns();
                m.sample(now > stamp ? now - stamp : 0);
            }
            m.reset_clock();
            spin(m, t.spin_iters);
            ps->stamp_ns.store(now_ns(), std::memory_order_relaxed);
            ps->turn.store(1 - peer.token, std::memory_order_release);
            futex(&ps->turn, FUTEX_WAKE, 1, nullptr);
            break;
        }
        case WorkKind::CachePressure: {
            if (buffer.empty()) goto out;   // 0 size or stride: nothing to do
            for (int i = 0; i < 1024; ++i) {
                buffer[pos] = static_cast<uint8_t>(buffer[pos] + 1);
                pos = (pos + t.stride) % buffer.size();
                ++m.units();
            }
            break;
        }
        }
        m.iteration_done();
    }
out:
    if (!io_path.empty()) unlink(io_path.c_str());
    return m.finish(completed);
}

// Close every fd >= 3 except those in keep (sorted).
void close_other_fds(std::vector<int> keep) {
    std::sort(keep.begin(), keep.end());
    unsigned from = 3;
    for (int fd : keep) {
        if (fd < 3) continue;
        if (static_cast<unsigned>(fd) > from) syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0);
        from = static_cast<unsigned>(fd) + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

void apply_policy(const SchedPolicy &p) {
    sched_param sp{};
    int policy = SCHED_OTHER;
    switch (p.kind) {
    case SchedPolicy::Kind::normal: return;
    case SchedPolicy::Kind::batch: policy = SCHED_BATCH; break;
    case SchedPolicy::Kind::idle: policy = SCHED_IDLE; break;
    case SchedPolicy::Kind::fifo: policy = SCHED_FIFO; sp.sched_priority = std::clamp(p.priority, 1, 99); break;
    case SchedPolicy::Kind::rr: policy = SCHED_RR; sp.sched_priority = std::clamp(p.priority, 1, 99); break;
    }
    if (sched_setscheduler(0, policy, &sp) != 0)
        log::warn("worker ", getpid(), ": sched_setscheduler(", p.describe(), "): ", strerror(errno), " (ignored)");
}

void apply_affinity(const CpuSet &cpus) {
    if (cpus.empty()) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (uint32_t c : cpus)
        if (c < CPU_SETSIZE) CPU_SET(c, &set);
    sched_setaffinity(0, sizeof set, &set);   // errors ignored (spec 1.5)
}

void apply_mempolicy(const MemPolicy &m, const std::vector<std::string> &flags) {
    // MPOL_* values from <linux/mempolicy.h>, not included to stay libc-only.
    int mode = 0;
    switch (m.kind) {
    case MemPolicy::Kind::default_: return;
    case MemPolicy::Kind::preferred: mode = 1; break;
    case MemPolicy::Kind::bind: mode = 2; break;
    case MemPolicy::Kind::interleave: mode = 3; break;
    case MemPolicy::Kind::local: mode = 4; break;
    case MemPolicy::Kind::preferred_many: mode = 5; break;
    case MemPolicy::Kind::weighted_interleave: mode = 6; break;
    }
    for (auto &f : flags) {
        if (f == "static_nodes") mode |= 1 << 15;
        if (f == "relative_nodes") mode |= 1 << 14;
        if (f == "numa_balancing") mode |= 1 << 13;
    }
    unsigned long mask[16] = {};
    for (uint32_t n : m.nodes)
        if (n < 1024) mask[n / 64] |= 1ul << (n % 64);
    if (syscall(SYS_set_mempolicy, mode, m.nodes.empty() ? nullptr : mask, m.nodes.empty() ? 0 : 1024 + 1) != 0)
        log::warn("worker ", getpid(), ": set_mempolicy: ", strerror(errno), " (ignored)");
}

[[noreturn]] void worker_main(const WorkerGroup::Options &opt, uint32_t index, int start_fd, int report_fd,
                              WorkerSlot *slot, const Peer &peer, std::vector<int> keep) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    keep.push_back(start_fd);
    keep.push_back(report_fd);
    close_other_fds(keep);
    struct sigaction sa{};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Wait for the start byte (after placement in the cgroup).
    pollfd p{start_fd, POLLIN, 0};
    int waited = 0;
    while (true) {
        int r = poll(&p, 1, 100);
        if (r > 0) break;
        if (g_stop) break;   // collected before start: report what we have (nothing)
        waited += 100;
        if (waited >= static_cast<int>(opt.start_timeout_s * 1000)) _exit(1);
    }
    apply_affinity(index < opt.affinity.size() ? opt.affinity[index] : CpuSet{});
    apply_policy(opt.work.policy);
    apply_mempolicy(opt.work.mem_policy, opt.work.mpol_flags);
    WorkerReport r = g_stop ? WorkerReport{} : run_loop(opt.work.type, slot, opt.scenario_start_ns, peer, nullptr, 0);
    r.tid = getpid();
    r.is_messenger = opt.work.type.group_size() > 1 && peer.token == 0;
    std::string text = r.to_json().dump() + "\n";
    try {
        write_all(report_fd, text);
    } catch (...) {
        _exit(2);
    }
    _exit(0);
}

// Spec 4.1 keyword first (exited | signaled), then the details.
std::string describe_exit(int status) {
    return cat(WIFSIGNALED(status) ? "signaled: " : "exited: ", describe_wait_status(status));
}

} // namespace

WorkerReport run_worker_inline(const WorkType &type, double max_s, const std::atomic<bool> *stop) {
    if (type.group_size() > 1) fail(ErrorKind::usage, work_kind_name(type.kind), " needs a partner process; use WorkerGroup");
    return run_loop(type, nullptr, now_ns(), Peer{}, stop, max_s);
}

std::unique_ptr<WorkerGroup> WorkerGroup::spawn(const Options &opt) {
    const uint32_t g = opt.work.type.group_size();
    if (opt.count == 0 || opt.count % g != 0)
        fail(ErrorKind::input, work_kind_name(opt.work.type.kind), " requires num_workers divisible by ", g, ", got ", opt.count);
    std::unique_ptr<WorkerGroup> grp(new WorkerGroup());
    grp->opt_ = opt;
    size_t bytes = sizeof(WorkerSlot) * opt.count + sizeof(PairSlot) * (opt.count / g + 1);
    bytes = (bytes + 4095) / 4096 * 4096;
    void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) fail_errno(ErrorKind::environment, "mmap of the worker slots");
    grp->shared_ = Mapping(mem, bytes);
    auto *slots = new (mem) WorkerSlot[opt.count];
    auto *pairs = new (static_cast<uint8_t *>(mem) + sizeof(WorkerSlot) * opt.count) PairSlot[opt.count / g + 1];

    // PipeIo: two pipes per pair, a->b and b->a.
    std::vector<std::array<unique_fd, 2>> pipes;
    if (opt.work.type.kind == WorkKind::PipeIo)
        for (uint32_t i = 0; i < opt.count; ++i) {
            int fds[2];
            if (pipe2(fds, O_CLOEXEC) != 0) fail_errno(ErrorKind::environment, "pipe for PipeIo");
            pipes.push_back({unique_fd(fds[0]), unique_fd(fds[1])});   // pipe i: written by worker i
        }
    for (uint32_t i = 0; i < opt.count; ++i) {
        int sfd[2], rfd[2];
        // A socket for the start byte: send(MSG_NOSIGNAL) to a worker that
        // already gave up must not SIGPIPE the harness.
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sfd) != 0) fail_errno(ErrorKind::environment, "worker start socket");
        unique_fd s_read(sfd[0]), s_write(sfd[1]);
        if (pipe2(rfd, O_CLOEXEC) != 0) fail_errno(ErrorKind::environment, "worker report pipe");
        unique_fd r_read(rfd[0]), r_write(rfd[1]);
        Peer peer;
        peer.token = i % g;
        std::vector<int> keep;
        if (opt.work.type.kind == WorkKind::PipeIo) {
            uint32_t partner = peer.token == 0 ? i + 1 : i - 1;
            peer.write_fd = pipes[i][1].get();
            peer.read_fd = pipes[partner][0].get();
            keep = {peer.write_fd, peer.read_fd};
        }
        if (opt.work.type.kind == WorkKind::FutexPingPong) peer.pair = &pairs[i / g];
        fflush(nullptr);
        pid_t pid = fork();
        if (pid < 0) fail_errno(ErrorKind::environment, cat("fork of worker ", i, " (", opt.work.type.describe(), ")"));
        if (pid == 0) worker_main(opt, i, s_read.get(), r_write.get(), &slots[i], peer, keep);
        grp->pids_.push_back(pid);
        grp->start_fds_.push_back(std::move(s_write));
        grp->report_fds_.push_back(std::move(r_read));
    }
    return grp;
}

WorkerGroup::~WorkerGroup() {
    if (!done_) kill_all();
}

void WorkerGroup::start() {
    if (started_) return;
    started_ = true;
    for (auto &fd : start_fds_) {
        char b = 1;
        if (fd && send(fd.get(), &b, 1, MSG_NOSIGNAL) < 0) {}
        fd.reset();
    }
}

uint64_t WorkerGroup::total_iterations() const {
    if (!shared_) return 0;
    auto *slots = reinterpret_cast<const WorkerSlot *>(shared_.data());
    uint64_t sum = 0;
    for (size_t i = 0; i < pids_.size(); ++i) sum += slots[i].iterations.load(std::memory_order_relaxed);
    return sum;
}

void WorkerGroup::bump_cpuset_epoch() {
    auto *slots = reinterpret_cast<WorkerSlot *>(shared_.data());
    for (size_t i = 0; i < pids_.size(); ++i) slots[i].cpuset_epoch.fetch_add(1, std::memory_order_relaxed);
}

void WorkerGroup::kill_all() {
    for (pid_t p : pids_) {
        ::kill(-p, SIGKILL);
        ::kill(p, SIGKILL);
    }
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
    done_ = true;
}

void WorkerGroup::request_stop() {
    if (stop_sent_) return;
    if (!started_) {
        // Collecting an unstarted group starts it and lets it run briefly.
        start();
        usleep(500000);
    }
    for (pid_t p : pids_) ::kill(p, SIGUSR1);
    stop_sent_ = true;
}

std::vector<WorkerReport> WorkerGroup::collect(double deadline_s) {
    request_stop();
    const size_t n = pids_.size();
    std::vector<std::string> text(n);
    std::vector<bool> eof(n, false);
    const uint64_t until = now_ns() + static_cast<uint64_t>(deadline_s * 1e9);
    size_t open = n;
    while (open > 0) {
        // Past the deadline, still take what is already there (timeout 0).
        uint64_t now = now_ns();
        int wait_ms = now >= until ? 0 : static_cast<int>(std::min<uint64_t>((until - now) / 1000000 + 1, 1000));
        std::vector<pollfd> pfds;
        std::vector<size_t> idx;
        for (size_t i = 0; i < n; ++i)
            if (!eof[i]) pfds.push_back({report_fds_[i].get(), POLLIN, 0}), idx.push_back(i);
        int r = poll(pfds.data(), pfds.size(), wait_ms);
        if (r < 0 && errno != EINTR) break;
        if (r == 0 && wait_ms == 0) break;
        for (size_t k = 0; k < pfds.size(); ++k) {
            if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[65536];
            ssize_t got = ::read(pfds[k].fd, buf, sizeof buf);
            if (got > 0) {
                text[idx[k]].append(buf, static_cast<size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                eof[idx[k]] = true;
                --open;
            }
        }
    }
    std::vector<int> status(n, -1);
    std::vector<std::string> exit_info(n);
    for (size_t i = 0; i < n; ++i) {
        pid_t p = pids_[i];
        if (!eof[i]) {
            ::kill(-p, SIGKILL);
            ::kill(p, SIGKILL);
            exit_info[i] = "timed_out";
        }
        int st = 0;
        pid_t w = waitpid(p, &st, 0);
        if (w == p) {
            status[i] = st;
            if (exit_info[i].empty()) exit_info[i] = describe_exit(st);
        } else if (exit_info[i].empty()) {
            exit_info[i] = cat("wait_failed (", strerror(errno), ")");
        }
        ::kill(-p, SIGKILL);   // anything the worker left in its group
    }
    done_ = true;
    std::vector<WorkerReport> out;
    for (size_t i = 0; i < n; ++i) {
        WorkerReport r;
        bool ok = false;
        if (!text[i].empty()) {
            try {
                r = WorkerReport::from_json(json::parse(text[i]), cat("worker ", pids_[i]));
                ok = r.tid == pids_[i];
            } catch (const std::exception &) {
                ok = false;
            }
        }
        if (!ok) {
            r = WorkerReport{};
            r.tid = pids_[i];
            r.exit_info = exit_info[i].empty() ? "exited" : exit_info[i];
        }
        out.push_back(std::move(r));
    }
    report_fds_.clear();
    return out;
}

} // namespace ktstr::scenario
