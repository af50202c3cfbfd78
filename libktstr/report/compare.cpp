// libktstr/report: A/B comparison of two sets of runs (scenarios.md section 6).
//
// A metric changes significantly only when it passes both gates: the
// absolute one (in the metric's unit) and the relative one (|B-A|/|A|).
// The relative change against A = 0 is 0, so 0 -> anything is never
// significant (upstream's rule, kept and documented).  Alongside the gates we
// show each side's spread (sample standard deviation) and, with three or more
// runs per side, a Mann-Whitney U p-value with tie correction: all-equal
// samples give p = 1, never NaN.
#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <sstream>

#include "format.h"
#include "ktstr/util.h"

namespace ktstr::report {

using namespace detail;

namespace {
constexpr double EPS = 1e-12;
bool near_zero(double x) { return std::fabs(x) < EPS; }
} // namespace

const std::vector<MetricDef> &metric_registry() {
    static const std::vector<MetricDef> reg = {
        {"worst_spread", "%", 5, 0.25, false},
        {"worst_gap_ms", "ms", 500, 0.50, false},
        {"total_migrations", "", 10, 0.30, false},
        {"worst_migration_ratio", "", 0.05, 0.20, false},
        {"max_imbalance_ratio", "", 1.0, 0.25, false},
        {"max_dsq_depth", "", 10, 0.50, false},
        {"stall_count", "", 1, 0.50, false},
        {"total_fallback", "", 5, 0.30, false},
        {"total_keep_last", "", 5, 0.30, false},
        {"worst_p99_wake_latency_us", "us", 50, 0.25, false},
        {"worst_median_wake_latency_us", "us", 20, 0.25, false},
        {"worst_wake_latency_cv", "", 0.10, 0.25, false},
        {"worst_mean_run_delay_us", "us", 50, 0.25, false},
        {"worst_run_delay_us", "us", 100, 0.50, false},
        {"worst_wake_latency_tail_ratio", "", 0.5, 0.25, false},
        {"worst_cross_node_migration_ratio", "", 0.05, 0.20, false},
        {"total_iterations", "", 100, 0.10, true},
        {"worst_iterations_per_worker", "", 10, 0.10, true},
        {"worst_page_locality", "", 0.05, 0.10, true},
    };
    return reg;
}

const MetricDef *find_metric(const std::string &name) {
    for (const auto &m : metric_registry())
        if (name == m.name) return &m;
    return nullptr;
}

const char *change_name(Change c) {
    switch (c) {
    case Change::regression: return "regression";
    case Change::improvement: return "improvement";
    default: return "unchanged";
    }
}

// ---- rows ----------------------------------------------------------------------

std::vector<MetricRow> metric_rows(const Run &run, const EvaluateOptions &opt) {
    RunResult rr = evaluate_run(run, opt);
    std::vector<MetricRow> rows;
    for (const auto &sr : rr.scenarios) {
        const ScenarioRun &s = *sr.scenario;
        MetricRow row;
        row.scenario = s.name;
        row.topology = s.topology;
        row.scheduler = s.scheduler.empty() ? "eevdf" : s.scheduler;
        row.work_type = s.work_type;
        row.kernel = run.kernel;
        for (auto &f : s.flags) row.flags += (row.flags.empty() ? "" : "+") + f;
        row.source = run.label;
        row.passed = sr.verdict == Verdict::pass;
        row.skipped = sr.verdict == Verdict::skip;
        auto &m = row.metrics;
        if (!sr.cgroups.empty()) {
            double spread = 0, gap = 0, mig = 0, ratio = 0, iters = 0, ipw = 0;
            double p99 = 0, med = 0, cv = 0, mean_delay = 0, worst_delay = 0;
            bool wake = false, delay = false;
            for (const auto &c : sr.cgroups) {
                spread = std::max(spread, c.spread_pct);
                gap = std::max(gap, static_cast<double>(c.max_gap_ms));
                mig += static_cast<double>(c.migrations);
                ratio = std::max(ratio, c.migration_ratio);
                iters += static_cast<double>(c.iterations);
                if (c.workers && c.iterations) {
                    double per = static_cast<double>(c.iterations) / static_cast<double>(c.workers);
                    ipw = ipw == 0 ? per : std::min(ipw, per);
                }
                if (c.wake_samples) {
                    wake = true;
                    p99 = std::max(p99, c.p99_wake_us);
                    med = std::max(med, c.median_wake_us);
                    cv = std::max(cv, c.wake_cv);
                }
                if (c.worst_run_delay_us > 0) {
                    delay = true;
                    mean_delay = std::max(mean_delay, c.mean_run_delay_us);
                    worst_delay = std::max(worst_delay, c.worst_run_delay_us);
                }
            }
            m["worst_spread"] = spread;
            m["worst_gap_ms"] = gap;
            m["total_migrations"] = mig;
            m["worst_migration_ratio"] = ratio;
            m["total_iterations"] = iters;
            m["worst_iterations_per_worker"] = ipw;
            if (wake) {
                m["worst_p99_wake_latency_us"] = p99;
                m["worst_median_wake_latency_us"] = med;
                m["worst_wake_latency_cv"] = cv;
                if (iters >= 100) m["worst_wake_latency_tail_ratio"] = med > 0 ? p99 / med : 0;
            }
            if (delay) {
                m["worst_mean_run_delay_us"] = mean_delay;
                m["worst_run_delay_us"] = worst_delay;
            }
        }
        if (run.monitor.present && rr.monitor.verdict.evaluated) {
            const monitor::Summary &ms = rr.monitor.summary;
            m["max_imbalance_ratio"] = ms.max_imbalance_ratio;
            m["max_dsq_depth"] = ms.max_local_dsq_depth;
            m["stall_count"] = ms.stall_detected ? 1 : 0;
            if (ms.event_deltas) {
                m["total_fallback"] = static_cast<double>((*ms.event_deltas)[monitor::SCX_EV_SELECT_CPU_FALLBACK]);
                m["total_keep_last"] = static_cast<double>((*ms.event_deltas)[monitor::SCX_EV_DISPATCH_KEEP_LAST]);
            }
        }
        // Producer-computed metrics: registry names override ours, the rest
        // ride as ext_metrics.
        auto absorb = [&](const json &obj) {
            if (!obj.is_object()) return;
            for (auto it = obj.begin(); it != obj.end(); ++it) {
                if (!it.value().is_number()) continue;
                double v = it.value().get<double>();
                if (!std::isfinite(v)) continue;
                if (find_metric(it.key())) m[it.key()] = v;
                else row.ext_metrics[it.key()] = v;
            }
        };
        if (s.stats.is_object()) {
            if (s.stats.contains("ext_metrics")) absorb(s.stats["ext_metrics"]);
            for (const auto &def : metric_registry())
                if (s.stats.contains(def.name) && s.stats[def.name].is_number()) m[def.name] = s.stats[def.name].get<double>();
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

// ---- policy ---------------------------------------------------------------------

ComparePolicy parse_policy(const json &doc, const std::string &where, ComparePolicy p) {
    if (!doc.is_object()) fail(ErrorKind::input, where, ": policy must be a JSON object");
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &k = it.key();
        if (k == "schema") continue;
        if (k == "default_percent") {
            if (!it->is_number() || it->get<double>() < 0)
                fail(ErrorKind::input, where, ": default_percent must be a non-negative number");
            p.default_pct = it->get<double>();
        } else if (k == "per_metric_percent") {
            if (!it->is_object()) fail(ErrorKind::input, where, ": per_metric_percent must be an object {metric: percent}");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!find_metric(m.key())) {
                    std::string names;
                    for (auto &d : metric_registry()) names += (names.empty() ? "" : ", ") + std::string(d.name);
                    fail(ErrorKind::input, where, ": per_metric_percent: unknown metric '", m.key(), "' (known: ", names, ")");
                }
                if (!m->is_number() || m->get<double>() < 0)
                    fail(ErrorKind::input, where, ": per_metric_percent.", m.key(), " must be a non-negative number");
                p.per_metric_pct[m.key()] = m->get<double>();
            }
        } else {
            fail(ErrorKind::input, where, ": unknown policy field '", k, "' (default_percent, per_metric_percent)");
        }
    }
    return p;
}

// ---- statistics -------------------------------------------------------------------

Change classify(const MetricDef &def, double a, double b, double rel_gate, double *rel_out) {
    double delta = b - a;
    double rel = near_zero(a) ? 0 : std::fabs(delta) / std::fabs(a);
    if (rel_out) *rel_out = rel;
    if (near_zero(a) && near_zero(b)) return Change::unchanged;
    if (near_zero(delta)) return Change::unchanged;
    bool significant = std::fabs(delta) >= def.abs_gate && rel >= rel_gate;
    if (!significant) return Change::unchanged;
    bool worse = def.higher_is_better ? delta < 0 : delta > 0;
    return worse ? Change::regression : Change::improvement;
}

double sample_sd(const std::vector<double> &v) {
    if (v.size() < 2) return 0;
    double mean = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

std::optional<double> mann_whitney_p(const std::vector<double> &a, const std::vector<double> &b) {
    const size_t n1 = a.size(), n2 = b.size();
    if (n1 < 3 || n2 < 3) return std::nullopt;
    std::vector<std::pair<double, int>> all;
    for (double x : a) all.push_back({x, 0});
    for (double x : b) all.push_back({x, 1});
    std::sort(all.begin(), all.end(), [](auto &x, auto &y) { return x.first < y.first; });
    const double n = static_cast<double>(all.size());
    double r1 = 0, tie_term = 0;
    for (size_t i = 0; i < all.size();) {
        size_t j = i;
        while (j + 1 < all.size() && all[j + 1].first == all[i].first) ++j;
        double midrank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
        double t = static_cast<double>(j - i + 1);
        tie_term += t * t * t - t;
        for (size_t k = i; k <= j; ++k)
            if (all[k].second == 0) r1 += midrank;
        i = j + 1;
    }
    const double dn1 = static_cast<double>(n1), dn2 = static_cast<double>(n2);
    double u1 = r1 - dn1 * (dn1 + 1) / 2;
    double mu = dn1 * dn2 / 2;
    double var = dn1 * dn2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)));
    if (!(var > EPS)) return 1.0;   // every value tied: no evidence of a difference
    double z = std::max(0.0, std::fabs(u1 - mu) - 0.5) / std::sqrt(var);
    double p = std::erfc(z / std::sqrt(2.0));
    return std::clamp(p, 0.0, 1.0);
}

