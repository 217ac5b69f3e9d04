// SPDX-License-Identifier: Apache-2.0
#include "object_store.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "lib/timestamp.h"

namespace fake_apiserver {
namespace {

std::string Now() { return kr::testing::UtcTimestamp(std::time(nullptr)); }

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string NewUid() {
  std::string h = RandomHex(16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string MetaString(const json& object, const char* field) {
  auto m = object.find("metadata");
  if (m == object.end() || !m->is_object()) return "";
  auto f = m->find(field);
  return (f != m->end() && f->is_string()) ? f->get<std::string>() : "";
}

// Value at a dotted field path ("spec.nodeName"), "" when absent.
std::string FieldAt(const json& object, const std::string& path) {
  const json* cur = &object;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return "";
    auto it = cur->find(part);
    if (it == cur->end()) return "";
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_boolean() || cur->is_number()) return cur->dump();
  return "";
}

bool TermMatches(const Filter::Term& t, bool present, const std::string& value) {
  if (t.op == "exists") return present;
  if (t.op == "!exists") return !present;
  if (t.op == "=") return present && value == t.value;
  return !present || value != t.value;  // "!="
}

// Strategic merge patch directives ($patch, $retainKeys, $setElementOrder/...) are dropped:
// for the maps kubectl label/annotate touch, a strategic merge is a plain merge.
json StripDirectives(const json& patch) {
  if (!patch.is_object()) return patch;
  json out = json::object();
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (!it.key().empty() && it.key()[0] == '$') continue;
    out[it.key()] = StripDirectives(*it);
  }
  return out;
}

std::string EncodeContinue(uint64_t rv, const std::string& after_key) {
  return json{{"rv", rv}, {"after", after_key}}.dump();
}

}  // namespace

json StatusBody(const ApiError& e) {
  json body = {{"kind", "Status"},    {"apiVersion", "v1"},   {"metadata", json::object()},
               {"status", "Failure"}, {"message", e.message}, {"reason", e.reason},
               {"code", e.code}};
  if (!e.field.empty()) {
    body["details"] = {
        {"name", e.details_name},
        {"kind", e.details_kind},
        {"causes", json::array({{{"reason", e.cause},
                                 {"message", e.cause_message.empty() ? e.message : e.cause_message},
                                 {"field", e.field}}})}};
  } else if (!e.cause.empty()) {
    body["details"] = {{"causes", json::array({{{"type", e.cause}, {"message", e.message}}})},
                       {"retryAfterSeconds", 1}};
  }
  return body;
}

bool Filter::Matches(const json& object) const {
  if (!namespace_.empty() && MetaString(object, "namespace") != namespace_) return false;
  const json* labels = nullptr;
  auto m = object.find("metadata");
  if (m != object.end() && m->is_object()) {
    auto l = m->find("labels");
    if (l != m->end() && l->is_object()) labels = &*l;
  }
  for (const auto& t : this->labels) {
    bool present = labels && labels->contains(t.key) && (*labels)[t.key].is_string();
    std::string value = present ? (*labels)[t.key].get<std::string>() : "";
    if (!TermMatches(t, present, value)) return false;
  }
  for (const auto& t : fields) {
    std::string value = FieldAt(object, t.key);
    // Field selectors compare against the empty string for absent fields.
    if (!TermMatches(t, true, value)) return false;
  }
  return true;
}

Outcome<std::vector<Filter::Term>> ParseSelector(const std::string& text) {
  std::vector<Filter::Term> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    std::string term =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? text.size() : comma + 1;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(' '));
      s.erase(s.find_last_not_of(' ') + 1);
      return s;
    };
    term = trim(term);
    if (term.empty()) continue;
    if (term.find('(') != std::string::npos)
      return ApiError{400, "BadRequest", "set-based selectors are not supported: " + term};
    Filter::Term t;
    size_t pos;
    if ((pos = term.find("!=")) != std::string::npos) {
      t = {trim(term.substr(0, pos)), "!=", trim(term.substr(pos + 2))};
    } else if ((pos = term.find("==")) != std::string::npos) {
      t = {trim(term.substr(0, pos)), "=", trim(term.substr(pos + 2))};
    } else if ((pos = term.find('=')) != std::string::npos) {
      t = {trim(term.substr(0, pos)), "=", trim(term.substr(pos + 1))};
    } else if (term[0] == '!') {
      t = {trim(term.substr(1)), "!exists", ""};
    } else {
      t = {term, "exists", ""};
    }
    if (t.key.empty()) return ApiError{400, "BadRequest", "invalid selector term: " + term};
    out.push_back(t);
  }
  return out;
}

