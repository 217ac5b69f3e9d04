// Decorators over the real netfilter adapters that count writes, so a test can assert that a
// sync wrote nothing.
#pragma once

#include <memory>

#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::testing {

class CountingIptables : public netfilter::Iptables {
 public:
  explicit CountingIptables(std::unique_ptr<netfilter::Iptables> real) : real_(std::move(real)) {}
  netfilter::IpFamily family() const override { return real_->family(); }
  Result<netfilter::TableSnapshot> Save(const std::string& table) override {
    return real_->Save(table);
  }
  Status Apply(const netfilter::TableUpdate& update) override {
    ++writes;
    return real_->Apply(update);
  }
  int writes = 0;

 private:
  std::unique_ptr<netfilter::Iptables> real_;
};

class CountingIpset : public netfilter::Ipset {
 public:
  explicit CountingIpset(std::unique_ptr<netfilter::Ipset> real) : real_(std::move(real)) {}
  Result<std::vector<std::string>> ListNames() override { return real_->ListNames(); }
  Result<std::map<std::string, netfilter::IpsetSet>> List() override { return real_->List(); }
  Status Apply(const netfilter::IpsetUpdate& update) override {
    ++writes;
    return real_->Apply(update);
  }
  int writes = 0;

 private:
  std::unique_ptr<netfilter::Ipset> real_;
};

}  // namespace kr::testing