// ---- comparison ------------------------------------------------------------------------

namespace {

struct Side {
    std::vector<const MetricRow *> rows;
};

const char *const DIMS[] = {"topology", "scheduler", "kernel", "work_type", "flags"};

const std::string &dim_of(const MetricRow &r, const std::string &d) {
    if (d == "topology") return r.topology;
    if (d == "scheduler") return r.scheduler;
    if (d == "kernel") return r.kernel;
    if (d == "work_type") return r.work_type;
    return r.flags;
}

std::string key_of(const MetricRow &r, const std::vector<std::string> &slicing) {
    std::string k = r.scenario;
    for (const char *d : DIMS) {
        if (std::find(slicing.begin(), slicing.end(), d) != slicing.end()) continue;
        const std::string &v = dim_of(r, d);
        if (!v.empty()) k += "/" + v;
    }
    return k;
}

double rel_gate_for(const std::string &metric, double registry, const ComparePolicy &p) {
    if (p.threshold_pct) return *p.threshold_pct / 100.0;
    auto it = p.per_metric_pct.find(metric);
    if (it != p.per_metric_pct.end()) return it->second / 100.0;
    if (p.default_pct) return *p.default_pct / 100.0;
    return registry;
}

std::string signed_num(double v) {
    double av = std::fabs(v);
    const char *f = av != 0 && (av < 0.01 || av >= 1e7) ? "%+.3g" : av == std::floor(av) ? "%+.0f" : "%+.3f";
    return fmtd(f, v);
}

std::string num(double v) {
    double av = std::fabs(v);
    const char *f = av != 0 && (av < 0.01 || av >= 1e7) ? "%.3g" : av == std::floor(av) ? "%.0f" : "%.3f";
    return fmtd(f, v);
}

} // namespace

