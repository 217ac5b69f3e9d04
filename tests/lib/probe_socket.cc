#include "lib/probe_socket.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
// After sys/socket.h: it uses sockaddr_storage and MSG_FIN without including them.
#include <linux/sctp.h>

#include <cerrno>

namespace kr::testing {

short PollUntil(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return p.revents;
    if (r < 0 && errno != EINTR) return POLLERR;
  }
}

void PrepareSctpProbe(int fd, int family) {
  int one = 1;
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
  } else {
    setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
  }
  sctp_rtoinfo rto{};
  rto.srto_initial = 100;  // ms
  rto.srto_min = 100;
  rto.srto_max = 1000;
  setsockopt(fd, IPPROTO_SCTP, SCTP_RTOINFO, &rto, sizeof(rto));
}

}  // namespace kr::testing