ObjectStore::ObjectStore(size_t history_limit) : history_limit_(history_limit) {}

void ObjectStore::EnableServiceAllocation(const ServiceRanges& ranges) {
  std::lock_guard lock(mu_);
  services_ = std::make_unique<ServiceAllocator>(ranges);
}

namespace {
bool IsService(const ResourceType& type) { return type.group.empty() && type.kind == "Service"; }
}  // namespace

std::optional<ApiError> ObjectStore::AdmitLocked(const ResourceType& type, json* object,
                                                 const json* old) {
  if (!services_ || !IsService(type)) return std::nullopt;
  return services_->Admit(object, old);
}

void ObjectStore::ReleaseLocked(const ResourceType& type, const json& object) {
  if (services_ && IsService(type)) services_->Release(object);
}

std::string ObjectStore::Key(const ResourceType& type, const std::string& ns,
                             const std::string& name) {
  return type.namespaced ? ns + "/" + name : name;
}

json ObjectStore::Commit(const ResourceType& type, const std::string& event_type, json object) {
  ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  history_.push_back({Id(type), WatchEvent{rv_, event_type, object}});
  while (history_.size() > history_limit_) {
    compacted_rv_ = history_.front().event.rv;
    history_.pop_front();
  }
  changed_.notify_all();
  return object;
}

Outcome<json> ObjectStore::Load(const ResourceType& type, json object) {
  if (!object.is_object()) return ApiError{400, "BadRequest", "manifest item is not an object"};
  std::string name = MetaString(object, "name");
  if (name.empty()) return ApiError{422, "Invalid", "metadata.name is required"};
  std::string ns = MetaString(object, "namespace");
  if (type.namespaced && ns.empty()) ns = "default";
  std::lock_guard lock(mu_);
  object["apiVersion"] = type.ApiVersion();
  object["kind"] = type.kind;
  if (type.namespaced) object["metadata"]["namespace"] = ns;
  if (MetaString(object, "uid").empty()) object["metadata"]["uid"] = NewUid();
  if (MetaString(object, "creationTimestamp").empty())
    object["metadata"]["creationTimestamp"] = Now();
  auto& objects = objects_[Id(type)];
  std::string key = Key(type, ns, name);
  bool existed = objects.count(key) > 0;
  if (services_ && IsService(type)) {
    if (existed) services_->Release(objects[key]);
    services_->Restore(&object);
  }
  if (!history_.empty()) {  // loaded after changes happened: an ordinary event
    json stored = Commit(type, existed ? "MODIFIED" : "ADDED", std::move(object));
    objects[key] = stored;
    return stored;
  }
  // Restored state at start-up, not a change: no history copy (at 10k Services x 10k slices the
  // copies doubled the server's memory and start time). Like a server restored from a compacted
  // etcd, a watch from before this RV answers 410 and a watch from "0" gets synthetic ADDEDs.
  ++rv_;
  compacted_rv_ = rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  json& stored = objects[key];
  stored = std::move(object);
  changed_.notify_all();
  return stored;
}

Outcome<json> ObjectStore::Create(const ResourceType& type, const std::string& ns, json object) {
  if (!object.is_object()) return ApiError{400, "BadRequest", "body is not a JSON object"};
  if (!object.contains("metadata") || !object["metadata"].is_object())
    object["metadata"] = json::object();
  std::string body_ns = MetaString(object, "namespace");
  if (type.namespaced && !body_ns.empty() && body_ns != ns)
    return ApiError{400, "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"};
  std::string name = MetaString(object, "name");
  if (name.empty()) {
    std::string prefix = MetaString(object, "generateName");
    if (prefix.empty())
      return ApiError{422, "Invalid", type.kind + " is invalid: metadata.name: Required value"};
    name = prefix + RandomHex(3).substr(0, 5);
    object["metadata"]["name"] = name;
  }
  std::lock_guard lock(mu_);
  auto& objects = objects_[Id(type)];
  std::string key = Key(type, ns, name);
  if (objects.count(key))
    return ApiError{409, "AlreadyExists", type.plural + " \"" + name + "\" already exists"};
  object["apiVersion"] = type.ApiVersion();
  object["kind"] = type.kind;
  if (type.namespaced) object["metadata"]["namespace"] = ns;
  object["metadata"]["uid"] = NewUid();
  object["metadata"]["creationTimestamp"] = Now();
  if (auto e = AdmitLocked(type, &object, nullptr)) return *e;
  json stored = Commit(type, "ADDED", std::move(object));
  objects[key] = stored;
  return stored;
}

