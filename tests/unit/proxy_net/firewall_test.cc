// The service proxy's VIP firewall, masquerade and hairpin over the stateful netfilter fakes.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <random>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/proxy/firewall_plan.h"
#include "kube_router/proxy/proxy_firewall.h"

namespace kr::proxy {
namespace {

using netfilter::FakeIpset;
using netfilter::FakeIptables;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netlink::IpvsProtocol;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
IpPrefix Net(const char* text) { return *IpPrefix::Parse(text); }

FirewallInput DualStackInput() {
  FirewallInput in;
  in.local_ips = {Ip("192.168.1.10"), Ip("127.0.0.1"), Ip("fd00:1::10")};
  in.services = {{Ip("10.96.0.10"), IpvsProtocol::kTcp, 53},
                 {Ip("10.96.0.10"), IpvsProtocol::kUdp, 53},
                 {Ip("10.96.0.20"), IpvsProtocol::kSctp, 9000},
                 {Ip("192.168.1.10"), IpvsProtocol::kTcp, 30080},
                 {Ip("fd00:96::10"), IpvsProtocol::kTcp, 443}};
  in.node_ips = {Ip("192.168.1.10"), Ip("fd00:1::10")};
  in.pod_cidrs = {Net("10.244.1.0/24"), Net("fd00:244:1::/64")};
  in.hairpin = {{Ip("10.244.1.5"), Ip("10.96.0.10"), 53}};
  return in;
}

class ProxyFirewallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ipset_.CheckReferencesIn(&v4_);
    // Checked at every intermediate kernel state, whichever adapter just wrote.
    v4_.AfterEachApply([this] { CheckInvariants(); });
    v6_.AfterEachApply([this] { CheckInvariants(); });
    ipset_.AfterEachApply([this] { CheckInvariants(); });
  }

  // A REJECT of non-local destinations never exists while its kube-router-local-ips is missing
  // or empty, and every set a rule names exists.
  void CheckInvariants() {
    ++checks_;
    for (auto [ipt, family] : {std::pair{&v4_, IpFamily::kV4}, std::pair{&v6_, IpFamily::kV6}}) {
      const auto& chains = ipt->table("filter").chains;
      auto chain = chains.find(kServicesChain);
      if (chain == chains.end()) continue;
      for (const auto& rule : chain->second) {
        if (rule.find("REJECT") == std::string::npos) continue;
        auto set = ipset_.sets().find(FamilySetName(kLocalIpsSet, family));
        ASSERT_NE(set, ipset_.sets().end()) << "REJECT without its local-ips set";
        EXPECT_FALSE(set->second.entries.empty())
            << "REJECT while " << set->first << " is empty: " << rule;
      }
      for (const auto& [name, rules] : chains) {
        for (const auto& rule : rules) {
          for (const char* base : {kLocalIpsSet, kServiceIpsSet, kServiceIpPortsSet}) {
            std::string set = FamilySetName(base, family);
            if (rule.find("--match-set " + set + " ") != std::string::npos) {
              EXPECT_TRUE(ipset_.sets().contains(set)) << rule;
            }
          }
        }
      }
    }
  }

  int Writes() { return v4_.apply_calls() + v6_.apply_calls() + ipset_.apply_calls(); }

  FakeIptables v4_{IpFamily::kV4};
  FakeIptables v6_{IpFamily::kV6};
  FakeIpset ipset_;
  ProxyFirewall firewall_{&v4_, &v6_, &ipset_};
  int checks_ = 0;
};

