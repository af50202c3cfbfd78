// libktstr/report: a single self-contained HTML page.
//
// The verdict banner on top, then per run the per-CPU timelines of
// nr_running and local DSQ depth drawn as inline SVG (step boundaries
// dashed, scenario boundaries solid, monitor violations shaded red, the
// warmup shaded grey), then the scenarios with their failing checks and
// cgroup tables.  No scripts, fonts, images or links: the page renders the
// same from a CI artifact store, an e-mail attachment or file://.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "format.h"
#include "ktstr/util.h"

namespace ktstr::report {

using namespace detail;

namespace {

// Banner and line colours; the e2e screenshot test checks the banner's.
const char *banner_color(Verdict v) {
    switch (v) {
    case Verdict::pass: return "#2e7d32";
    case Verdict::fail: return "#c62828";
    case Verdict::skip: return "#00838f";
    default: return "#ef8f00";
    }
}
constexpr const char *NR_RUNNING_COLOR = "#1565c0";
constexpr const char *DSQ_COLOR = "#e65100";

const char *upper(Verdict v) {
    switch (v) {
    case Verdict::pass: return "PASS";
    case Verdict::fail: return "FAIL";
    case Verdict::skip: return "SKIP";
    default: return "INCONCLUSIVE";
    }
}

constexpr int PLOT_W = 1000;      // drawing width of a timeline row, px
constexpr int LABEL_W = 70;       // left gutter for "cpu N" and the scale
constexpr size_t MAX_POINTS = 1000;

struct Series {
    std::vector<double> t_ms;
    std::vector<uint32_t> nr, dsq;
};

// One CPU's series, reduced to at most MAX_POINTS buckets by taking each
// bucket's maximum: a one-sample spike stays visible at any zoom.
Series cpu_series(const MonitorData &m, uint32_t cpu) {
    Series s;
    size_t n = m.samples.size();
    size_t per = std::max<size_t>(1, (n + MAX_POINTS - 1) / MAX_POINTS);
    for (size_t i = 0; i < n; i += per) {
        uint32_t nr = 0, dsq = 0;
        size_t end = std::min(n, i + per);
        for (size_t k = i; k < end; ++k) {
            const MonitorSample &smp = m.samples[k];
            if (cpu >= smp.count) continue;
            nr = std::max(nr, m.cpus(smp)[cpu].nr_running);
            dsq = std::max(dsq, std::min<uint32_t>(m.cpus(smp)[cpu].local_dsq_depth, 10000));
        }
        s.t_ms.push_back(m.samples[i].elapsed_ms);
        s.nr.push_back(nr);
        s.dsq.push_back(dsq);
    }
    return s;
}

struct Marker {
    double t_ms;
    std::string label;
    bool scenario;     // solid scenario boundary vs dashed step boundary
};

void timelines(std::ostringstream &o, const RunResult &rr) {
    const Run &r = *rr.run;
    const MonitorData &m = r.monitor;
    if (m.samples.empty()) {
        o << "<p class=\"muted\">No monitor samples: no timelines.</p>\n";
        return;
    }
    uint32_t ncpu = 0;
    for (const auto &s : m.samples) ncpu = std::max(ncpu, s.count);
    double t0 = m.samples.front().elapsed_ms, t1 = m.samples.back().elapsed_ms;
    if (t1 <= t0) t1 = t0 + 1;
    auto x_of = [&](double t) { return LABEL_W + (t - t0) / (t1 - t0) * PLOT_W; };
    const int row_h = ncpu > 32 ? 30 : 56;

    std::vector<Marker> marks;
    for (const auto &s : r.scenarios) {
        if (s.start_s >= 0) marks.push_back({s.start_s * 1000, s.name, true});
        for (const auto &st : s.steps)
            if (st.at_s >= 0) marks.push_back({st.at_s * 1000, cat("step ", st.index), false});
        if (s.end_s >= 0) marks.push_back({s.end_s * 1000, "end", true});
    }
    const int top = 18;   // room for the marker labels
    const int height = top + static_cast<int>(ncpu) * row_h + 22;
    o << "<svg class=\"timeline\" id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << LABEL_W + PLOT_W + 10
      << "\" height=\"" << height << "\" viewBox=\"0 0 " << LABEL_W + PLOT_W + 10 << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
    // warmup and violations behind everything
    if (rr.monitor.first > 0 && rr.monitor.first < m.samples.size())
        o << "<rect x=\"" << LABEL_W << "\" y=\"" << top << "\" width=\""
          << fmtd("%.1f", x_of(m.samples[rr.monitor.first].elapsed_ms) - LABEL_W) << "\" height=\""
          << ncpu * row_h << "\" fill=\"#eeeeee\"><title>monitor warmup (not evaluated)</title></rect>\n";
    for (const auto &f : rr.monitor.verdict.violations) {
        ViolationSpan span = violation_span(m, f);
        double xa = x_of(span.start_ms), xb = std::max(x_of(span.end_ms), xa + 2);
        int y = top, h = static_cast<int>(ncpu) * row_h;
        if (f.cpu && *f.cpu < ncpu) { y = top + static_cast<int>(*f.cpu) * row_h; h = row_h; }
        o << "<rect class=\"violation\" x=\"" << fmtd("%.1f", xa) << "\" y=\"" << y << "\" width=\"" << fmtd("%.1f", xb - xa)
          << "\" height=\"" << h << "\" fill=\"#c62828\" fill-opacity=\"0.18\"><title>" << xml_escape(f.message)
          << "</title></rect>\n";
    }
    for (uint32_t c = 0; c < ncpu; ++c) {
        Series s = cpu_series(m, c);
        uint32_t ymax = 1;
        for (auto v : s.nr) ymax = std::max(ymax, v);
        for (auto v : s.dsq) ymax = std::max(ymax, v);
        int y0 = top + static_cast<int>(c) * row_h;
        int base = y0 + row_h - 4, span = row_h - 10;
        o << "<g id=\"cpu" << c << "\"><text x=\"4\" y=\"" << y0 + row_h / 2 + 4 << "\">cpu " << c << "</text>"
          << "<text x=\"" << LABEL_W - 4 << "\" y=\"" << y0 + 12 << "\" text-anchor=\"end\" fill=\"#777\">" << ymax
          << "</text><line x1=\"" << LABEL_W << "\" y1=\"" << base << "\" x2=\"" << LABEL_W + PLOT_W << "\" y2=\"" << base
          << "\" stroke=\"#bbb\"/>\n";
        auto poly = [&](const std::vector<uint32_t> &v, const char *color, const char *cls) {
            o << "<polyline class=\"" << cls << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
            for (size_t i = 0; i < v.size(); ++i)
                o << fmtd("%.1f", x_of(s.t_ms[i])) << "," << fmtd("%.1f", base - static_cast<double>(v[i]) / ymax * span) << " ";
            o << "\"/>\n";
        };
        poly(s.dsq, DSQ_COLOR, "dsq");
        poly(s.nr, NR_RUNNING_COLOR, "nr_running");
        o << "</g>\n";
    }
    for (const auto &mk : marks) {
        if (mk.t_ms < t0 || mk.t_ms > t1) continue;
        double x = x_of(mk.t_ms);
        o << "<line class=\"" << (mk.scenario ? "scenario-mark" : "step-mark") << "\" x1=\"" << fmtd("%.1f", x) << "\" y1=\""
          << top - 4 << "\" x2=\"" << fmtd("%.1f", x) << "\" y2=\"" << top + ncpu * row_h << "\" stroke=\"#333\""
          << (mk.scenario ? "" : " stroke-dasharray=\"4 3\"") << "/><text x=\"" << fmtd("%.1f", x + 2) << "\" y=\"11\">"
          << xml_escape(mk.label) << "</text>\n";
    }
    // time axis
    int ya = top + static_cast<int>(ncpu) * row_h + 14;
    for (int k = 0; k <= 4; ++k) {
        double t = t0 + (t1 - t0) * k / 4;
        o << "<text x=\"" << fmtd("%.1f", x_of(t)) << "\" y=\"" << ya << "\" text-anchor=\"" << (k == 0 ? "start" : k == 4 ? "end" : "middle")
          << "\" fill=\"#555\">+" << fmtd("%.2f", t / 1000) << "s</text>\n";
    }
    o << "</svg>\n";
    o << "<p class=\"legend\"><span style=\"color:" << NR_RUNNING_COLOR << "\">&#9632; nr_running</span> "
      << "<span style=\"color:" << DSQ_COLOR << "\">&#9632; local DSQ depth</span> "
      << "<span>&#9474; scenario start/end</span> <span>&#8942; step boundary</span> "
      << "<span style=\"color:#c62828\">&#9632; monitor violation</span> <span style=\"color:#999\">&#9632; warmup</span>"
      << " &mdash; per CPU, each row scaled to its own maximum (number at left); at most " << MAX_POINTS
      << " points per row (bucket maxima)</p>\n";
}

void finding_list(std::ostringstream &o, const std::vector<Finding> &fs, const char *cls) {
    if (fs.empty()) return;
    o << "<ul class=\"" << cls << "\">\n";
    for (const auto &f : fs) {
        o << "<li><code>" << xml_escape(f.message) << "</code>";
        std::string ctx = finding_context(f);
        if (!ctx.empty()) o << "<br><span class=\"ctx\">" << xml_escape(ctx) << "</span>";
        o << "</li>\n";
    }
    o << "</ul>\n";
}

} // namespace

std::string render_html(const Report &rep) {
    std::ostringstream o;
    o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>ktstr report: " << upper(rep.verdict)
      << "</title>\n<style>\n"
         "body{margin:0;font-family:sans-serif;color:#222;background:#fff}\n"
         ".banner{color:#fff;padding:14px 20px;font-size:22px;font-weight:bold}\n"
         ".banner small{font-weight:normal;font-size:15px;margin-left:12px}\n"
         "main{padding:4px 20px 40px}\n"
         "h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}\n"
         "h3{font-size:15px;margin:14px 0 4px}\n"
         ".v{display:inline-block;min-width:96px;padding:1px 6px;color:#fff;font-size:13px;text-align:center;border-radius:3px}\n"
         "table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}\n"
         "td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}\n"
         "td:first-child,th:first-child{text-align:left}\n"
         ".ctx,.muted,.legend{color:#666;font-size:12px}\n"
         "ul.fail code{color:#b71c1c}\n"
         "svg.timeline{display:block;margin:6px 0}\n"
         "</style></head><body>\n";
    o << "<div class=\"banner\" id=\"verdict\" style=\"background:" << banner_color(rep.verdict) << "\">" << upper(rep.verdict)
      << "<small>" << rep.failed << " failed, " << rep.passed << " passed, " << rep.skipped << " skipped, "
      << rep.inconclusive << " inconclusive &mdash; " << xml_escape(rep.reason) << "</small></div>\n<main>\n";
    for (const auto &rr : rep.runs) {
        const Run &r = *rr.run;
        std::string srcs;
        for (auto &s : r.sources) srcs += (srcs.empty() ? "" : " + ") + s;
        o << "<h2><span class=\"v\" style=\"background:" << banner_color(rr.verdict) << "\">" << upper(rr.verdict) << "</span> "
          << xml_escape(srcs) << "</h2>\n";
        o << "<p>" << (r.has_vmm ? xml_escape(run_header(r)) : std::string("monitor only")) << "<br><span class=\"muted\">"
          << xml_escape(rr.reason) << "</span></p>\n";
        for (const auto &t : r.truncated) o << "<p class=\"muted\">cut short: " << xml_escape(t) << "</p>\n";
        if (r.monitor.present) {
            const monitor::Summary &ms = rr.monitor.summary;
            o << "<p>monitor: " << r.monitor.samples.size() << " samples, max imbalance " << fmtd("%.1f", ms.max_imbalance_ratio)
              << ", max local DSQ depth " << ms.max_local_dsq_depth << ", stall seen: " << (ms.stall_detected ? "yes" : "no")
              << " &mdash; <b>" << xml_escape(rr.monitor.verdict.summary) << "</b>"
              << (rr.monitor_counts ? "" : " (informational)") << "</p>\n";
            timelines(o, rr);
        }
        finding_list(o, rr.findings, "fail");
        for (const auto &sr : rr.scenarios) {
            const ScenarioRun &s = *sr.scenario;
            o << "<h3><span class=\"v\" style=\"background:" << banner_color(sr.verdict) << "\">" << upper(sr.verdict)
              << "</span> " << xml_escape(scenario_title(s)) << " <span class=\"muted\">" << fmtd("%.2f", sr.duration_s)
              << "s &mdash; " << xml_escape(sr.reason) << "</span></h3>\n";
            finding_list(o, sr.findings, "fail");
            if (!sr.notes.empty()) {
                o << "<p class=\"muted\">not counted (no sched_ext scheduler under test):</p>\n";
                finding_list(o, sr.notes, "note");
            }
            if (!sr.cgroups.empty()) {
                o << "<table><tr><th>cgroup</th><th>workers</th><th>ran on</th><th>spread</th><th>max gap</th>"
                     "<th>migrations</th><th>iterations</th></tr>\n";
                for (const auto &c : sr.cgroups)
                    o << "<tr><td>" << xml_escape(c.name) << "</td><td>" << c.workers << "</td><td>" << cpulist(c.cpus)
                      << "</td><td>" << fmtd("%.1f%%", c.spread_pct) << "</td><td>" << c.max_gap_ms << "ms"
                      << (c.max_gap_cpu >= 0 ? cat(" @cpu", c.max_gap_cpu) : "") << "</td><td>" << c.migrations
                      << "</td><td>" << c.iterations << "</td></tr>\n";
                o << "</table>\n";
            }
            for (auto &line : step_cpuset_lines(s.steps)) o << "<p class=\"muted\">" << xml_escape(line) << "</p>\n";
        }
    }
    o << "</main></body></html>\n";
    return o.str();
}

} // namespace ktstr::report
