#include <gtest/gtest.h>

#include <chrono>

#include "kube_router/runtime/runner.h"

namespace kr {
namespace {

using k8s::Event;
using k8s::EventType;
using k8s::ResourceKind;

Event PodEvent(EventType type, const std::string& key, const std::string& old_ip,
               const std::string& new_ip) {
  Event e;
  e.kind = ResourceKind::kPod;
  e.type = type;
  e.key = key;
  auto make = [&](const std::string& ip) -> k8s::AnyObject {
    if (ip.empty()) return std::monostate{};
    auto pod = std::make_shared<k8s::Pod>();
    pod->pod_ips = {ip};
    return std::shared_ptr<const k8s::Pod>(pod);
  };
  e.old_object = make(old_ip);
  e.new_object = make(new_ip);
  return e;
}

std::string Ip(const k8s::AnyObject& o) {
  auto* pod = std::get_if<std::shared_ptr<const k8s::Pod>>(&o);
  return pod ? std::string((*pod)->pod_ip()) : "";
}

TEST(Inbox, KeepsFirstArrivalOrderAcrossObjects) {
  Inbox inbox;
  inbox.Push(PodEvent(EventType::kAdded, "ns/b", "", "1"));
  inbox.Push(PodEvent(EventType::kAdded, "ns/a", "", "2"));
  Event node = PodEvent(EventType::kAdded, "ns/b", "", "");
  node.kind = ResourceKind::kNode;  // same key, other kind: another object
  inbox.Push(node);
  auto events = inbox.TakeAll();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].key, "ns/b");
  EXPECT_EQ(events[1].key, "ns/a");
  EXPECT_EQ(events[2].kind, ResourceKind::kNode);
  EXPECT_TRUE(inbox.empty());
}

// The index of pending objects keys on the entry's own copy of the key (it holds no copy of its
// own), never on the pushed event's: a caller's event reused for another object after Push
// leaves the pending one found, and dropping or taking entries leaves none behind.
TEST(Inbox, FindsAPendingObjectAfterThePushedEventChanged) {
  Inbox inbox;
  Event e = PodEvent(EventType::kAdded, "ns/a", "", "1");
  inbox.Push(e);
  e.key = "ns/z";  // same length: an index viewing the caller's string would now read "ns/z"
  e.new_object = PodEvent(EventType::kAdded, "", "", "2").new_object;
  inbox.Push(e);                                                // another object
  inbox.Push(PodEvent(EventType::kUpdated, "ns/a", "1", "3"));  // merges into the first
  ASSERT_EQ(inbox.size(), 2u);
  inbox.Push(PodEvent(EventType::kDeleted, "ns/z", "2", ""));  // Added then Deleted: gone
  ASSERT_EQ(inbox.size(), 1u);
  EXPECT_EQ(inbox.DropUpTo(inbox.last_sequence()).size(), 1u);
  EXPECT_TRUE(inbox.empty());
  inbox.Push(PodEvent(EventType::kUpdated, "ns/a", "3", "4"));  // a new entry, not a stale one
  auto events = inbox.TakeAll();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kUpdated);
  EXPECT_EQ(Ip(events[0].new_object), "4");
  inbox.Push(PodEvent(EventType::kAdded, "ns/a", "", "5"));
  EXPECT_EQ(inbox.size(), 1u);
}

TEST(Inbox, CoalescesEventsOfOneObject) {
  struct Case {
    std::string name;
    std::vector<Event> pushed;
    bool dropped;
    EventType type;
    std::string old_ip, new_ip;
  };
  const Case cases[] = {
      {"add+update",
       {PodEvent(EventType::kAdded, "k", "", "1"), PodEvent(EventType::kUpdated, "k", "1", "2")},
       false,
       EventType::kAdded,
       "",
       "2"},
      {"add+delete",
       {PodEvent(EventType::kAdded, "k", "", "1"), PodEvent(EventType::kDeleted, "k", "1", "")},
       true,
       EventType::kAdded,
       "",
       ""},
      {"update+update",
       {PodEvent(EventType::kUpdated, "k", "0", "1"), PodEvent(EventType::kUpdated, "k", "1", "2")},
       false,
       EventType::kUpdated,
       "0",
       "2"},
      {"update+delete",
       {PodEvent(EventType::kUpdated, "k", "0", "1"), PodEvent(EventType::kDeleted, "k", "1", "")},
       false,
       EventType::kDeleted,
       "0",
       ""},
      {"delete+add",
       {PodEvent(EventType::kDeleted, "k", "0", ""), PodEvent(EventType::kAdded, "k", "", "5")},
       false,
       EventType::kUpdated,
       "0",
       "5"},
      {"add+update+delete+add",
       {PodEvent(EventType::kAdded, "k", "", "1"), PodEvent(EventType::kUpdated, "k", "1", "2"),
        PodEvent(EventType::kDeleted, "k", "2", ""), PodEvent(EventType::kAdded, "k", "", "3")},
       false,
       EventType::kAdded,
       "",
       "3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Inbox inbox;
    for (const Event& e : c.pushed) inbox.Push(e);
    auto events = inbox.TakeAll();
    if (c.dropped) {
      EXPECT_TRUE(events.empty());
      continue;
    }
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, c.type);
    EXPECT_EQ(Ip(events[0].old_object), c.old_ip);
    EXPECT_EQ(Ip(events[0].new_object), c.new_ip);
  }
}

