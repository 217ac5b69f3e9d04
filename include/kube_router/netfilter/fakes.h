// Stateful in-memory fakes of the netfilter interfaces for unit tests. They keep a copy of
// the kernel state, enforce the kernel's rules that matter to callers (a jump needs its target
// chain, a referenced chain cannot be deleted, a swapped set keeps its type) and fail on
// demand, so a test asserts the resulting state instead of a call sequence.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::netfilter {

class FakeIptables : public Iptables {
 public:
  explicit FakeIptables(IpFamily family = IpFamily::kV4);

  IpFamily family() const override { return family_; }
  Result<TableSnapshot> Save(const std::string& table) override;
  Status Apply(const TableUpdate& update) override;

  // The next `count` calls (Save or Apply) fail without changing anything.
  void FailNext(int count = 1) { fail_next_ = count; }
  // Direct access, e.g. to add foreign chains or simulate drift.
  TableSnapshot& table(const std::string& name) { return tables_[name]; }
  int apply_calls() const { return apply_calls_; }
  int save_calls() const { return save_calls_; }
  const TableUpdate& last_update() const { return last_update_; }
  // Called after every successful Apply, e.g. to check an invariant between tables and sets
  // at each intermediate kernel state.
  void AfterEachApply(std::function<void()> check) { after_apply_ = std::move(check); }

 private:
  IpFamily family_;
  std::function<void()> after_apply_;
  std::map<std::string, TableSnapshot> tables_;
  int fail_next_ = 0;
  int apply_calls_ = 0;
  int save_calls_ = 0;
  TableUpdate last_update_;
};

class FakeIpset : public Ipset {
 public:
  Result<std::vector<std::string>> ListNames() override;
  Result<std::map<std::string, IpsetSet>> List() override;
  Status Apply(const IpsetUpdate& update) override;

  void FailNext(int count = 1) { fail_next_ = count; }
  std::map<std::string, IpsetSet>& sets() { return sets_; }
  // Destroying a set that a rule of `iptables` references (`--match-set NAME`) fails, as in
  // the kernel.
  void CheckReferencesIn(FakeIptables* iptables) { iptables_ = iptables; }
  int apply_calls() const { return apply_calls_; }
  // Sets that were rebuilt (swapped) or created by `replace` in all calls so far.
  int replaced_sets() const { return replaced_sets_; }
  const IpsetUpdate& last_update() const { return last_update_; }
  void AfterEachApply(std::function<void()> check) { after_apply_ = std::move(check); }

 private:
  std::map<std::string, IpsetSet> sets_;
  std::function<void()> after_apply_;
  FakeIptables* iptables_ = nullptr;
  int fail_next_ = 0;
  int apply_calls_ = 0;
  int replaced_sets_ = 0;
  IpsetUpdate last_update_;
};

}  // namespace kr::netfilter