TEST_F(ProxyFirewallTest, ProgramsKubeRoutersRulesAndSetsInBothFamilies) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());

  EXPECT_EQ(ipset_.sets()["kube-router-svip"].entries,
            (std::set<IpsetEntry>{{"10.96.0.10"}, {"10.96.0.20"}, {"192.168.1.10"}}));
  EXPECT_EQ(ipset_.sets()["kube-router-svip-prt"].entries,
            (std::set<IpsetEntry>{{"10.96.0.10,tcp:53"},
                                  {"10.96.0.10,udp:53"},
                                  {"10.96.0.20,sctp:9000"},
                                  {"192.168.1.10,tcp:30080"}}));
  EXPECT_EQ(ipset_.sets()["kube-router-local-ips"].entries,
            (std::set<IpsetEntry>{{"192.168.1.10"}, {"127.0.0.1"}}));
  EXPECT_EQ(ipset_.sets()["inet6:kube-router-svip-prt"].entries,
            (std::set<IpsetEntry>{{"fd00:96::10,tcp:443"}}));
  EXPECT_EQ(ipset_.sets()["inet6:kube-router-local-ips"].entries,
            (std::set<IpsetEntry>{{"fd00:1::10"}}));
  EXPECT_EQ(ipset_.sets()["kube-router-svip-prt"].type, netfilter::IpsetType::kHashIpPort);

  auto& filter = v4_.table("filter").chains;
  ASSERT_FALSE(filter["INPUT"].empty());
  EXPECT_EQ(filter["INPUT"][0],
            "-m comment --comment \"handle traffic to IPVS service IPs in custom chain\" -m set "
            "--match-set kube-router-svip dst -j KUBE-ROUTER-SERVICES");
  EXPECT_EQ(filter[kServicesChain],
            (std::vector<std::string>{
                "-p icmp -m comment --comment \"allow icmp echo requests to service IPs\" -m icmp "
                "--icmp-type 8 -j ACCEPT",
                "-p icmp -m comment --comment \"allow icmp destination unreachable messages to "
                "service IPs\" -m icmp --icmp-type 3 -j ACCEPT",
                "-p icmp -m comment --comment \"allow icmp ttl exceeded messages to service IPs\" "
                "-m icmp --icmp-type 11 -j ACCEPT",
                "-m comment --comment \"allow input traffic to ipvs services\" -m set --match-set "
                "kube-router-svip-prt dst,dst -j ACCEPT",
                "-m comment --comment \"reject all unexpected traffic to service IPs\" -m set ! "
                "--match-set kube-router-local-ips dst -j REJECT --reject-with "
                "icmp-port-unreachable"}));
  auto& filter6 = v6_.table("filter").chains;
  EXPECT_NE(filter6["INPUT"][0].find("--match-set inet6:kube-router-svip dst"), std::string::npos)
      << filter6["INPUT"][0];
  ASSERT_EQ(filter6[kServicesChain].size(), 8u);
  EXPECT_EQ(filter6[kServicesChain].back(),
            "-m comment --comment \"reject all unexpected traffic to service IPs\" -m set ! "
            "--match-set inet6:kube-router-local-ips dst -j REJECT --reject-with "
            "icmp6-port-unreachable");

  auto& nat = v4_.table("nat").chains;
  EXPECT_EQ(nat["POSTROUTING"],
            (std::vector<std::string>{
                "-m ipvs --vdir ORIGINAL -j KUBE-ROUTER-HAIRPIN",
                "! -s 10.244.1.0/24 ! -d 10.244.1.0/24 -m ipvs --vdir ORIGINAL --vmethod "
                "MASQ -m comment --comment \"\" -j SNAT --to-source 192.168.1.10 --random-fully"}));
  EXPECT_EQ(nat[kHairpinChain],
            (std::vector<std::string>{"-s 10.244.1.5/32 -d 10.244.1.5/32 -m ipvs --vaddr "
                                      "10.96.0.10/32 --vport 53 -j SNAT --to-source 10.96.0.10"}));
  auto& nat6 = v6_.table("nat").chains;
  ASSERT_EQ(nat6["POSTROUTING"].size(), 1u);  // no IPv6 hairpin rule: no jump
  EXPECT_NE(nat6["POSTROUTING"][0].find("! -s fd00:244:1::/64 ! -d fd00:244:1::/64"), 0u - 1);
  EXPECT_FALSE(nat6.contains(kHairpinChain));
  EXPECT_GT(checks_, 0);
}

TEST_F(ProxyFirewallTest, AnUnchangedInputWritesNothingAndStartsNoProcess) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  int writes = Writes();
  int saves = v4_.save_calls() + v6_.save_calls();
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  EXPECT_EQ(Writes(), writes);
  EXPECT_EQ(v4_.save_calls() + v6_.save_calls(), saves);
  // A verifying sync reads but, with nothing drifted, writes nothing either.
  ASSERT_TRUE(firewall_.Sync(DualStackInput(), /*verify=*/true).ok());
  EXPECT_EQ(Writes(), writes);
}

