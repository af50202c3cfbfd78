// ktstr-vmm: boot a kernel with a topology and an initramfs, stream JSON events.
//
// The front end only turns options into a VmConfig and composes observers
// (libktstr/vmm/frontend.cpp) around run_vm(); to add a feature, add a row to
// options(), read it in config_from() or add an observer in run().
#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/console_watch.h"
#include "ktstr/kvm.h"
#include "ktstr/image_load.h"
#include "ktstr/vmm.h"
#include "ktstr/vmm_frontend.h"
#include "ktstr/vmm_guest.h"
#include "ktstr/vmm_scenario.h"

using namespace ktstr;
using namespace ktstr::vmm;

namespace {

const std::vector<cli::Option> &options() {
    static const std::vector<cli::Option> opts = {
        {"kernel", 'k', "PATH", "bzImage, a directory holding one, or a ktstr.kernel/1 kernel.json (required)"},
        {"initrd", 'i', "FILE", "initramfs (cpio, optionally compressed) to boot"},
        {"cmdline", 'c', "WORDS", "extra kernel command-line words, after the defaults", true},
        {"topology", 't', "TOPO", "NnLlCcTt (e.g. 2n2l2c1t) or a ktstr.topology/1 JSON file (default 1n1l2c1t)"},
        {"memory-mb", 'm', "MIB", "guest memory in MiB (default 512, or the topology's node sum)"},
        {"shm-mb", 0, "MIB", "guest<->host shared region in MiB, 0 for none (default 16)"},
        {"timeout", 0, "SECONDS", "stop the guest after this long, exit 3 (default 60, 0 = never; with --scenario 60 + per scenario its duration + settle + 30 + --sched-timeout)"},
        {"accel", 'a', "ACCEL", "kvm, tcg or auto (default auto: KVM only at hardware speed)"},
        {"console", 0, "FILE", "kernel console (COM1) to FILE instead of stderr ('none' drops it)"},
        {"com2", 0, "FILE", "raw COM2 (ttyS1) bytes to FILE"},
        {"monitor-socket", 0, "PATH", "serve the guest-RAM fds and the ktstr.layout/1 JSON on this Unix socket"},
        {"json-layout", 0, "", "print the layout as a 'layout' event"},
        {"nokaslr", 0, "", "boot with nokaslr (KASLR stays on by default)"},
        {"kernel-log", 0, "", "verbose kernel log (earlyprintk, loglevel=7); overrides --loglevel"},
        {"loglevel", 0, "N", "kernel console loglevel: messages below N reach the console (default 0: none "
                             "until a panic or oops; 4: errors; 5: and warnings)"},
        {"qemu", 0, "PATH", "TCG: the qemu-system-x86_64 to run"},
        {"qemu-machine", 0, "MACHINE", "TCG: QEMU machine (default microvm, pc for NUMA guests)"},
        {"tcg-threads", 0, "MODE", "TCG: single (one host thread runs all vCPUs, default) or multi (a thread per vCPU)"},
        {"qemu-arg", 0, "ARG", "TCG: extra QEMU argument, verbatim", true},
        {"exec", 'e', "CMD", "run CMD in the guest (busybox sh -c) with the ktstr agent as /init; its output on stdout/stderr, exit with its status"},
        {"shell", 0, "", "an interactive shell in the guest on this terminal (the agent as /init, COM2 as its tty); exit with its status"},
        {"include", 'I', "HOST[:GUEST]", "with --exec or --shell: add a file to the guest (default /include-files/NAME, on PATH); ELF files bring their libraries", true},
        {"events", 0, "FILE", "with --exec: write the ktstr.vmm/1 events to FILE (stdout carries the command's output)"},
        {"no-ring", 0, "", "with --exec: the agent reports over COM2 only (tests the fallback)"},
        {"elf", 0, "FILE", "KVM: boot this ELF64 (the kernel's vmlinux, or a test guest) through its entry point "
                           "instead of the bzImage; 'vmlinux' = the kernel's own (--kernel optional with a FILE)"},
        {"scenario", 's', "NAME|FILE", "run a canned scenario or a ktstr.scenario/1 file in the guest (several: "
                                        "one boot, in order); its events on stdout, exit 1 when a check fails", true},
        {"list-scenarios", 0, "", "print the canned scenarios (name, category, description) and exit"},
        {"json", 0, "", "with --list-scenarios: one ktstr.scenario/1 document per line instead of the table"},
        {"dry-run", 'n', "", "check the arguments (kernel, topology, memory size, scenarios against the topology, "
                             "scheduler is executable) and print a 'plan' event instead of booting; exit 0, or 2 "
                             "naming the problem"},
        {"scheduler", 0, "PATH", "with --scenario: the sched_ext scheduler under test (packed with its libraries, "
                                 "started before each scenario); default EEVDF"},
        {"sched-args", 0, "ARGS", "with --scheduler: its arguments, split at spaces", true},
        {"sched-timeout", 0, "SECONDS", "with --scheduler: how long sched_ext may take to report it enabled (default 10)"},
        {"check", 0, "NAME=VALUE", "with --scenario: override a check (e.g. max_gap_ms=500, isolation=true, "
                                   "max_spread_pct=false), on top of the scenario's", true},
        {"duration", 0, "SECONDS", "with --scenario: the run's duration; holds given as fractions scale with it (default 2)"},
        {"workers", 0, "N", "with --scenario: workers per cgroup where a scenario says per_cgroup (default 2)"},
        {"settle", 0, "MS", "with --scenario: pause after creating cgroups (default 500)"},
        {"kvm-quirks", 0, "MODE", "KVM: host-quirk workarounds auto|on|off (default auto: on when KVM is emulated)"},
        {"kvm-image-load", 0, "MODE", "KVM: kernel/initramfs bytes into guest RAM lazy|eager|auto (lazy: the guest starts "
                                      "at once, pages fill on first touch and in the background, via userfaultfd; "
                                      "default auto: lazy where userfaultfd is usable)"},
        {"stop-on", 0, "TEXT", "stop the guest (exit 0) once every such text appeared on the console; implies "
                               "--kernel-log unless --loglevel is given", true},
        {"verbose", 'v', "", "debug messages (e.g. the QEMU command line) on stderr"},
    };
    return opts;
}

std::string help_text() {
    return cat("Usage: ktstr-vmm --kernel PATH [--initrd FILE] [--topology TOPO] [options]\n"
               "       ktstr-vmm --kernel PATH --exec CMD [--include HOST[:GUEST]]... [options]\n"
               "       ktstr-vmm --kernel PATH --scenario NAME|FILE... [--scheduler PATH [--sched-args ARGS]]\n"
               "                 [--check NAME=VALUE]... [--duration S] [options]\n"
               "       ktstr-vmm --list-scenarios\n"
               "\n"
               "Boot a Linux kernel in a VM with the requested CPU topology (NUMA nodes, LLCs,\n"
               "cores, SMT threads) under KVM or QEMU TCG, and stream ktstr.vmm/1 JSON events\n"
               "(boot, layout, exit, ...) on stdout, one per line.  The kernel console goes to\n"
               "stderr (or --console FILE).  Guest RAM is shared memory (memfds) that\n"
               "ktstr-monitor reads through --monitor-socket.\n"
               "\n"
               "Options:\n",
               cli::format_options(options()),
               "  -h, --help                  this text\n"
               "      --version               print the version\n"
               "\n"
               "Exit status:\n"
               "  0  the guest powered off cleanly (or reported exit code 0)\n"
               "  1  the guest reported a failure (non-zero exit code)\n"
               "  2  usage error or bad input (the message names the file, field or value)\n"
               "  3  infrastructure failure: timeout, guest crash or reboot without an exit code,\n"
               "     QEMU/KVM missing or failing, signal\n"
               "  With --exec: the guest command's own status (255 when it could not be obtained).\n"
               "  With --scenario: 0 every scenario passed or was skipped; 1 a check failed, the\n"
               "  scheduler under test died or never attached; 2 a scenario or option is invalid;\n"
               "  3 the guest crashed or timed out, or a scenario could not run or report.\n");
}

VmConfig config_from(const cli::Args &a) {
    VmConfig c;
    c.accel = parse_accel(a.get("accel", "auto"));
    std::string elf = a.get("elf");
    // A test guest needs no kernel; "--elf vmlinux" means the kernel's own.
    if (!a.has("kernel") && !elf.empty() && elf != "vmlinux") c.kernel.bzimage = "";
    else c.kernel = resolve_kernel(a.get("kernel"));
    if (elf == "vmlinux") {
        if (c.kernel.vmlinux.empty())
            fail(ErrorKind::input, "--elf vmlinux: no vmlinux found for --kernel ", a.get("kernel"));
        elf = c.kernel.vmlinux;
    }
    c.kvm_elf = elf;
    if (c.accel == Accel::tcg && !elf.empty())
        fail(ErrorKind::usage, "--elf: only the KVM accelerator boots an ELF through its entry point; "
                               "TCG boots the bzImage (drop --elf, or use --accel kvm)");
    c.kvm_quirks = a.get("kvm-quirks", "auto");
    parse_quirk_mode(c.kvm_quirks);   // checked here, for every accelerator and --dry-run
    c.kvm_image_load = a.get("kvm-image-load", "auto");
    parse_image_load_mode(c.kvm_image_load);
    c.initrd = a.get("initrd");
    for (auto &words : a.all("cmdline"))
        for (auto &w : split(words, ' ', false)) c.cmdline_extra.push_back(w);
    c.topology = load_topology(a.get("topology", "1n1l2c1t"));
    uint64_t explicit_sum = 0;
    for (auto &n : c.topology.nodes) explicit_sum += n.memory_mb;
    c.memory_mb = a.get_u64("memory-mb", explicit_sum ? explicit_sum : 512);
    c.shm_size = a.get_u64("shm-mb", 16) * MiB;
    c.timeout_s = a.get_double("timeout", a.has("shell") ? 0 : 60);   // a person at a shell takes their time
    c.kaslr = !a.has("nokaslr");
    // --stop-on waits for kernel messages, which the default loglevel keeps
    // off the console (and early ones need earlyprintk): it implies --kernel-log
    // unless a --loglevel says otherwise.
    c.kernel_verbose = a.has("kernel-log") || (a.has("stop-on") && !a.has("loglevel"));
    if (c.kernel_verbose && !a.has("kernel-log"))
        log::info("--stop-on: kernel log on (as --kernel-log) so the texts can reach the console");
    c.kernel_loglevel = unsigned(a.get_u64("loglevel", 0));
    if (c.kernel_loglevel > 8) fail(ErrorKind::usage, "--loglevel ", c.kernel_loglevel, ": expected 0..8");
    c.qemu_binary = a.get("qemu");
    c.qemu_machine = a.get("qemu-machine");
    c.qemu_extra_args = a.all("qemu-arg");
    std::string threads = a.get("tcg-threads", "single");
    if (threads != "single" && threads != "multi")
        fail(ErrorKind::usage, "--tcg-threads: '", threads, "' is not valid (single or multi)");
    c.tcg_multi_thread = threads == "multi";
    if (!a.positional().empty()) fail(ErrorKind::usage, "unexpected argument '", a.positional()[0], "' (see --help)");
    if (a.has("shell") && a.has("exec")) fail(ErrorKind::usage, "--shell and --exec exclude each other");
    if (a.has("shell") && a.has("initrd")) fail(ErrorKind::usage, "--shell builds its own initramfs (the ktstr agent); drop --initrd");
    if (a.has("shell") && a.has("no-ring")) fail(ErrorKind::usage, "--shell needs the ring (COM2 is the shell's terminal); drop --no-ring");
    if (a.has("shell") && a.has("shm-mb") && a.get_u64("shm-mb", 16) == 0)
        fail(ErrorKind::usage, "--shell needs the shared region for the ring (COM2 is the shell's terminal); --shm-mb must be at least 1");
    if (a.has("exec") && a.has("initrd"))
        fail(ErrorKind::usage, "--exec builds its own initramfs (the ktstr agent); drop --initrd");
    for (const char *o : {"include", "events", "no-ring"})
        if (a.has(o) && !a.has("exec") && !(a.has("shell") && std::string(o) != "no-ring"))
            fail(ErrorKind::usage, "--", o, " needs --exec", std::string(o) != "no-ring" ? " or --shell" : "");
    if (a.has("no-ring")) c.cmdline_extra.push_back("ktstr.ring=off");
    validate_config(c);
    return c;
}

// --scenario and its options; checked and loaded before the kernel is looked at so that
// a bad name, file or combination is reported first.
ScenarioRequest scenario_request_from(const cli::Args &a) {
    ScenarioRequest req;
    for (auto &arg : a.all("scenario")) req.scenarios.push_back(scenario::load_scenario_arg(arg));
    auto &o = req.options;
    o.duration_s = a.get_double("duration", o.duration_s);
    o.workers_per_cgroup = static_cast<uint32_t>(a.get_u64("workers", o.workers_per_cgroup));
    o.settle_ms = a.get_u64("settle", o.settle_ms);
    o.enable_timeout_s = a.get_double("sched-timeout", o.enable_timeout_s);
    o.checks = a.all("check");
    for (auto &words : a.all("sched-args"))
        for (auto &w : split(words, ' ', false)) o.sched_args.push_back(w);
    req.scheduler = a.get("scheduler");
    validate_scenario_request(req);
    return req;
}

int run(const std::vector<std::string> &tokens, EventStream &events) {
    cli::Args a = cli::parse(tokens, options());
    if (a.has("verbose")) log::set_level(log::Level::debug);
    if (a.has("list-scenarios")) {
        if (a.has("json"))
            for (auto &e : scenario::catalog()) emit_line(ojson::parse(e.json_text), stdout);
        else fputs(scenario::format_catalog().c_str(), stdout);
        return EXIT_OK;
    }
    if (a.has("json")) fail(ErrorKind::usage, "--json needs --list-scenarios");
    if (a.has("scenario") && (a.has("exec") || a.has("initrd") || a.has("shell")))
        fail(ErrorKind::usage, "--scenario builds its own initramfs and job; drop --",
             a.has("exec") ? "exec" : a.has("initrd") ? "initrd" : "shell");
    for (const char *o : {"scheduler", "sched-args", "sched-timeout", "check", "duration", "workers", "settle"})
        if (a.has(o) && !a.has("scenario")) fail(ErrorKind::usage, "--", o, " needs --scenario");
    if ((a.has("sched-args") || a.has("sched-timeout")) && !a.has("scheduler"))
        fail(ErrorKind::usage, "--", a.has("sched-args") ? "sched-args" : "sched-timeout", " needs --scheduler");
    std::optional<ScenarioRequest> scenarios;
    if (a.has("scenario")) scenarios = scenario_request_from(a);
    VmConfig config = config_from(a);
    if (scenarios) {
        preflight_scenarios(*scenarios, config.topology);
        if (!a.has("timeout")) config.timeout_s = scenario_default_timeout_s(*scenarios);
    }
    // --shell with --accel auto gets TCG (below), so only an explicit kvm is refused.
    if (a.has("shell") && config.accel == Accel::kvm)
        fail(ErrorKind::usage, "--shell: the KVM accelerator has no COM2 input yet; use --accel tcg");
    if (a.has("dry-run")) {
        // Everything above has been checked; nothing is started. The accelerator
        // is the one asked for (auto is decided by a probe at boot).
        ojson plan = boot_event_fields(config, "");
        plan["event"] = "plan";
        plan.erase("cmdline");
        plan["timeout_s"] = config.timeout_s;
        if (scenarios) {
            ojson names = ojson::array();
            for (auto &sc : scenarios->scenarios) names.push_back(sc.name);
            plan["scenarios"] = names;
            plan["scheduler"] = scenarios->scheduler.empty() ? ojson(nullptr) : ojson(scenarios->scheduler);
        }
        events.emit(plan);
        return EXIT_OK;
    }

    // --shell needs COM2 input, which only the TCG accelerator has: auto picks it
    // without probing KVM.
    AccelChoice choice = a.has("shell") && config.accel == Accel::automatic
                             ? AccelChoice{Accel::tcg, "--shell: only the TCG accelerator forwards terminal input to COM2"}
                             : choose_accel(config.accel);
    if (config.accel == Accel::automatic) log::info("accelerator ", accel_name(choice.accel), ": ", choice.reason);
    config.accel = choice.accel;
    if (config.accel == Accel::tcg && !config.kvm_elf.empty()) {
        if (config.kernel.bzimage.empty())
            fail(ErrorKind::environment, "--elf ", config.kvm_elf, ": only the KVM accelerator boots an ELF, and ",
                 choice.reason);
        log::warn("--elf is for the KVM accelerator; TCG boots ", config.kernel.bzimage, " instead");
    }

    StopSource stop;
    auto signal_guard = stop.install_signal_handlers();

    ObserverList observers;
    BootEventObserver boot(events, a.has("json-layout"), {{"accel_reason", choice.reason}});
    observers.add(&boot);
    std::optional<StreamSink> console, com2;
    std::string console_path = a.get("console", "-");
    if (console_path == "-") console.emplace(StreamSink::Port::console, STDERR_FILENO);
    else if (console_path != "none") console.emplace(StreamSink::Port::console, console_path);
    if (console) observers.add(&*console);
    if (a.has("com2")) {
        com2.emplace(StreamSink::Port::com2, a.get("com2"));
        observers.add(&*com2);
    }
    std::optional<MonitorSocketServer> monitor;
    if (a.has("monitor-socket")) {
        monitor.emplace(a.get("monitor-socket"));
        observers.add(&*monitor);
    }

    // --exec: the agent runs the command; its output is our stdout/stderr (like ssh), so
    // the events go to --events FILE or nowhere.
    std::optional<GuestImage> image;
    FILE *events_file = nullptr;
    std::optional<RawTerminal> raw_terminal;
    if (a.has("shell")) {
        // COM2 is the shell's tty: our stdin goes there (once the shell is up), its
        // output comes to our stdout; the terminal's size and type go along.
        config.com2_input_fd = STDIN_FILENO;
        for (auto &w : shell_environment(STDIN_FILENO)) config.cmdline_extra.push_back(w);
    }
    if (a.has("exec") || a.has("shell")) {
        initramfs::JobSpec job;
        if (a.has("shell")) job.kind = "shell";
        else job.exec_cmd = a.get("exec");
        std::vector<initramfs::Include> includes;
        for (auto &i : a.all("include")) includes.push_back(initramfs::parse_include(i));
        image.emplace(job, includes);
        config.initrd = image->path();
        if (a.has("events")) {
            events_file = fopen(a.get("events").c_str(), "we");
            if (!events_file) fail_errno(ErrorKind::environment, cat("--events ", a.get("events")));
        }
        events.set_output(events_file);
    }
    // --scenario: the agent runs the scenario job; its events are our stdout.
    std::optional<ScenarioTally> tally;
    if (scenarios) {
        image.emplace(scenario_job_spec(*scenarios), scenario_includes(*scenarios));
        config.initrd = image->path();
        tally.emplace(scenarios->scenarios.size());
    }
    GuestJobObserver::Options gopt;
    if (image && !scenarios) {
        gopt.out_fd = STDOUT_FILENO;
        gopt.err_fd = STDERR_FILENO;
    }
    if (a.has("shell")) gopt.com2_raw_fd = STDOUT_FILENO;
    if (tally) gopt.on_event = [&](const ojson &ev) { tally->on_event(ev); };
    // The terminal goes raw (keys such as ^C go to the guest) only once the guest's
    // shell is up: until then ^C stops the boot here like any other run.
    if (a.has("shell"))
        gopt.on_event = [&](const ojson &ev) {
            if (ev.value("event", "") == "shell_ready" && !raw_terminal && ::isatty(STDIN_FILENO))
                raw_terminal.emplace(STDIN_FILENO);
        };
    GuestJobObserver guest(events, gopt);
    observers.add(&guest);
    // Last: its on_exit has the final word on a run it stopped (exit 0).
    std::optional<ConsoleStopObserver> stop_on;
    if (a.has("stop-on")) {
        stop_on.emplace(a.all("stop-on"));
        observers.add(&*stop_on);
    }

    ExitResult result = run_vm(config, observers, stop);
    raw_terminal.reset();
    int code = process_exit_code(result);
    if (tally) {
        int status = tally->exit_code(result);
        result.extra["scenarios"] = tally->summary();
        events.emit(exit_event(result, status));
        if (std::string why = tally->problem(result); !why.empty())
            log::error(why, result.detail.empty() ? "" : cat(": ", result.detail));
        return status;
    }
    if (image) {
        int status = exec_exit_status(result);
        events.emit(exit_event(result, status));
        if (events_file) fclose(events_file);
        events.set_output(stdout);
        if (!result.guest_exit_code) log::error(exit_reason_name(result.reason), ": ", result.detail);
        return status;
    }
    events.emit(exit_event(result, code));
    if (code != EXIT_OK) log::error(exit_reason_name(result.reason), ": ", result.detail);
    return code;
}

} // namespace

int main(int argc, char **argv) {
    EventStream events(Clock::now());
    return cli::tool_main(argc, argv, {"ktstr-vmm", help_text()}, [&](const std::vector<std::string> &args) {
        try {
            return run(args, events);
        } catch (const Error &e) {
            // Consumers of the stream always see how it ended.
            ExitResult r;
            r.reason = ExitReason::error;
            r.detail = e.what();
            events.emit(exit_event(r, e.exit_code()));
            throw;
        }
    });
}
