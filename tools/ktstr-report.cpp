// ktstr-report: verdicts, summaries and A/B comparisons from the JSON lines of
// ktstr-vmm and ktstr-monitor.  All logic lives in libktstr/report.
#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/json.h"
#include "ktstr/report.h"
#include "ktstr/util.h"

using namespace ktstr;
using namespace ktstr::report;

namespace {

const std::vector<cli::Option> COMMON = {
    {"json", 'j', "", "print the ktstr.report/1 JSON document instead of text"},
    {"monitor-verdict", 0, "WHEN", "auto (default: only with a sched_ext scheduler or monitor-only input), always, never"},
    {"no-warmup", 0, "", "evaluate every monitor sample (default: skip the first 20 when there are more)"},
};

const std::vector<cli::Option> SUMMARY = {
    {"junit", 0, "FILE", "also write JUnit XML: one testcase per scenario and topology"},
    {"html", 0, "FILE", "also write a self-contained HTML page with per-CPU timelines"},
    {"color", 0, "WHEN", "colour the text: auto (on a terminal, default), always, never"},
    {"text", 0, "", "print the text summary (the default; with --json prints both: JSON last)"},
};

const std::vector<cli::Option> COMPARE = {
    {"threshold", 0, "PCT", "replace every relative gate with PCT percent"},
    {"policy", 0, "FILE", "relative gates: {\"default_percent\":N,\"per_metric_percent\":{metric:N}}"},
    {"no-average", 0, "", "do not average repeated runs of a test (duplicates are then an error)"},
};

std::vector<cli::Option> join(std::vector<cli::Option> a, const std::vector<cli::Option> &b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::string help_text() {
    return cat(
        "Usage: ktstr-report [OPTIONS] [FILE|DIR|-]...\n"
        "       ktstr-report compare [OPTIONS] A B\n"
        "\n"
        "Reads the JSON lines of ktstr-vmm (ktstr.vmm/1) and ktstr-monitor (ktstr.monitor/1) from files,\n"
        "directories (every *.jsonl inside) or standard input, and prints a verdict and a summary: per\n"
        "scenario the failing checks with cgroup, CPU, duration and time into the run, per-cgroup stats,\n"
        "then the monitor's findings placed on the scenario's steps.\n"
        "  ktstr-vmm --kernel K --scenario steady | ktstr-report\n"
        "  ktstr-report run.jsonl run.monitor.jsonl --junit junit.xml --html report.html\n"
        "A ktstr-vmm stream and a monitor stream form one run when one file holds both, when their names\n"
        "share a stem (x.jsonl + x.monitor.jsonl), or when exactly one of each is given.\n"
        "Unknown fields and event kinds are ignored; an unknown major schema is an error naming file:line.\n"
        "\n"
        "Verdicts and exit status:\n"
        "  0  pass: every scenario that ran passed and the input is complete\n"
        "  1  fail: a check failed, a scenario or the guest reported failure, or the monitor's verdict\n"
        "     failed while a sched_ext scheduler was under test (a failure seen before a crash counts)\n"
        "  2  inconclusive: nothing failed but the evidence is incomplete: the input was cut short (no\n"
        "     exit event from ktstr-vmm, no end event from ktstr-monitor, a broken last line), the guest\n"
        "     never reached a scenario, a scenario did not finish, no check ran, the VM run failed for\n"
        "     infrastructure reasons (timeout, crash), or every scenario was skipped;\n"
        "     also usage errors and bad input (one line naming the file, line or field)\n"
        "  3  environment failure (an output file could not be written)\n"
        "\n"
        "Options:\n",
        cli::format_options(join(COMMON, SUMMARY)),
        "\n"
        "compare A B: A/B comparison of two sets of runs (each a file or a directory of *.jsonl) on\n"
        "the metrics of the A/B registry.  A metric regressed or improved only when the change passes\n"
        "both its absolute gate and its relative gate; a change from A = 0 is never significant.\n"
        "Repeated runs of a test are averaged (only when all of them passed); each side's standard\n"
        "deviation and, with 3+ runs per side, a Mann-Whitney p-value are shown.  Exits 1 when\n"
        "anything regressed, 0 otherwise, 2 when no test appears on both sides or on bad input, 3 when\n"
        "an output file could not be written.\n"
        "Compare options:\n",
        cli::format_options(join(COMMON, COMPARE)));
}

EvaluateOptions evaluate_options(const cli::Args &a) {
    EvaluateOptions o;
    std::string mv = a.get("monitor-verdict", "auto");
    if (mv == "auto") o.monitor = MonitorPolicy::automatic;
    else if (mv == "always") o.monitor = MonitorPolicy::always;
    else if (mv == "never") o.monitor = MonitorPolicy::never;
    else fail(ErrorKind::usage, "--monitor-verdict: '", mv, "' is not one of auto, always, never");
    o.warmup = !a.has("no-warmup");
    return o;
}

int summary(const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, join(COMMON, SUMMARY));
    std::vector<std::string> inputs = a.positional();
    if (inputs.empty()) {
        if (isatty(STDIN_FILENO))
            fail(ErrorKind::usage, "no input: give JSON-lines files or pipe ktstr-vmm into ktstr-report (see --help)");
        inputs.push_back("-");
    }
    std::string color = a.get("color", "auto");
    if (color != "auto" && color != "always" && color != "never")
        fail(ErrorKind::usage, "--color: '", color, "' is not one of auto, always, never");
    EvaluateOptions opt = evaluate_options(a);

    std::vector<Run> runs = read_runs(inputs);
    Report rep = evaluate_runs(runs, opt);

    // Files first, so a failure to write one is reported before the verdict.
    if (a.has("junit")) write_file_atomic(a.get("junit"), render_junit(rep));
    if (a.has("html")) write_file_atomic(a.get("html"), render_html(rep));
    bool want_text = !a.has("json") || a.has("text");
    if (want_text) {
        bool paint = color == "always" || (color == "auto" && isatty(STDOUT_FILENO) && !a.has("json"));
        std::fputs(render_text(rep, paint).c_str(), stdout);
    }
    if (a.has("json")) emit_line(render_json(rep));
    return exit_code_of(rep.verdict);
}

int compare_cmd(const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, join(COMMON, COMPARE));
    const auto &pos = a.positional();
    if (pos.size() != 2)
        fail(ErrorKind::usage, "compare needs exactly two inputs A and B (files or directories), got ", pos.size());
    EvaluateOptions opt = evaluate_options(a);
    ComparePolicy policy;
    if (a.has("threshold")) policy.threshold_pct = a.get_double("threshold", 0);
    if (a.has("policy")) {
        std::string p = a.get("policy");
        policy = parse_policy(parse_json(read_file(p), p), p, policy);
    }
    policy.average = !a.has("no-average");
    auto side_rows = [&](const std::string &in) {
        std::vector<MetricRow> rows;
        for (const Run &r : read_runs({in})) {
            auto v = metric_rows(r, opt);
            rows.insert(rows.end(), v.begin(), v.end());
        }
        if (rows.empty()) fail(ErrorKind::input, "'", in, "' holds no scenario results to compare");
        return rows;
    };
    std::vector<MetricRow> ra = side_rows(pos[0]), rb = side_rows(pos[1]);
    CompareResult c = compare(ra, rb, policy);
    if (a.has("json")) emit_line(render_compare_json(c));
    else std::fputs(render_compare_text(c).c_str(), stdout);
    bool paired = !c.rows.empty() || !c.dropped.empty();
    if (!paired) {
        bool any_pair = false;
        for (auto &x : ra)
            for (auto &y : rb) any_pair = any_pair || x.scenario == y.scenario;
        if (!any_pair) {
            log::error("no test appears on both sides: nothing to compare");
            return 2;
        }
    }
    return c.regressions ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
    return cli::tool_main(argc, argv, {"ktstr-report", help_text()}, [](const std::vector<std::string> &args) {
        if (!args.empty() && args[0] == "compare")
            return compare_cmd(std::vector<std::string>(args.begin() + 1, args.end()));
        return summary(args);
    });
}