TEST_F(ProxyFirewallTest, AServiceChangeIsASetDeltaNotASwap) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  const int replaced = ipset_.replaced_sets();
  const int table_writes = v4_.apply_calls() + v6_.apply_calls();
  FirewallInput in = DualStackInput();
  in.services.push_back({Ip("10.96.0.30"), IpvsProtocol::kTcp, 80});
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_EQ(ipset_.replaced_sets(), replaced);
  EXPECT_EQ(v4_.apply_calls() + v6_.apply_calls(), table_writes);  // rules did not change
  const auto& last = ipset_.last_update();
  EXPECT_TRUE(last.replace.empty());
  ASSERT_EQ(last.deltas.size(), 2u);
  // The port before the VIP: a VIP never jumps to the chain without its ports accepted.
  EXPECT_EQ(last.deltas[0].set, "kube-router-svip-prt");
  EXPECT_EQ(last.deltas[1].set, "kube-router-svip");

  in.services.erase(in.services.begin());  // 10.96.0.10:53/tcp goes; its udp twin stays
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_EQ(ipset_.replaced_sets(), replaced);
  EXPECT_FALSE(ipset_.sets()["kube-router-svip-prt"].entries.contains({"10.96.0.10,tcp:53"}));
  EXPECT_TRUE(ipset_.sets()["kube-router-svip"].entries.contains({"10.96.0.10"}));
}

TEST_F(ProxyFirewallTest, LocalIpsAreNeverEmptyWhileTheRejectExists) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  FirewallInput none = DualStackInput();
  none.local_ips.clear();  // e.g. a transient listing failure upstream (#1924)
  ASSERT_TRUE(firewall_.Sync(none).ok());
  for (auto* ipt : {&v4_, &v6_}) {
    for (const auto& rule : ipt->table("filter").chains[kServicesChain]) {
      EXPECT_EQ(rule.find("REJECT"), std::string::npos) << rule;
    }
  }
  EXPECT_TRUE(ipset_.sets()["kube-router-local-ips"].entries.empty());
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  EXPECT_EQ(v4_.table("filter").chains[kServicesChain].size(), 5u);
  // Swapping every local address at once: the new ones are in before the old ones go.
  FirewallInput moved = DualStackInput();
  moved.local_ips = {Ip("192.168.2.10"), Ip("fd00:2::10")};
  ASSERT_TRUE(firewall_.Sync(moved).ok());
  EXPECT_EQ(ipset_.sets()["kube-router-local-ips"].entries,
            (std::set<IpsetEntry>{{"192.168.2.10"}}));
  EXPECT_GT(checks_, 6);
}

TEST_F(ProxyFirewallTest, PermitAllOffKeepsAnEmptyChainAndNoJump) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  FirewallInput off = DualStackInput();
  off.permit_all = false;
  ASSERT_TRUE(firewall_.Sync(off).ok());
  auto& filter = v4_.table("filter").chains;
  EXPECT_TRUE(filter.contains(kServicesChain));
  EXPECT_TRUE(filter[kServicesChain].empty());
  EXPECT_TRUE(filter["INPUT"].empty());
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  EXPECT_EQ(filter["INPUT"].size(), 1u);
}

TEST_F(ProxyFirewallTest, TheJumpStaysBelowAJumpInsertedAboveIt) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  // The NetworkPolicy controller inserts its INPUT jump at position 1 after ours.
  netfilter::TableUpdate npc;
  npc.replace_chains = {{"KUBE-ROUTER-INPUT", {}}};
  npc.insert_rules = {{"INPUT", 1, "-j KUBE-ROUTER-INPUT"}};
  ASSERT_TRUE(v4_.Apply(npc).ok());
  int writes = v4_.apply_calls();
  ASSERT_TRUE(firewall_.Sync(DualStackInput(), /*verify=*/true).ok());
  EXPECT_EQ(v4_.apply_calls(), writes);
  EXPECT_EQ(netfilter::RuleTarget(v4_.table("filter").chains["INPUT"][1]), kServicesChain);
}

