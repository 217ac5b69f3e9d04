// Socket helpers shared by the probes and answer servers (podnet.h, answer_server.h) and the
// tests' own HTTP clients: one descriptor waited on with a deadline, and SCTP sockets that
// report a rejected association at once.
#pragma once

#include <chrono>

namespace kr::testing {

// Polls `fd` for `events` until `deadline` (EINTR retried): the revents; 0 when the deadline
// passed; POLLERR when poll itself failed (the caller's next call on `fd` says why).
short PollUntil(int fd, short events, std::chrono::steady_clock::time_point deadline);

// Makes a rejected SCTP probe fail fast. A REJECT answers the INIT with an ICMP error, but SCTP
// hands such an error to the socket only with IP_RECVERR set and only when the socket is not
// busy; the first INIT is sent, and its ICMP answer often handled, while connect() still holds
// the socket (always on a one-CPU guest), so the error is kept as a soft error until the INIT
// is retransmitted. A short initial RTO brings that retransmission (and the error) to ~0.1 s
// instead of 3 s; an association that is accepted is not slowed down.
void PrepareSctpProbe(int fd, int family);

}  // namespace kr::testing
