// OwnedLists: the extensions' per-Service lists as one name table and one flat list of rows,
// against a std::map of vectors (what it replaced), through replacements of a few owners (in
// place) and of many (one merge).
#include "kube_router/proxy/owned_lists.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace kr::proxy::owned_lists_test {
namespace {

using Lists = OwnedLists<int>;
using Reference = std::map<ServiceName, std::vector<int>>;

ServiceName Name(int i) { return {"ns-" + std::to_string(i % 7), "svc-" + std::to_string(i)}; }

// Everything the lists hold, in the order ForEach gives it, checked against `want`.
void ExpectSame(const Lists& lists, const Reference& want, const std::string& where) {
  Reference got;
  std::vector<ServiceName> order;
  size_t rows = 0;
  lists.ForEach([&](const ServiceName& name, std::span<const int> entries) {
    order.push_back(name);
    got[name].assign(entries.begin(), entries.end());
    rows += entries.size();
  });
  EXPECT_EQ(got, want) << where;
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << where;
  EXPECT_EQ(order.size(), got.size()) << where << ": an owner twice";
  EXPECT_EQ(lists.owners(), want.size()) << where;
  EXPECT_EQ(lists.rows(), rows) << where;
  for (const auto& [name, entries] : want) {
    auto span = lists.Get(name);
    EXPECT_EQ(std::vector<int>(span.begin(), span.end()), entries) << where << " " << name.name;
  }
}

TEST(OwnedLists, AnOwnersListIsReplacedGrownShrunkAndRemovedWithoutTouchingItsNeighbours) {
  Lists lists;
  Reference want;
  auto replace = [&](Lists::Batch batch) {
    for (const auto& [name, entries] : batch) {
      if (entries.empty()) {
        want.erase(name);
      } else {
        want[name] = entries;
      }
    }
    lists.Replace(std::move(batch));
  };
  replace({{Name(1), {1, 2}}, {Name(2), {3, 4}}, {Name(3), {5, 6}}});
  ExpectSame(lists, want, "three");
  replace({{Name(2), {7, 8}}});  // same length
  ExpectSame(lists, want, "replaced");
  replace({{Name(2), {9, 10, 11, 12}}});  // longer
  ExpectSame(lists, want, "grown");
  replace({{Name(2), {13}}});  // shorter
  ExpectSame(lists, want, "shrunk");
  replace({{Name(2), {}}});  // gone
  ExpectSame(lists, want, "removed");
  EXPECT_TRUE(lists.Get(Name(2)).empty());
  replace({{Name(4), {}}});  // never there: nothing
  ExpectSame(lists, want, "removed again");
  // Two owners with the same entry each keep theirs; an owner named twice keeps its last.
  replace({{Name(5), {1}}, {Name(5), {42}}, {Name(2), {1}}});
  ExpectSame(lists, want, "shared");
  EXPECT_EQ(lists.Get(Name(5)).size(), 1u);
  EXPECT_EQ(lists.Get(Name(5))[0], 42);
  lists.Clear();
  EXPECT_TRUE(lists.empty());
  EXPECT_EQ(lists.rows(), 0u);
}

// Random batches of 1 to 40 owners (in place up to 16, merged above) of 60 names, lists of 0 to
// 4 entries, an owner sometimes named twice (the last list counts): the lists always hold what a
// map of vectors given the same batches holds, and freed names' ids are handed out again.
TEST(OwnedLists, RandomBatchesOfFewAndManyOwnersMatchAMapOfVectors) {
  std::mt19937 rng(14);
  Lists lists;
  Reference want;
  for (int step = 0; step < 400; ++step) {
    const int owners = step % 5 == 0 ? 17 + static_cast<int>(rng() % 24) : 1 + rng() % 16;
    Lists::Batch batch;
    for (int i = 0; i < owners; ++i) {
      const int name = static_cast<int>(rng() % 60);
      std::vector<int> entries(rng() % 5);
      for (auto& e : entries) e = static_cast<int>(rng() % 100);
      batch.emplace_back(Name(name), entries);
    }
    for (const auto& [name, entries] : batch) {  // in batch order: the last one wins
      if (entries.empty()) {
        want.erase(name);
      } else {
        want[name] = entries;
      }
    }
    lists.Replace(std::move(batch));
    ExpectSame(lists, want, "step " + std::to_string(step));
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace kr::proxy::owned_lists_test