TEST_F(ProxyFirewallTest, AMissingJumpGoesBelowThePolicyControllersJump) {
  netfilter::TableUpdate npc;
  npc.replace_chains = {{"KUBE-ROUTER-INPUT", {}}};
  npc.insert_rules = {
      {"INPUT", 1, "-p tcp --dport 22 -j ACCEPT"},
      {"INPUT", 2, "-m comment --comment \"kube-router netpol\" -j KUBE-ROUTER-INPUT"}};
  ASSERT_TRUE(v4_.Apply(npc).ok());
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  const auto input = v4_.table("filter").chains["INPUT"];
  ASSERT_EQ(input.size(), 3u);
  EXPECT_EQ(netfilter::RuleTarget(input[1]), "KUBE-ROUTER-INPUT");
  EXPECT_EQ(netfilter::RuleTarget(input[2]), kServicesChain);
  // Without the policy controller: position 1 (IPv6 table).
  EXPECT_EQ(netfilter::RuleTarget(v6_.table("filter").chains["INPUT"][0]), kServicesChain);
}

TEST_F(ProxyFirewallTest, VerifyRepairsDriftTheImageCannotSee) {
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  v4_.table("filter").chains["INPUT"].clear();
  ipset_.sets()["kube-router-svip"].entries.clear();
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());  // trusts its image
  EXPECT_TRUE(v4_.table("filter").chains["INPUT"].empty());
  ASSERT_TRUE(firewall_.Sync(DualStackInput(), /*verify=*/true).ok());
  EXPECT_EQ(v4_.table("filter").chains["INPUT"].size(), 1u);
  EXPECT_EQ(ipset_.sets()["kube-router-svip"].entries.size(), 3u);
}

TEST_F(ProxyFirewallTest, AFailedWriteIsRetriedAgainstTheKernel) {
  v4_.FailNext(1);
  EXPECT_FALSE(firewall_.Sync(DualStackInput()).ok());
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  EXPECT_EQ(v4_.table("filter").chains["INPUT"].size(), 1u);
  EXPECT_EQ(v4_.table("nat").chains["POSTROUTING"].size(), 2u);
  ipset_.FailNext(1);
  FirewallInput in = DualStackInput();
  in.services.push_back({Ip("10.96.0.31"), IpvsProtocol::kUdp, 5353});
  EXPECT_FALSE(firewall_.Sync(in).ok());
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_TRUE(ipset_.sets()["kube-router-svip-prt"].entries.contains({"10.96.0.31,udp:5353"}));
}

TEST_F(ProxyFirewallTest, MasqueradeAndHairpinFollowTheInput) {
  FirewallInput in = DualStackInput();
  in.pod_cidrs = {Net("10.244.1.0/24"), Net("10.245.1.0/24")};
  in.masquerade_all = true;
  ASSERT_TRUE(firewall_.Sync(in).ok());
  auto post = [&] { return v4_.table("nat").chains["POSTROUTING"]; };
  ASSERT_EQ(post().size(), 4u);  // hairpin jump (above the catch-all), two CIDRs, masquerade-all
  EXPECT_EQ(post()[0], HairpinJumpRule());
  EXPECT_EQ(post()[3],
            "-m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment \"\" -j SNAT "
            "--to-source 192.168.1.10 --random-fully");
  in.masquerade_all = false;
  in.hairpin.clear();
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_EQ(post().size(), 2u);
  EXPECT_FALSE(v4_.table("nat").chains.contains(kHairpinChain));
  // Proxy-only mode on a node without a pod CIDR: the rule without CIDR matches.
  in.pod_cidrs.clear();
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_EQ(post(), (std::vector<std::string>{
                        "-m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment \"\" "
                        "-j SNAT --to-source 192.168.1.10 --random-fully"}));
}

// The policy controller's jump inserted at the top after we read INPUT and before we wrote
// (the two controllers' threads interleaving) left ours above it; the next sync that reads
// INPUT puts ours below it, where either write order without the interleaving has it.
TEST_F(ProxyFirewallTest, AJumpAboveThePolicyControllersIsMovedBelowIt) {
  const std::string npc_jump = "-m comment --comment \"kube-router netpol\" -j KUBE-ROUTER-INPUT";
  netfilter::TableUpdate npc;
  npc.replace_chains = {{"KUBE-ROUTER-INPUT", {}}};
  npc.insert_rules = {{"INPUT", 1, npc_jump}};
  ASSERT_TRUE(v4_.Apply(npc).ok());
  ASSERT_TRUE(firewall_.Sync(DualStackInput()).ok());
  const auto fresh = v4_.table("filter").chains["INPUT"];
  ASSERT_EQ(fresh.size(), 2u);
  EXPECT_EQ(fresh[0], npc_jump);
  // The interleaved result.
  auto& input = v4_.table("filter").chains["INPUT"];
  std::swap(input[0], input[1]);
  ASSERT_TRUE(firewall_.Sync(DualStackInput(), /*verify=*/true).ok());
  EXPECT_EQ(v4_.table("filter").chains["INPUT"], fresh);
}