CompareResult compare(const std::vector<MetricRow> &a, const std::vector<MetricRow> &b, const ComparePolicy &policy) {
    CompareResult res;
    // 1. slicing dimensions: those whose values differ between the sides
    for (const char *d : DIMS) {
        std::set<std::string> va, vb;
        for (auto &r : a) va.insert(dim_of(r, d));
        for (auto &r : b) vb.insert(dim_of(r, d));
        if (va != vb) res.slicing_dims.push_back(d);
    }
    std::map<std::string, Side> sa, sb;
    for (auto &r : a) sa[key_of(r, res.slicing_dims)].rows.push_back(&r);
    for (auto &r : b) sb[key_of(r, res.slicing_dims)].rows.push_back(&r);
    res.total_a = a.size();
    res.total_b = b.size();
    for (auto &r : a) res.pass_a += r.passed && !r.skipped;
    for (auto &r : b) res.pass_b += r.passed && !r.skipped;
    if (!policy.average) {
        for (auto *m : {&sa, &sb})
            for (auto &[k, s] : *m)
                if (s.rows.size() > 1)
                    fail(ErrorKind::input, "--no-average: ", s.rows.size(), " runs of '", k, "' on side ", m == &sa ? "A" : "B",
                         " (", s.rows[0]->source, ", ", s.rows[1]->source, "...); drop --no-average to average them");
    }
    for (auto &[k, s] : sb)
        if (!sa.count(k)) res.added.push_back(k);
    for (auto &[k, s] : sa)
        if (!sb.count(k)) res.removed.push_back(k);

    for (auto &[key, side_a] : sa) {
        auto itb = sb.find(key);
        if (itb == sb.end()) continue;
        const Side &side_b = itb->second;
        auto clean = [](const Side &s) {
            return std::all_of(s.rows.begin(), s.rows.end(), [](const MetricRow *r) { return r->passed && !r->skipped; });
        };
        if (!clean(side_a) || !clean(side_b)) {
            res.dropped.push_back(key);
            continue;
        }
        // every metric either side reports; missing reads as 0
        std::set<std::string> names, ext;
        for (const Side *s : std::array<const Side *, 2>{&side_a, &side_b})
            for (auto *r : s->rows) {
                for (auto &[n, v] : r->metrics) names.insert(n);
                for (auto &[n, v] : r->ext_metrics) ext.insert(n);
            }
        auto values = [](const Side &s, const std::string &n, bool is_ext) {
            std::vector<double> v;
            for (auto *r : s.rows) {
                const auto &m = is_ext ? r->ext_metrics : r->metrics;
                auto it = m.find(n);
                v.push_back(it == m.end() ? 0.0 : it->second);
            }
            return v;
        };
        auto mean = [](const std::vector<double> &v) {
            double s = 0;
            bool integral = true;
            for (double x : v) { s += x; integral = integral && x == std::floor(x); }
            double m = v.empty() ? 0 : s / static_cast<double>(v.size());
            return integral ? std::round(m) : m;   // averaged integer metrics stay integers
        };
        auto add_row = [&](const std::string &n, const MetricDef &def) {
            bool is_ext = !find_metric(n);
            std::vector<double> va = values(side_a, n, is_ext), vb = values(side_b, n, is_ext);
            MetricCompare c;
            c.key = key;
            c.metric = n;
            c.unit = def.unit;
            c.a = mean(va);
            c.b = mean(vb);
            if (near_zero(c.a) && near_zero(c.b)) return;   // both ~0: nothing to say
            c.delta = c.b - c.a;
            c.abs_gate = def.abs_gate;
            c.rel_gate = rel_gate_for(n, def.rel_gate, policy);
            c.change = classify(def, c.a, c.b, c.rel_gate, &c.rel);
            c.n_a = va.size();
            c.n_b = vb.size();
            c.sd_a = sample_sd(va);
            c.sd_b = sample_sd(vb);
            c.p_value = mann_whitney_p(va, vb);
            switch (c.change) {
            case Change::regression: ++res.regressions; break;
            case Change::improvement: ++res.improvements; break;
            default: ++res.unchanged;
            }
            res.rows.push_back(std::move(c));
        };
        for (const auto &def : metric_registry())
            if (names.count(def.name)) add_row(def.name, def);
        for (const auto &n : ext) {
            MetricDef def{"", "", 0, 0.25, false};
            add_row(n, def);
        }
    }
    return res;
}

