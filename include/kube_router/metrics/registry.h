// A small Prometheus registry: counters, gauges and histograms with constant label sets,
// rendered in the text exposition format (version 0.0.4). Thread-safe; metric objects are
// owned by the registry and live as long as it does, so callers may keep references.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kr::metrics {

using LabelSet = std::map<std::string, std::string>;

class Counter {
 public:
  virtual ~Counter() = default;
  virtual void Inc(double by = 1) = 0;
  virtual double Value() const = 0;
};

class Gauge {
 public:
  virtual ~Gauge() = default;
  virtual void Set(double v) = 0;
  virtual void Add(double by) = 0;
  virtual double Value() const = 0;
};

class Histogram {
 public:
  virtual ~Histogram() = default;
  virtual void Observe(double v) = 0;
  virtual uint64_t Count() const = 0;
};

class Registry {
 public:
  // The process-wide registry served on /metrics.
  static Registry& Default();

  Registry();
  ~Registry();

  // Same name + labels returns the same object; the first help text of a name is the one
  // rendered. A name registered with another type is a programming error: it asserts in debug
  // builds, and in release builds is logged and gets an object that is never rendered.
  Counter& GetCounter(const std::string& name, const std::string& help,
                      const LabelSet& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help, const LabelSet& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const std::vector<double>& buckets, const LabelSet& labels = {});
  // Drops one labelled series (e.g. a BGP peer that was removed).
  void RemoveSeries(const std::string& name, const LabelSet& labels);

  // Collect-on-scrape: families computed at each Render from outside state (e.g. a kernel
  // dump). A collector runs on the scraping thread without the registry lock (it may use this
  // registry), must be thread-safe and bounded in time; its families are rendered with the
  // registered ones in name order. A collected name that is also registered is dropped (logged).
  struct Sample {
    LabelSet labels;
    double value = 0;
  };
  // The compact form for many series whose label sets several families share (one set per
  // IPVS service in ten families): the label texts rendered once (LabelText), shared by the
  // families, and per sample an index into them. A scrape at 10k services then holds one
  // string per label set instead of a map per sample.
  using LabelTexts = std::vector<std::string>;
  struct IndexedSample {
    uint32_t label = 0;  // index into CollectedFamily::label_texts
    double value = 0;
  };
  struct CollectedFamily {
    std::string name;
    std::string help;
    bool counter = false;  // counter or gauge
    std::vector<Sample> samples;
    // Rendered after `samples`; an index outside label_texts renders no labels.
    std::shared_ptr<const LabelTexts> label_texts;
    std::vector<IndexedSample> indexed;
  };
  // `labels` as the exposition renders them: `{a="1",b="2"}` (keys sorted, values escaped);
  // empty for no labels.
  static std::string LabelText(const LabelSet& labels);
  using Collector = std::function<std::vector<CollectedFamily>()>;
  // Returns an id for RemoveCollector; after RemoveCollector returns, the collector is not
  // running and is never called again.
  int AddCollector(Collector collector);
  void RemoveCollector(int id);

  // Prometheus text format, families sorted by name.
  std::string Render() const;

  // Default buckets for durations in seconds (Prometheus' defaults).
  static std::vector<double> DefaultBuckets();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kr::metrics