// The interleaving itself cannot happen in one agent: both controllers read, plan and write
// built-in chain positions under netfilter::BuiltinChainsMutex. Every table write of ours holds
// it (checked from another thread at each write); a set-only change does not take it.
TEST_F(ProxyFirewallTest, EveryTableWriteHoldsTheBuiltinChainsMutex) {
  auto held_elsewhere = [] {
    return !std::async(std::launch::async, [] {
              kr::Mutex& mu = netfilter::BuiltinChainsMutex();
              if (!mu.try_lock()) return false;
              mu.unlock();
              return true;
            }).get();
  };
  int table_writes = 0, unheld = 0;
  for (FakeIptables* ipt : {&v4_, &v6_}) {
    ipt->AfterEachApply([&] {
      ++table_writes;
      if (!held_elsewhere()) ++unheld;
    });
  }
  FirewallInput in = DualStackInput();
  in.masquerade_all = true;
  ASSERT_TRUE(firewall_.Sync(in).ok());
  in.node_ips = {Ip("192.168.1.11"), Ip("fd00:1::11")};
  ASSERT_TRUE(firewall_.Sync(in, /*verify=*/true).ok());
  EXPECT_GE(table_writes, 6);  // filter and nat of both families, then nat of both again
  EXPECT_EQ(unheld, 0);
  bool set_write_held = true;
  ipset_.AfterEachApply([&] { set_write_held = held_elsewhere(); });
  in.services.push_back({Ip("10.96.0.44"), IpvsProtocol::kTcp, 80});
  ASSERT_TRUE(firewall_.Sync(in).ok());
  EXPECT_FALSE(set_write_held);  // the event path never waits for a policy full sync
}

// POSTROUTING's rules of ours stand in one order for one input whatever came before (Services
// with hairpin added and removed, the node address, pod CIDRs and --masquerade-all changing):
// after every step of a random history the chain equals a fresh start's.
TEST_F(ProxyFirewallTest, PostroutingOrderIsAFunctionOfTheInputNotOfItsHistory) {
  std::mt19937 random(5);
  const std::vector<std::string> foreign = {"-j DOCKER-POSTROUTING"};
  auto with_foreign = [&](FakeIptables* ipt) {
    netfilter::TableUpdate u;
    u.table = "nat";
    u.replace_chains = {{"DOCKER-POSTROUTING", {}}};
    u.insert_rules = {{"POSTROUTING", 1, foreign[0]}};
    ASSERT_TRUE(ipt->Apply(u).ok());
  };
  ASSERT_NO_FATAL_FAILURE(with_foreign(&v4_));
  FirewallInput in = DualStackInput();
  for (int step = 0; step < 300; ++step) {
    switch (random() % 4) {
      case 0:
        if (in.hairpin.empty()) {
          in.hairpin = {{Ip("10.244.1.5"), Ip("10.96.0.10"), 53}};
        } else {
          in.hairpin.clear();
        }
        break;
      case 1:
        in.node_ips = {random() % 2 ? Ip("192.168.1.10") : Ip("192.168.1.11")};
        break;
      case 2:
        in.pod_cidrs.clear();
        if (random() % 2) in.pod_cidrs.push_back(Net("10.244.1.0/24"));
        if (random() % 2) in.pod_cidrs.push_back(Net("10.245.1.0/24"));
        break;
      default:
        in.masquerade_all = !in.masquerade_all;
    }
    ASSERT_TRUE(firewall_.Sync(in).ok()) << "step " << step;
    FakeIptables fresh_v4{IpFamily::kV4};
    FakeIptables fresh_v6{IpFamily::kV6};
    FakeIpset fresh_sets;
    ASSERT_NO_FATAL_FAILURE(with_foreign(&fresh_v4));
    ProxyFirewall fresh{&fresh_v4, &fresh_v6, &fresh_sets};
    ASSERT_TRUE(fresh.Sync(in).ok());
    ASSERT_EQ(v4_.table("nat").chains["POSTROUTING"], fresh_v4.table("nat").chains["POSTROUTING"])
        << "step " << step;
    ASSERT_EQ(v4_.table("filter").chains["INPUT"], fresh_v4.table("filter").chains["INPUT"]);
  }
}