// Added then Deleted cancels out only while no sync can have seen the object: after a sync
// started (or while one runs) the controller may have programmed it and must hear of its end.
TEST(Inbox, AddedThenDeletedAroundASyncIsADeletion) {
  Inbox inbox;
  inbox.Push(PodEvent(EventType::kAdded, "seen", "", "1"));
  inbox.SyncStarted();
  inbox.Push(PodEvent(EventType::kAdded, "during", "", "2"));
  inbox.SyncEnded();
  inbox.Push(PodEvent(EventType::kAdded, "unseen", "", "5"));
  inbox.Push(PodEvent(EventType::kUpdated, "seen", "1", "3"));
  inbox.Push(PodEvent(EventType::kDeleted, "seen", "3", ""));
  inbox.Push(PodEvent(EventType::kDeleted, "during", "2", ""));
  inbox.Push(PodEvent(EventType::kDeleted, "unseen", "5", ""));
  auto events = inbox.TakeAll();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].key, "seen");
  EXPECT_EQ(events[0].type, EventType::kDeleted);
  EXPECT_EQ(Ip(events[0].old_object), "3");  // the last known object
  EXPECT_EQ(Ip(events[0].new_object), "");
  EXPECT_EQ(events[1].key, "during");
  EXPECT_EQ(events[1].type, EventType::kDeleted);
  EXPECT_EQ(Ip(events[1].old_object), "2");

  // Re-added before the controller took it: new to the controller again, without old state.
  inbox.Push(PodEvent(EventType::kAdded, "k", "", "1"));
  inbox.SyncStarted();
  inbox.SyncEnded();
  inbox.Push(PodEvent(EventType::kDeleted, "k", "1", ""));
  inbox.Push(PodEvent(EventType::kAdded, "k", "", "4"));
  events = inbox.TakeAll();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kAdded);
  EXPECT_EQ(Ip(events[0].old_object), "");
  EXPECT_EQ(Ip(events[0].new_object), "4");
}

// DropUpTo drops what a full read covered: entries whose latest change came at or before it.
// It hands them back with their first arrival (the oldest change each spans), for the
// controller's latency figures.
TEST(Inbox, DropUpToKeepsEntriesChangedAfterTheRead) {
  Inbox inbox;
  const Inbox::Clock::time_point t0{};
  auto at = [&](int seconds) { return t0 + std::chrono::seconds(seconds); };
  inbox.Push(PodEvent(EventType::kAdded, "a", "", "1"), at(1));
  inbox.Push(PodEvent(EventType::kAdded, "b", "", "1"), at(2));
  inbox.Push(PodEvent(EventType::kUpdated, "c", "0", "1"), at(3));
  inbox.Push(PodEvent(EventType::kUpdated, "a", "1", "7"), at(4));  // merged: still arrived at 1
  const uint64_t read = inbox.last_sequence();
  inbox.Push(PodEvent(EventType::kUpdated, "b", "1", "2"), at(5));  // merged: newer than the read
  inbox.Push(PodEvent(EventType::kAdded, "d", "", "1"), at(6));
  auto dropped = inbox.DropUpTo(read);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[0].key, "a");
  EXPECT_EQ(Ip(dropped[0].new_object), "7");
  EXPECT_EQ(dropped[0].arrived, at(1));
  EXPECT_EQ(dropped[1].key, "c");
  EXPECT_EQ(dropped[1].arrived, at(3));
  auto events = inbox.TakeAll();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].key, "b");
  EXPECT_EQ(Ip(events[0].new_object), "2");
  EXPECT_EQ(events[0].arrived, at(2));  // its first arrival, not the merged push at 5
  EXPECT_EQ(events[1].key, "d");
  EXPECT_EQ(events[1].arrived, at(6));
  // A dropped object is a new entry when it changes again, arriving anew.
  inbox.Push(PodEvent(EventType::kUpdated, "a", "1", "5"), at(8));
  EXPECT_EQ(inbox.DropUpTo(inbox.last_sequence()).at(0).arrived, at(8));
}

}  // namespace
}  // namespace kr