Outcome<json> ObjectStore::Get(const ResourceType& type, const std::string& ns,
                               const std::string& name) {
  std::lock_guard lock(mu_);
  auto& objects = objects_[Id(type)];
  auto it = objects.find(Key(type, ns, name));
  if (it == objects.end())
    return ApiError{404, "NotFound", type.plural + " \"" + name + "\" not found"};
  return it->second;
}

Outcome<json> ObjectStore::Update(const ResourceType& type, const std::string& ns,
                                  const std::string& name, json object, bool status_only) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object())
    return ApiError{400, "BadRequest", "body is not an object with metadata"};
  if (MetaString(object, "name") != name)
    return ApiError{400, "BadRequest", "the name of the object does not match the name on the URL"};
  std::lock_guard lock(mu_);
  auto& objects = objects_[Id(type)];
  auto it = objects.find(Key(type, ns, name));
  if (it == objects.end())
    return ApiError{404, "NotFound", type.plural + " \"" + name + "\" not found"};
  const json& current = it->second;
  std::string want_rv = MetaString(object, "resourceVersion");
  if (!want_rv.empty() && want_rv != MetaString(current, "resourceVersion"))
    return ApiError{409, "Conflict",
                    "Operation cannot be fulfilled on " + type.plural + " \"" + name +
                        "\": the object has been modified; please apply your changes to the "
                        "latest version and try again"};
  json next;
  if (status_only) {
    next = current;
    if (object.contains("status")) next["status"] = object["status"];
  } else {
    next = std::move(object);
    if (current.contains("status"))
      next["status"] = current["status"];
    else
      next.erase("status");
  }
  // Identity fields are owned by the server.
  for (const char* f : {"uid", "creationTimestamp", "namespace", "deletionTimestamp",
                        "deletionGracePeriodSeconds"}) {
    if (current["metadata"].contains(f)) next["metadata"][f] = current["metadata"][f];
  }
  next["apiVersion"] = type.ApiVersion();
  next["kind"] = type.kind;
  if (!status_only) {
    if (auto e = AdmitLocked(type, &next, &current)) return *e;
  }
  if (next == current) return current;  // a no-op update keeps the resourceVersion
  json stored = Commit(type, "MODIFIED", std::move(next));
  it->second = stored;
  return stored;
}

Outcome<json> ObjectStore::Patch(const ResourceType& type, const std::string& ns,
                                 const std::string& name, PatchType patch_type, const json& patch,
                                 bool status_only) {
  json current;
  {
    auto got = Get(type, ns, name);
    if (auto* e = std::get_if<ApiError>(&got)) return *e;
    current = std::get<json>(got);
  }
  json next = current;
  try {
    switch (patch_type) {
      case PatchType::kJsonPatch:
        next = current.patch(patch);
        break;
      case PatchType::kStrategicMerge:
        next.merge_patch(StripDirectives(patch));
        break;
      case PatchType::kMerge:
        next.merge_patch(patch);
        break;
    }
  } catch (const std::exception& e) {
    return ApiError{422, "Invalid", std::string("cannot apply patch: ") + e.what()};
  }
  if (!next.is_object() || !next.contains("metadata") || !next["metadata"].is_object())
    return ApiError{422, "Invalid", "patch removed metadata"};
  // A resourceVersion in the patch is a precondition; otherwise patch the latest version.
  std::string want_rv = MetaString(next, "resourceVersion");
  if (want_rv == MetaString(current, "resourceVersion")) next["metadata"].erase("resourceVersion");
  if (MetaString(next, "name") != name)
    return ApiError{422, "Invalid", "metadata.name cannot be changed by a patch"};
  return Update(type, ns, name, std::move(next), status_only);
}