TEST_F(ProxyFirewallTest, CleanupRemovesEveryFormOfOursAndNothingForeignTwice) {
  // Foreign state next to ours, and kube-router's older rule forms left by upstream.
  netfilter::TableUpdate foreign;
  foreign.table = "nat";
  foreign.replace_chains = {{"DOCKER-POSTROUTING", {"-s 172.17.0.0/16 -j MASQUERADE"}}};
  foreign.insert_rules = {
      {"POSTROUTING", 1, "-j DOCKER-POSTROUTING"},
      {"POSTROUTING", 2,
       "-m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment \"\" -j MASQUERADE"},
      {"POSTROUTING", 3,
       "! -s 10.9.0.0/16 ! -d 10.9.0.0/16 -m ipvs --vdir ORIGINAL --vmethod MASQ -m "
       "comment --comment \"\" -j SNAT --to-source 192.168.1.10"},
      {"POSTROUTING", 4, "-s 10.0.0.0/8 -j MASQUERADE"}};
  ASSERT_TRUE(v4_.Apply(foreign).ok());
  netfilter::TableUpdate foreign_filter;
  foreign_filter.insert_rules = {{"INPUT", 1, "-p tcp --dport 22 -j ACCEPT"}};
  ASSERT_TRUE(v4_.Apply(foreign_filter).ok());
  ipset_.sets()["KUBE-SRC-FOREIGN"] = {
      "KUBE-SRC-FOREIGN", netfilter::IpsetType::kHashIp, IpFamily::kV4, {{"10.1.1.1"}}};

  FirewallInput in = DualStackInput();
  in.pod_cidrs.push_back(Net("10.245.1.0/24"));
  in.masquerade_all = true;
  ASSERT_TRUE(firewall_.Sync(in).ok());
  // The sync already replaced the old forms with the current ones.
  auto post = v4_.table("nat").chains["POSTROUTING"];
  EXPECT_EQ(std::count_if(post.begin(), post.end(),
                          [](const std::string& r) {
                            return r.ends_with("-j MASQUERADE") && r.find("ipvs") != r.npos;
                          }),
            0);

  ASSERT_TRUE(firewall_.Cleanup().ok());
  post = v4_.table("nat").chains["POSTROUTING"];
  EXPECT_EQ(post,
            (std::vector<std::string>{"-j DOCKER-POSTROUTING", "-s 10.0.0.0/8 -j MASQUERADE"}));
  EXPECT_FALSE(v4_.table("nat").chains.contains(kHairpinChain));
  EXPECT_EQ(v4_.table("filter").chains["INPUT"],
            (std::vector<std::string>{"-p tcp --dport 22 -j ACCEPT"}));
  EXPECT_FALSE(v4_.table("filter").chains.contains(kServicesChain));
  EXPECT_TRUE(v6_.table("nat").chains["POSTROUTING"].empty());
  EXPECT_EQ(ipset_.sets().size(), 1u);
  EXPECT_TRUE(ipset_.sets().contains("KUBE-SRC-FOREIGN"));

  const int writes = v4_.apply_calls() + v6_.apply_calls();
  ASSERT_TRUE(firewall_.Cleanup().ok());
  EXPECT_EQ(v4_.apply_calls() + v6_.apply_calls(), writes);  // idempotent: nothing left to do
}

