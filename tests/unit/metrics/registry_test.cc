#include "kube_router/metrics/registry.h"

#include <gtest/gtest.h>

#include <thread>

namespace kr::metrics {
namespace {

TEST(Registry, SameNameAndLabelsIsTheSameObject) {
  Registry r;
  Counter& a = r.GetCounter("kube_router_things_total", "Things.", {{"kind", "a"}});
  Counter& b = r.GetCounter("kube_router_things_total", "Things.", {{"kind", "a"}});
  Counter& c = r.GetCounter("kube_router_things_total", "Things.", {{"kind", "b"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.Inc();
  b.Inc(2);
  EXPECT_EQ(a.Value(), 3);
  EXPECT_EQ(c.Value(), 0);
}

TEST(Registry, RendersCountersAndGaugesSortedByName) {
  Registry r;
  r.GetGauge("kube_router_z_gauge", "Last one.").Set(-2.5);
  r.GetCounter("kube_router_a_total", "First one.", {{"b", "2"}, {"a", "x\"y\\z\nw"}}).Inc(7);
  EXPECT_EQ(r.Render(),
            "# HELP kube_router_a_total First one.\n"
            "# TYPE kube_router_a_total counter\n"
            "kube_router_a_total{a=\"x\\\"y\\\\z\\nw\",b=\"2\"} 7\n"
            "# HELP kube_router_z_gauge Last one.\n"
            "# TYPE kube_router_z_gauge gauge\n"
            "kube_router_z_gauge -2.5\n");
}

TEST(Registry, CounterIgnoresNegativeIncrements) {
  Registry r;
  Counter& c = r.GetCounter("c_total", "C.");
  c.Inc(5);
  c.Inc(-3);
  EXPECT_EQ(c.Value(), 5);
}

TEST(Registry, HistogramBucketsAreCumulative) {
  Registry r;
  Histogram& h = r.GetHistogram("kube_router_sync_time", "Sync.", {1, 0.1, 10});
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0}) h.Observe(v);
  EXPECT_EQ(h.Count(), 5u);
  EXPECT_EQ(r.Render(),
            "# HELP kube_router_sync_time Sync.\n"
            "# TYPE kube_router_sync_time histogram\n"
            "kube_router_sync_time_bucket{le=\"0.1\"} 1\n"
            "kube_router_sync_time_bucket{le=\"1\"} 3\n"
            "kube_router_sync_time_bucket{le=\"10\"} 4\n"
            "kube_router_sync_time_bucket{le=\"+Inf\"} 5\n"
            "kube_router_sync_time_sum 56.05\n"
            "kube_router_sync_time_count 5\n");
}

TEST(Registry, RemovedSeriesDisappearButStayValid) {
  Registry r;
  Gauge& peer = r.GetGauge("kube_router_bgp_peer_info", "Peers.", {{"address", "10.0.0.1"}});
  r.GetGauge("kube_router_bgp_peer_info", "Peers.", {{"address", "10.0.0.2"}}).Set(1);
  r.RemoveSeries("kube_router_bgp_peer_info", {{"address", "10.0.0.1"}});
  peer.Set(3);  // still safe to use
  std::string text = r.Render();
  EXPECT_EQ(text.find("10.0.0.1"), std::string::npos) << text;
  EXPECT_NE(text.find("10.0.0.2"), std::string::npos) << text;
  r.RemoveSeries("kube_router_bgp_peer_info", {{"address", "10.0.0.2"}});
  EXPECT_EQ(r.Render(), "");  // a family without series is not rendered
}

TEST(Registry, ConcurrentUpdatesAreNotLost) {
  Registry r;
  Counter& c = r.GetCounter("c_total", "C.");
  Histogram& h = r.GetHistogram("h", "H.", Registry::DefaultBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        h.Observe(0.01);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000);
  EXPECT_EQ(h.Count(), 40000u);
}

TEST(Registry, CollectorsRenderOnScrapeInNameOrderUntilRemoved) {
  Registry r;
  r.GetGauge("b_gauge", "B.").Set(1);
  r.GetCounter("d_total", "D.").Inc();
  int scrapes = 0;
  int id = r.AddCollector([&] {
    ++scrapes;
    Registry::CollectedFamily c{"c_total", "Collected \"c\".", true, {}};
    c.samples.push_back({{{"vip", "10.96.0.1"}}, 42});
    Registry::CollectedFamily clash{"b_gauge", "Clash.", false, {{{}, 7}}};
    Registry::CollectedFamily empty{"e_gauge", "Empty.", false, {}};
    // A collector may use the registry it runs in (no deadlock).
    r.GetGauge("a_gauge", "A.").Set(scrapes);
    return std::vector<Registry::CollectedFamily>{c, clash, empty};
  });
  std::string text = r.Render();
  EXPECT_EQ(scrapes, 1);
  EXPECT_EQ(text,
            "# HELP a_gauge A.\n# TYPE a_gauge gauge\na_gauge 1\n"
            "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge 1\n"
            "# HELP c_total Collected \"c\".\n# TYPE c_total counter\n"
            "c_total{vip=\"10.96.0.1\"} 42\n"
            "# HELP d_total D.\n# TYPE d_total counter\nd_total 1\n");
  r.RemoveCollector(id);
  text = r.Render();
  EXPECT_EQ(scrapes, 1);
  EXPECT_EQ(text.find("c_total"), std::string::npos) << text;
}

// The compact form (label texts shared by families, an index per sample) renders the same bytes
// as a label map per sample, escapes included; an index past the texts renders no labels.
TEST(Registry, IndexedSamplesRenderLikeLabelledOnes) {
  const std::vector<LabelSet> sets = {
      {{"vip", "10.96.0.1"}, {"port", "80"}}, {{"name", "a\\b\"c\nd"}}, {}};
  Registry labelled;
  labelled.AddCollector([&] {
    Registry::CollectedFamily f{"x_total", "X \\ \"help\"\n.", true, {}};
    for (size_t i = 0; i < sets.size(); ++i) f.samples.push_back({sets[i], 1.5 * i});
    f.samples.push_back({{}, 1e300});
    return std::vector<Registry::CollectedFamily>{f};
  });
  Registry indexed;
  indexed.AddCollector([&] {
    auto texts = std::make_shared<Registry::LabelTexts>();
    for (const auto& set : sets) texts->push_back(Registry::LabelText(set));
    Registry::CollectedFamily f{"x_total", "X \\ \"help\"\n.", true, {}, texts, {}};
    for (uint32_t i = 0; i < sets.size(); ++i) f.indexed.push_back({i, 1.5 * i});
    f.indexed.push_back({99, 1e300});
    return std::vector<Registry::CollectedFamily>{f};
  });
  const std::string text = indexed.Render();
  EXPECT_EQ(text, labelled.Render());
  EXPECT_NE(text.find("x_total{name=\"a\\\\b\\\"c\\nd\"} 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_total{port=\"80\",vip=\"10.96.0.1\"} 0\n"), std::string::npos) << text;
}

TEST(Registry, DefaultIsASingleton) { EXPECT_EQ(&Registry::Default(), &Registry::Default()); }

}  // namespace
}  // namespace kr::metrics