namespace {
bool IsPod(const ResourceType& type) { return type.group.empty() && type.kind == "Pod"; }

// kube-apiserver's grace period for deleting `pod`: the request's, else the pod's
// terminationGracePeriodSeconds (default 30); 0 for a pod no node runs or that has ended.
int64_t PodGracePeriod(const json& pod, std::optional<int64_t> requested) {
  json spec = pod.value("spec", json::object());
  std::string phase = pod.value("status", json::object()).value("phase", "");
  if (!spec.is_object() || spec.value("nodeName", "").empty() || phase == "Succeeded" ||
      phase == "Failed")
    return 0;
  if (requested) return *requested;
  const json& own = spec.contains("terminationGracePeriodSeconds")
                        ? spec["terminationGracePeriodSeconds"]
                        : json();
  return own.is_number_integer() && own.get<int64_t>() >= 0 ? own.get<int64_t>() : 30;
}

std::string TimestampIn(int64_t seconds) {
  return kr::testing::UtcTimestamp(std::time(nullptr) + seconds);
}
}  // namespace

void ObjectStore::EnableGracefulPodDeletion() {
  std::lock_guard lock(mu_);
  graceful_pods_ = true;
}

Outcome<json> ObjectStore::Delete(const ResourceType& type, const std::string& ns,
                                  const std::string& name, std::optional<int64_t> grace_seconds) {
  std::lock_guard lock(mu_);
  auto& objects = objects_[Id(type)];
  std::string key = Key(type, ns, name);
  auto it = objects.find(key);
  if (it == objects.end())
    return ApiError{404, "NotFound", type.plural + " \"" + name + "\" not found"};
  if (graceful_pods_ && IsPod(type)) {
    int64_t grace = PodGracePeriod(it->second, grace_seconds);
    if (grace > 0) {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace);
      auto terminating = pod_deadlines_.find(key);
      // Already terminating and ending no later: nothing changes (a shorter period shortens).
      if (terminating != pod_deadlines_.end() && terminating->second <= deadline) return it->second;
      json next = it->second;
      next["metadata"]["deletionTimestamp"] = TimestampIn(grace);
      next["metadata"]["deletionGracePeriodSeconds"] = grace;
      pod_deadlines_[key] = deadline;
      json stored = Commit(type, "MODIFIED", std::move(next));
      it->second = stored;
      return stored;
    }
  }
  pod_deadlines_.erase(key);
  ReleaseLocked(type, it->second);
  json last = Commit(type, "DELETED", it->second);
  objects.erase(it);
  return last;
}

size_t ObjectStore::ReapTerminatingPods(std::chrono::steady_clock::time_point now) {
  const ResourceType* pods = FindByKind("v1", "Pod");
  std::lock_guard lock(mu_);
  if (pod_deadlines_.empty() || !pods) return 0;
  auto& objects = objects_[Id(*pods)];
  size_t removed = 0;
  for (auto d = pod_deadlines_.begin(); d != pod_deadlines_.end();) {
    if (d->second > now) {
      ++d;
      continue;
    }
    auto it = objects.find(d->first);
    if (it != objects.end()) {
      Commit(*pods, "DELETED", it->second);
      objects.erase(it);
      ++removed;
    }
    d = pod_deadlines_.erase(d);
  }
  return removed;
}

Outcome<json> ObjectStore::List(const ResourceType& type, const Filter& filter, size_t limit,
                                const std::string& continue_token) {
  std::lock_guard lock(mu_);
  uint64_t list_rv = rv_;
  std::string after;
  if (!continue_token.empty()) {
    json token = json::parse(continue_token, nullptr, false);
    if (token.is_discarded() || !token.is_object() || !token.contains("rv") ||
        !token["rv"].is_number_unsigned() || !token.contains("after") ||
        !token["after"].is_string())
      return ApiError{400, "BadRequest", "invalid continue token"};
    list_rv = token["rv"].get<uint64_t>();
    after = token["after"].get<std::string>();
    // A token from before a restart (its RV is beyond ours) is as unusable as a compacted one.
    if (list_rv < compacted_rv_ || list_rv > rv_)
      return ApiError{410, "Expired",
                      "The provided continue parameter is too old to display a consistent list "
                      "result. You can start a new list without the continue parameter."};
  }
  json items = json::array();
  std::string next_after;
  auto& objects = objects_[Id(type)];
  for (auto it = after.empty() ? objects.begin() : objects.upper_bound(after); it != objects.end();
       ++it) {
    if (!filter.Matches(it->second)) continue;
    if (limit > 0 && items.size() == limit) {
      next_after = std::prev(it)->first;
      break;
    }
    json item = it->second;
    // Like the real server, list items carry no kind/apiVersion.
    item.erase("kind");
    item.erase("apiVersion");
    items.push_back(std::move(item));
  }
  json list = {{"kind", type.ListKind()},
               {"apiVersion", type.ApiVersion()},
               {"metadata", {{"resourceVersion", std::to_string(list_rv)}}},
               {"items", std::move(items)}};
  if (!next_after.empty()) list["metadata"]["continue"] = EncodeContinue(list_rv, next_after);
  return list;
}