// The incremental path (deltas from the image of the last input) ends where a full plan would:
// after each of many random changes the sets hold exactly DesiredSets of the input.
TEST_F(ProxyFirewallTest, IncrementalSetDeltasMatchTheFullPlanUnderRandomChanges) {
  std::mt19937 random(11);
  const std::vector<IpvsProtocol> protocols = {IpvsProtocol::kTcp, IpvsProtocol::kUdp,
                                               IpvsProtocol::kSctp};
  std::set<VipPort> services;
  std::set<IpAddress> local = {Ip("192.168.1.10")};
  FirewallInput in = DualStackInput();
  for (int step = 0; step < 200; ++step) {
    int what = random() % 4;
    if (what <= 1) {
      bool v6 = random() % 3 == 0;
      IpAddress ip = v6 ? *IpAddress::Parse("fd00:96::" + std::to_string(random() % 20 + 1))
                        : IpAddress::V4((10u << 24) | (96u << 16) | (random() % 20));
      services.insert({ip, protocols[random() % 3], static_cast<uint16_t>(random() % 3 + 80)});
    } else if (what == 2 && !services.empty()) {
      auto it = services.begin();
      std::advance(it, random() % services.size());
      services.erase(it);
    } else {
      IpAddress ip = random() % 2 ? IpAddress::V4((192u << 24) | (168u << 16) | (random() % 4))
                                  : *IpAddress::Parse("fd00:1::" + std::to_string(random() % 4));
      if (!local.erase(ip)) local.insert(ip);
    }
    in.services.assign(services.begin(), services.end());
    in.local_ips.assign(local.begin(), local.end());
    if (random() % 2) std::shuffle(in.services.begin(), in.services.end(), random);
    ASSERT_TRUE(firewall_.Sync(in).ok()) << "step " << step;
    for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
      for (const auto& set : DesiredSets(in, family)) {
        ASSERT_EQ(ipset_.sets()[set.name].entries, set.entries) << set.name << " step " << step;
      }
    }
  }
  EXPECT_EQ(ipset_.replaced_sets(), 6);  // created once, then only deltas
}

// The held services are a sorted vector, changed in place for a few entries and merged for many
// (over 16): random changes of 1 to 40 entries through Update, each checked against the sets a
// full plan of the same input wants and against CurrentInput().
TEST_F(ProxyFirewallTest, UpdatesOfFewAndManyServicesMatchTheFullPlan) {
  std::mt19937 random(17);
  FirewallInput in = DualStackInput();
  std::set<VipPort> services(in.services.begin(), in.services.end());
  ASSERT_TRUE(firewall_.Sync(in).ok());
  for (int step = 0; step < 60; ++step) {
    FirewallChange change;
    const int count = 1 + static_cast<int>(random() % 40);
    for (int i = 0; i < count; ++i) {
      IpAddress ip = random() % 4 == 0
                         ? *IpAddress::Parse("fd00:96::" + std::to_string(random() % 30 + 1))
                         : IpAddress::V4((10u << 24) | (96u << 16) | (random() % 60));
      VipPort p{ip, IpvsProtocol::kTcp, static_cast<uint16_t>(random() % 2 + 80)};
      if (services.contains(p)) {
        change.remove_services.push_back(p);
      } else {
        change.add_services.push_back(p);
      }
    }
    for (const auto& p : change.remove_services) services.erase(p);
    for (const auto& p : change.add_services) services.insert(p);
    change.local_ips = in.local_ips;
    change.node_ips = in.node_ips;
    change.pod_cidrs = in.pod_cidrs;
    ASSERT_TRUE(firewall_.Update(change).ok()) << "step " << step;
    in.services.assign(services.begin(), services.end());
    EXPECT_EQ(firewall_.CurrentInput().services, in.services) << "step " << step;
    for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
      for (const auto& set : DesiredSets(in, family)) {
        ASSERT_EQ(ipset_.sets()[set.name].entries, set.entries) << set.name << " step " << step;
      }
    }
  }
}

