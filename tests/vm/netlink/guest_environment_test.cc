// What vm.sh promises the commands it runs (docs/testing-vm.md), checked in the same boot as
// the netlink tests: a guest kernel with its modules, and writable scratch places.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <fstream>

#include "kube_router/base/exec.h"
#include "lib/files.h"
#include "lib/netns.h"

namespace kr::guest_environment_test {
namespace {

TEST(VmGuest, RunsTheDebianGuestKernelWithItsModules) {
  const std::string text = kr::testing::ReadFile("/proc/modules");
  for (const char* loaded : {"ip_vs ", "ip_vs_rr ", "ipip ", "dummy "}) {
    EXPECT_NE(text.find(loaded), std::string::npos) << loaded << " preloaded by vm.sh";
  }
  // Anything else loads on demand from the guest kernel's module tree.
  auto sctp = Exec({"modprobe", "sctp"});
  ASSERT_TRUE(sctp.ok());
  EXPECT_EQ(sctp->exit_code, 0) << sctp->err;
  utsname uts{};
  ASSERT_EQ(uname(&uts), 0);
  std::ifstream dep(std::string("/lib/modules/") + uts.release + "/modules.dep");
  EXPECT_TRUE(dep.good()) << "modules of the running kernel are visible at /lib/modules";
}

TEST(VmGuest, EtcAndTmpAreWritable) {
  {
    std::ofstream rt_tables("/etc/iproute2/rt_tables", std::ios::app);
    ASSERT_TRUE(rt_tables.good());
    rt_tables << "77 kube-router\n";
  }
  // iproute2 resolves the name written above (this is how kube-router uses rt_tables).
  kr::testing::Netns ns("krenv");
  auto added = ns.Sh(
      "ip route add blackhole 203.0.113.0/24 table kube-router && "
      "ip route show table 77");
  ASSERT_TRUE(added.ok()) << added.error();
  EXPECT_NE(added->find("blackhole 203.0.113.0/24"), std::string::npos) << *added;
  std::ofstream scratch("/tmp/kr-vm-scratch");
  EXPECT_TRUE(scratch.good());
}

}  // namespace
}  // namespace kr::guest_environment_test