uint64_t ObjectStore::CurrentRv() {
  std::lock_guard lock(mu_);
  return rv_;
}

std::optional<ApiError> ObjectStore::CheckWatchable(uint64_t rv) {
  std::lock_guard lock(mu_);
  if (rv < compacted_rv_)
    return ApiError{410, "Expired",
                    "too old resource version: " + std::to_string(rv) + " (" +
                        std::to_string(compacted_rv_ + 1) + ")"};
  return std::nullopt;
}

std::vector<WatchEvent> ObjectStore::Snapshot(const ResourceType& type, const Filter& filter,
                                              uint64_t* at_rv) {
  std::lock_guard lock(mu_);
  std::vector<WatchEvent> out;
  for (const auto& [key, obj] : objects_[Id(type)]) {
    if (filter.Matches(obj)) out.push_back(WatchEvent{rv_, "ADDED", obj});
  }
  *at_rv = rv_;
  return out;
}

ObjectStore::WaitResult ObjectStore::WaitEvents(const ResourceType& type, const Filter& filter,
                                                uint64_t after_rv, const WatchSignals& seen,
                                                std::chrono::steady_clock::time_point deadline,
                                                std::vector<WatchEvent>* out) {
  std::unique_lock lock(mu_);
  std::string id = Id(type);
  auto signals_changed = [&] {
    return signals_.drop != seen.drop || signals_.close != seen.close ||
           signals_.expire != seen.expire || signals_.bookmark != seen.bookmark ||
           signals_.stop != seen.stop;
  };
  changed_.wait_until(lock, deadline, [&] { return rv_ > after_rv || signals_changed(); });
  WaitResult result{signals_, rv_, after_rv < compacted_rv_};
  if (result.too_old) return result;
  // History is ordered by RV: skip to the first entry after `after_rv`.
  auto first = std::partition_point(history_.begin(), history_.end(),
                                    [&](const HistoryEntry& h) { return h.event.rv <= after_rv; });
  for (auto it = first; it != history_.end(); ++it) {
    if (it->resource == id && filter.Matches(it->event.object)) out->push_back(it->event);
  }
  return result;
}

WatchSignals ObjectStore::Signals() {
  std::lock_guard lock(mu_);
  return signals_;
}

std::optional<ApiError> ObjectStore::WaitForRv(uint64_t rv,
                                               std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  if (changed_.wait_until(lock, deadline, [&] { return rv_ >= rv; })) return std::nullopt;
  return ApiError{
      504, "Timeout",
      "Too large resource version: " + std::to_string(rv) + ", current: " + std::to_string(rv_),
      "ResourceVersionTooLarge"};
}

void ObjectStore::RestartWithResetResourceVersions() {
  std::lock_guard lock(mu_);
  rv_ = 1;
  for (auto& [resource, objects] : objects_) {
    for (auto& [key, object] : objects)
      object["metadata"]["resourceVersion"] = std::to_string(++rv_);
  }
  history_.clear();
  compacted_rv_ = rv_;
  ++signals_.drop;
  changed_.notify_all();
}

void ObjectStore::Compact() {
  std::lock_guard lock(mu_);
  compacted_rv_ = rv_;
  history_.clear();
  changed_.notify_all();
}

void ObjectStore::DropWatches() {
  std::lock_guard lock(mu_);
  ++signals_.drop;
  changed_.notify_all();
}
void ObjectStore::CloseWatches() {
  std::lock_guard lock(mu_);
  ++signals_.close;
  changed_.notify_all();
}
void ObjectStore::ExpireWatches(const ApiError& error) {
  std::lock_guard lock(mu_);
  ++signals_.expire;
  signals_.expire_error = error;
  changed_.notify_all();
}
void ObjectStore::BookmarkNow() {
  std::lock_guard lock(mu_);
  ++signals_.bookmark;
  changed_.notify_all();
}
void ObjectStore::StopAll() {
  std::lock_guard lock(mu_);
  ++signals_.stop;
  changed_.notify_all();
}

}  // namespace fake_apiserver