// The event path: a change names only what became wanted or unwanted; a VIP that loses one port
// and gains another in the same change stays in kube-router-svip (found by the oracle test).
TEST_F(ProxyFirewallTest, UpdateAppliesOnlyTheChangeAndKeepsAVipThatSwapsPorts) {
  FirewallInput in = DualStackInput();
  ASSERT_TRUE(firewall_.Sync(in).ok());
  const int saves = v4_.save_calls() + v6_.save_calls();
  FirewallChange change;
  change.remove_services = {{Ip("10.96.0.20"), IpvsProtocol::kSctp, 9000}};
  change.add_services = {{Ip("10.96.0.20"), IpvsProtocol::kTcp, 9001}};
  change.local_ips = in.local_ips;
  change.node_ips = in.node_ips;
  change.pod_cidrs = in.pod_cidrs;
  ASSERT_TRUE(firewall_.Update(change).ok());
  EXPECT_EQ(v4_.save_calls() + v6_.save_calls(), saves);  // no rule changed: no table read
  EXPECT_TRUE(ipset_.sets()["kube-router-svip"].entries.contains({"10.96.0.20"}));
  EXPECT_TRUE(ipset_.sets()["kube-router-svip-prt"].entries.contains({"10.96.0.20,tcp:9001"}));
  EXPECT_FALSE(ipset_.sets()["kube-router-svip-prt"].entries.contains({"10.96.0.20,sctp:9000"}));
  // The same end state as a full sync of the equivalent input.
  in.services.erase(std::find(in.services.begin(), in.services.end(),
                              VipPort{Ip("10.96.0.20"), IpvsProtocol::kSctp, 9000}));
  in.services.push_back({Ip("10.96.0.20"), IpvsProtocol::kTcp, 9001});
  const int writes = Writes();
  ASSERT_TRUE(firewall_.Sync(in, /*verify=*/true).ok());
  EXPECT_EQ(Writes(), writes);
}

TEST(ExpandHairpin, FollowsTheFlagAndTheAnnotations) {
  HairpinServicePort port;
  port.cluster_ips = {Ip("10.96.0.10"), Ip("fd00:96::10")};
  port.external_ips = {Ip("203.0.113.7")};
  port.node_ips = {Ip("192.168.1.10")};
  port.port = 80;
  port.node_port = 30080;
  port.local_endpoints = {Ip("10.244.1.5"), Ip("fd00:244:1::5")};
  EXPECT_TRUE(ExpandHairpin(port, /*hairpin_mode=*/false).empty());
  auto rules = ExpandHairpin(port, /*hairpin_mode=*/true);
  EXPECT_EQ(rules, (std::vector<HairpinRule>{{Ip("10.244.1.5"), Ip("10.96.0.10"), 80},
                                             {Ip("10.244.1.5"), Ip("192.168.1.10"), 30080},
                                             {Ip("fd00:244:1::5"), Ip("fd00:96::10"), 80}}));
  port.annotated = true;
  port.external_ips_annotated = true;
  port.node_port = 0;
  rules = ExpandHairpin(port, /*hairpin_mode=*/false);
  EXPECT_EQ(rules, (std::vector<HairpinRule>{{Ip("10.244.1.5"), Ip("10.96.0.10"), 80},
                                             {Ip("10.244.1.5"), Ip("203.0.113.7"), 80},
                                             {Ip("fd00:244:1::5"), Ip("fd00:96::10"), 80}}));
}

TEST(FirewallPlan, RecognisesOnlyOurPostroutingRules) {
  EXPECT_TRUE(IsOwnedPostroutingRule(
      "! -s 10.244.1.0/24 ! -d 10.244.1.0/24 -m ipvs --vdir ORIGINAL --vmethod MASQ -m "
      "comment --comment \"\" -j SNAT --to-source 192.168.1.10 --random-fully"));
  EXPECT_TRUE(IsOwnedPostroutingRule("-m ipvs --vdir ORIGINAL -j KUBE-ROUTER-HAIRPIN"));
  // kube-router's own spelling (iptables-save drops the --ipvs flag) and its old MASQUERADE form.
  EXPECT_TRUE(IsOwnedPostroutingRule(
      "-m ipvs --ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment \"\" -j MASQUERADE"));
  EXPECT_FALSE(IsOwnedPostroutingRule("-s 10.0.0.0/8 -j MASQUERADE"));
  EXPECT_FALSE(IsOwnedPostroutingRule("-m ipvs --vdir ORIGINAL --vmethod MASQ -j ACCEPT"));
  EXPECT_FALSE(IsOwnedPostroutingRule("-j KUBE-POSTROUTING"));
  EXPECT_TRUE(IsLocalIpsLink("eth0"));
  EXPECT_FALSE(IsLocalIpsLink("kube-dummy-if"));
  EXPECT_FALSE(IsLocalIpsLink("kube-bridge"));
  EXPECT_FALSE(IsLocalIpsLink("docker0"));
}

}  // namespace
}  // namespace kr::proxy