std::string render_compare_text(const CompareResult &c) {
    std::ostringstream o;
    auto pad = [](std::string s, size_t w, bool right) {
        if (s.size() >= w) return s + " ";
        return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
    };
    if (!c.slicing_dims.empty()) {
        o << "comparing across:";
        for (auto &d : c.slicing_dims) o << " " << d;
        o << "\n";
    }
    size_t wk = 4;
    for (auto &r : c.rows) wk = std::max(wk, r.key.size());
    o << pad("TEST", wk + 2, false) << pad("METRIC", 32, false) << pad("A", 12, true) << pad("B", 12, true) << "  "
      << pad("DELTA", 26, false) << "VERDICT\n";
    auto delta_text = [&](const MetricCompare &r) {
        std::string d = signed_num(r.delta) + (r.unit.empty() ? "" : " " + r.unit);
        if (!near_zero(r.a)) d += cat(" (", fmtd("%+.1f%%", 100.0 * r.delta / std::fabs(r.a)), ")");
        return d;
    };
    for (auto &r : c.rows) {
        std::string a = num(r.a), b = num(r.b);
        if (r.n_a > 1) a += cat("±", num(r.sd_a));
        if (r.n_b > 1) b += cat("±", num(r.sd_b));
        o << pad(r.key, wk + 2, false) << pad(r.metric, 32, false) << pad(a, 12, true) << pad(b, 12, true) << "  "
          << pad(delta_text(r), 26, false) << change_name(r.change);
        if (r.p_value) o << fmtd("  p=%.3f", *r.p_value);
        o << "\n";
    }
    for (Change which : {Change::regression, Change::improvement}) {
        bool any = false;
        for (auto &r : c.rows) {
            if (r.change != which) continue;
            if (!any) o << "\n" << (which == Change::regression ? "regressed:" : "improved:") << "\n";
            any = true;
            o << "  " << r.key << " " << r.metric << ": " << num(r.a) << " -> " << num(r.b) << (r.unit.empty() ? "" : " " + r.unit)
              << " (" << delta_text(r) << "; gates " << num(r.abs_gate) << (r.unit.empty() ? "" : " " + r.unit) << " and "
              << fmtd("%.0f%%", r.rel_gate * 100) << ")\n";
        }
    }
    o << "\n" << c.regressions << " regressions, " << c.improvements << " improvements, " << c.unchanged << " unchanged\n";
    o << "passed: A " << c.pass_a << "/" << c.total_a << ", B " << c.pass_b << "/" << c.total_b << "\n";
    auto list = [&](const char *what, const std::vector<std::string> &v) {
        if (v.empty()) return;
        o << what << " (" << v.size() << "):";
        for (auto &k : v) o << " " << k;
        o << "\n";
    };
    list("new in B", c.added);
    list("removed in B", c.removed);
    list("not compared, a side failed or was skipped", c.dropped);
    return o.str();
}

