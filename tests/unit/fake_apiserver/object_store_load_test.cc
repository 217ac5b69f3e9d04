// fake-apiserver's start-up load (--manifests): restored state, not events. The objects are
// listed and a watch from "0" sees them, but they take no history (at 10k Services x 10k slices
// the history copies doubled the server's memory and start time), so a watch from an RV before
// them answers 410 instead of silently missing them; a Load after a change is an event again.
#include <gtest/gtest.h>

#include "object_store.h"

namespace fake_apiserver::object_store_load_test {
namespace {

const ResourceType& Services() { return *FindByPath("", "v1", "services"); }

json Svc(const std::string& name) {
  return {{"metadata", {{"name", name}, {"namespace", "demo"}}}, {"spec", json::object()}};
}

std::vector<WatchEvent> EventsAfter(ObjectStore& store, uint64_t rv, bool* too_old) {
  std::vector<WatchEvent> out;
  auto r = store.WaitEvents(Services(), Filter{}, rv, store.Signals(),
                            std::chrono::steady_clock::now(), &out);
  *too_old = r.too_old;
  return out;
}

TEST(ObjectStoreLoadTest, StartUpLoadIsRestoredStateWithoutHistory) {
  ObjectStore store;
  const uint64_t before = store.CurrentRv();
  ASSERT_TRUE(std::holds_alternative<json>(store.Load(Services(), Svc("a"))));
  ASSERT_TRUE(std::holds_alternative<json>(store.Load(Services(), Svc("b"))));
  const uint64_t loaded = store.CurrentRv();
  EXPECT_EQ(loaded, before + 2);

  auto list = store.List(Services(), Filter{}, 0, "");
  ASSERT_TRUE(std::holds_alternative<json>(list));
  EXPECT_EQ(std::get<json>(list)["items"].size(), 2u);
  EXPECT_EQ(std::get<json>(list)["metadata"]["resourceVersion"], std::to_string(loaded));
  uint64_t at = 0;
  EXPECT_EQ(store.Snapshot(Services(), Filter{}, &at).size(), 2u);
  EXPECT_EQ(at, loaded);

  bool too_old = false;
  EventsAfter(store, before, &too_old);
  EXPECT_TRUE(too_old) << "a watch from before the load must not silently miss the objects";
  EXPECT_TRUE(store.CheckWatchable(before).has_value());
  EXPECT_FALSE(store.CheckWatchable(loaded).has_value());
  EXPECT_TRUE(EventsAfter(store, loaded, &too_old).empty());
  EXPECT_FALSE(too_old);

  // Changes after the load are events, and so is a later Load.
  ASSERT_TRUE(std::holds_alternative<json>(store.Create(Services(), "demo", Svc("c"))));
  ASSERT_TRUE(std::holds_alternative<json>(store.Load(Services(), Svc("a"))));
  auto events = EventsAfter(store, loaded, &too_old);
  EXPECT_FALSE(too_old);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, "ADDED");
  EXPECT_EQ(events[0].object["metadata"]["name"], "c");
  EXPECT_EQ(events[1].type, "MODIFIED");
  EXPECT_EQ(events[1].object["metadata"]["name"], "a");
}

}  // namespace
}  // namespace fake_apiserver::object_store_load_test
