// Prometheus text exposition format 0.0.4, written from the format's documentation:
// https://prometheus.io/docs/instrumenting/exposition_formats/
#include "kube_router/metrics/registry.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <charconv>
#include <cmath>
#include <list>

#include "kube_router/base/log.h"

namespace kr::metrics {
namespace {

enum class Type { kCounter, kGauge, kHistogram };

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void AtomicAdd(std::atomic<double>& target, double by) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + by, std::memory_order_relaxed)) {
  }
}

class CounterImpl : public Counter {
 public:
  void Inc(double by) override {
    if (by < 0) return;  // a counter never goes down
    AtomicAdd(value_, by);
  }
  double Value() const override { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class GaugeImpl : public Gauge {
 public:
  void Set(double v) override { value_.store(v, std::memory_order_relaxed); }
  void Add(double by) override { AtomicAdd(value_, by); }
  double Value() const override { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class HistogramImpl : public Histogram {
 public:
  explicit HistogramImpl(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

  void Observe(double v) override {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < bounds_.size(); ++i) {
      if (v <= bounds_[i]) {
        ++counts_[i];
        break;
      }
    }
    ++count_;
    sum_ += v;
  }
  uint64_t Count() const override {
    std::lock_guard lock(mu_);
    return count_;
  }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Take() const {
    std::lock_guard lock(mu_);
    Snapshot s;
    uint64_t running = 0;
    for (uint64_t c : counts_) s.cumulative.push_back(running += c);
    s.count = count_;
    s.sum = sum_;
    return s;
  }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Numbers and label values are appended straight to the output: a scrape at 10k services
// renders ~100k lines, and per-line temporaries were most of its time.
void AppendNumber(double v, std::string& out) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    if (ec == std::errc()) {
      out.append(buf, end);
    } else {
      out += "NaN";
    }
  }
}

std::string FormatNumber(double v) {
  std::string out;
  AppendNumber(v, out);
  return out;
}

void AppendEscaped(const std::string& text, bool quote, std::string& out) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

std::string Escape(const std::string& text, bool quote) {
  std::string out;
  AppendEscaped(text, quote, out);
  return out;
}

// `{a="1",b="2"}` plus an optional extra label (le for buckets); nothing when no labels.
void AppendLabels(const LabelSet& labels, std::string& out, const std::string& extra_name = "",
                  const std::string& extra_value = "") {
  bool first = true;
  auto add = [&](const std::string& k, const std::string& v) {
    out += first ? '{' : ',';
    first = false;
    out += k;
    out += "=\"";
    AppendEscaped(v, true, out);
    out += '"';
  };
  for (const auto& [k, v] : labels) add(k, v);
  if (!extra_name.empty()) add(extra_name, extra_value);
  if (!first) out += '}';
}

std::string FormatLabels(const LabelSet& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  std::string out;
  AppendLabels(labels, out, extra_name, extra_value);
  return out;
}

}  // namespace

struct Registry::Impl {
  struct Family {
    Type type;
    std::string help;
    std::vector<double> buckets;
    std::map<LabelSet, std::unique_ptr<Counter>> counters;
    std::map<LabelSet, std::unique_ptr<Gauge>> gauges;
    std::map<LabelSet, std::unique_ptr<HistogramImpl>> histograms;
  };

  mutable std::mutex mu;
  std::map<std::string, Family> families;
  // Collectors: guarded by collect_mu, which a scrape holds while they run (so RemoveCollector
  // waits for a running collector); never taken under mu.
  mutable std::mutex collect_mu;
  std::map<int, Collector> collectors;
  int next_collector = 1;
  // Objects handed out but no longer rendered (removed series, misuse): callers may still
  // hold references, so they live as long as the registry.
  std::list<std::unique_ptr<Counter>> retired_counters;
  std::list<std::unique_ptr<Gauge>> retired_gauges;
  std::list<std::unique_ptr<Histogram>> retired_histograms;

  // The family for `name`, or null when it exists with another type (a programming error).
  Family* FamilyFor(const std::string& name, Type type, const std::string& help) {
    auto [it, inserted] = families.try_emplace(name, Family{type, help, {}, {}, {}, {}});
    if (!inserted && it->second.type != type) {
      KR_LOG_ERROR("metric {} registered as {} and as {}", name, TypeName(it->second.type),
                   TypeName(type));
      assert(false && "metric registered twice with different types");
      return nullptr;
    }
    return &it->second;
  }
};

Registry& Registry::Default() {
  // Never destroyed: threads may still update metrics while the process exits.
  static Registry* registry = new Registry();
  return *registry;
}

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

Counter& Registry::GetCounter(const std::string& name, const std::string& help,
                              const LabelSet& labels) {
  std::lock_guard lock(impl_->mu);
  Impl::Family* f = impl_->FamilyFor(name, Type::kCounter, help);
  if (!f) return *impl_->retired_counters.emplace_back(std::make_unique<CounterImpl>());
  auto& slot = f->counters[labels];
  if (!slot) slot = std::make_unique<CounterImpl>();
  return *slot;
}

Gauge& Registry::GetGauge(const std::string& name, const std::string& help,
                          const LabelSet& labels) {
  std::lock_guard lock(impl_->mu);
  Impl::Family* f = impl_->FamilyFor(name, Type::kGauge, help);
  if (!f) return *impl_->retired_gauges.emplace_back(std::make_unique<GaugeImpl>());
  auto& slot = f->gauges[labels];
  if (!slot) slot = std::make_unique<GaugeImpl>();
  return *slot;
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const std::vector<double>& buckets, const LabelSet& labels) {
  std::lock_guard lock(impl_->mu);
  Impl::Family* f = impl_->FamilyFor(name, Type::kHistogram, help);
  if (!f) return *impl_->retired_histograms.emplace_back(std::make_unique<HistogramImpl>(buckets));
  if (f->histograms.empty()) {
    // Bucket bounds are fixed per family; keep them sorted, unique and finite (+Inf is implied).
    f->buckets.clear();
    for (double b : buckets)
      if (std::isfinite(b)) f->buckets.push_back(b);
    std::sort(f->buckets.begin(), f->buckets.end());
    f->buckets.erase(std::unique(f->buckets.begin(), f->buckets.end()), f->buckets.end());
  }
  auto& slot = f->histograms[labels];
  if (!slot) slot = std::make_unique<HistogramImpl>(f->buckets);
  return *slot;
}

void Registry::RemoveSeries(const std::string& name, const LabelSet& labels) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->families.find(name);
  if (it == impl_->families.end()) return;
  Impl::Family& f = it->second;
  if (auto c = f.counters.find(labels); c != f.counters.end()) {
    impl_->retired_counters.push_back(std::move(c->second));
    f.counters.erase(c);
  }
  if (auto g = f.gauges.find(labels); g != f.gauges.end()) {
    impl_->retired_gauges.push_back(std::move(g->second));
    f.gauges.erase(g);
  }
  if (auto h = f.histograms.find(labels); h != f.histograms.end()) {
    impl_->retired_histograms.push_back(std::move(h->second));
    f.histograms.erase(h);
  }
}

int Registry::AddCollector(Collector collector) {
  std::lock_guard lock(impl_->collect_mu);
  int id = impl_->next_collector++;
  impl_->collectors[id] = std::move(collector);
  return id;
}

void Registry::RemoveCollector(int id) {
  std::lock_guard lock(impl_->collect_mu);
  impl_->collectors.erase(id);
}

namespace {

void RenderCollected(const Registry::CollectedFamily& f, std::string& out) {
  out += "# HELP " + f.name + " " + Escape(f.help, false) + "\n";
  out += "# TYPE " + f.name + " " + (f.counter ? "counter" : "gauge") + "\n";
  for (const auto& sample : f.samples) {
    out += f.name;
    AppendLabels(sample.labels, out);
    out += ' ';
    AppendNumber(sample.value, out);
    out += '\n';
  }
  const size_t texts = f.label_texts ? f.label_texts->size() : 0;
  for (const auto& sample : f.indexed) {
    out += f.name;
    if (sample.label < texts) out += (*f.label_texts)[sample.label];
    out += ' ';
    AppendNumber(sample.value, out);
    out += '\n';
  }
}

// The collected families' text, nearly exact (numbers counted at their longest), so the
// output is allocated once: at 10k services it is ~12 MiB, and doubling it as it grows would
// hold (and copy) half as much again.
size_t CollectedSize(const Registry::CollectedFamily& f) {
  constexpr size_t kNumber = 26;  // the longest double to_chars writes, plus " " and "\n"
  size_t size = 2 * (f.name.size() + 16) + f.help.size();
  size += f.samples.size() * (f.name.size() + 64 + kNumber);
  const size_t texts = f.label_texts ? f.label_texts->size() : 0;
  for (const auto& sample : f.indexed) {
    size += f.name.size() + kNumber +
            (sample.label < texts ? (*f.label_texts)[sample.label].size() : 0);
  }
  return size;
}

}  // namespace

std::string Registry::LabelText(const LabelSet& labels) { return FormatLabels(labels); }

std::string Registry::Render() const {
  std::map<std::string, CollectedFamily> collected;
  {
    std::lock_guard collect_lock(impl_->collect_mu);
    for (const auto& [id, collector] : impl_->collectors) {
      for (auto& family : collector()) {
        std::string name = family.name;
        if (family.samples.empty() && family.indexed.empty()) continue;
        if (!collected.try_emplace(name, std::move(family)).second) {
          KR_LOG_ERROR("metric {} collected twice; rendering the first", name);
        }
      }
    }
  }
  size_t size = 0;
  for (const auto& [name, family] : collected) size += CollectedSize(family);
  std::lock_guard lock(impl_->mu);
  std::string out;
  // (The registered families are a few hundred lines: they fit in what is left or in one growth.)
  out.reserve(size + 64 * 1024);
  auto next_collected = collected.begin();
  auto render_collected_before = [&](const std::string* name) {
    while (next_collected != collected.end() && (!name || next_collected->first < *name)) {
      if (impl_->families.contains(next_collected->first)) {
        KR_LOG_ERROR("metric {} is registered and collected; rendering the registered one",
                     next_collected->first);
      } else {
        RenderCollected(next_collected->second, out);
      }
      ++next_collected;
    }
  };
  for (const auto& [name, f] : impl_->families) {
    render_collected_before(&name);
    if (f.counters.empty() && f.gauges.empty() && f.histograms.empty()) continue;
    out += "# HELP " + name + " " + Escape(f.help, false) + "\n";
    out += "# TYPE " + name + " " + TypeName(f.type) + "\n";
    for (const auto& [labels, c] : f.counters) {
      out += name + FormatLabels(labels) + " " + FormatNumber(c->Value()) + "\n";
    }
    for (const auto& [labels, g] : f.gauges) {
      out += name + FormatLabels(labels) + " " + FormatNumber(g->Value()) + "\n";
    }
    for (const auto& [labels, h] : f.histograms) {
      HistogramImpl::Snapshot s = h->Take();
      for (size_t i = 0; i < h->bounds().size(); ++i) {
        out += name + "_bucket" + FormatLabels(labels, "le", FormatNumber(h->bounds()[i])) + " " +
               std::to_string(s.cumulative[i]) + "\n";
      }
      out += name + "_bucket" + FormatLabels(labels, "le", "+Inf") + " " + std::to_string(s.count) +
             "\n";
      out += name + "_sum" + FormatLabels(labels) + " " + FormatNumber(s.sum) + "\n";
      out += name + "_count" + FormatLabels(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  render_collected_before(nullptr);
  return out;
}

std::vector<double> Registry::DefaultBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace kr::metrics