ojson render_compare_json(const CompareResult &c) {
    ojson d = make_doc("report", 1);
    d["kind"] = "compare";
    d["slicing_dims"] = c.slicing_dims;
    ojson rows = ojson::array();
    for (auto &r : c.rows) {
        ojson j = {{"test", r.key}, {"metric", r.metric}, {"unit", r.unit}, {"a", r.a}, {"b", r.b}, {"delta", r.delta},
                   {"rel", r.rel}, {"abs_gate", r.abs_gate}, {"rel_gate", r.rel_gate}, {"n_a", r.n_a}, {"n_b", r.n_b},
                   {"sd_a", r.sd_a}, {"sd_b", r.sd_b}};
        j["p_value"] = r.p_value ? ojson(*r.p_value) : ojson(nullptr);
        j["verdict"] = change_name(r.change);
        rows.push_back(j);
    }
    d["rows"] = rows;
    d["regressions"] = c.regressions;
    d["improvements"] = c.improvements;
    d["unchanged"] = c.unchanged;
    d["passed"] = {{"a", c.pass_a}, {"a_total", c.total_a}, {"b", c.pass_b}, {"b_total", c.total_b}};
    d["added"] = c.added;
    d["removed"] = c.removed;
    d["dropped"] = c.dropped;
    return d;
}

} // namespace ktstr::report
