// Service test helpers beside podnet.h: servers that say who they are and who called, and
// clients that tell "answered" from "refused" from "timed out".
//
// Every server answers with one line "<name> <client ip> <client port>\n":
//   * TCP and SCTP: sent on accept; after it, everything the client sends is echoed back until it
//     closes (a long-lived connection can prove it still reaches the same backend);
//   * UDP: to every datagram;
//   * HTTP (over TCP): after reading the request head, a 200 whose body is that line;
//   * TCP or HTTP (the sandbox's pods, where users try curl and nc alike): HTTP when the client
//     speaks first with an HTTP method, otherwise TCP, greeting after the client's first bytes
//     or after 300 ms of silence.
// A server listens on the wildcard address of both families (an IPv6 socket with v6only off),
// in the network namespace it was made in, served by its own thread; at most 64 connections
// are held at once (the oldest is closed beyond that).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lib/podnet.h"

namespace kr::testing {

class AnswerServer {
 public:
  enum class Kind { kTcp, kUdp, kSctp, kHttp, kTcpOrHttp };
  // Throws when the socket cannot be made (e.g. SCTP on the host kernel).
  AnswerServer(const std::string& netns, std::string name, int port, Kind kind);
  ~AnswerServer();
  AnswerServer(const AnswerServer&) = delete;
  AnswerServer& operator=(const AnswerServer&) = delete;

 private:
  void Loop();
  std::string name_;
  Kind kind_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

AnswerServer::Kind ToKind(Proto proto);

struct Answer {
  enum class Outcome { kAnswered, kRefused, kTimeout, kError };
  Outcome outcome = Outcome::kError;
  std::string name;       // the server's name
  std::string client_ip;  // the source address the server saw
  int client_port = 0;
  std::string error;  // for kError/kRefused: what happened

  bool ok() const { return outcome == Outcome::kAnswered; }
  std::string ToString() const;  // "answered by pod-a (client 10.0.0.1:4000)" / "refused" ...
};

// One request from a fresh socket made in `netns`; `source_port` 0 picks any.
Answer Ask(const std::string& netns, const std::string& ip, int port, Proto proto,
           std::chrono::milliseconds timeout = std::chrono::milliseconds(2000),
           int source_port = 0);
// An HTTP GET / over TCP.
Answer HttpGet(const std::string& netns, const std::string& ip, int port,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// A UDP client that keeps one socket bound to a fixed source port across requests, as a DNS
// resolver does (the conntrack flow of the first request is reused by the next ones).
class FixedPortUdpClient {
 public:
  FixedPortUdpClient(const std::string& netns, int source_port, bool ipv6 = false);
  ~FixedPortUdpClient();
  FixedPortUdpClient(const FixedPortUdpClient&) = delete;
  FixedPortUdpClient& operator=(const FixedPortUdpClient&) = delete;
  Answer Ask(const std::string& ip, int port,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

 private:
  int fd_ = -1;
};

// A long-lived TCP connection: connects, reads the greeting (which backend it reached), then
// stays open; Alive() sends a line and expects it echoed.
class TcpHolder {
 public:
  TcpHolder(const std::string& netns, const std::string& ip, int port,
            std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~TcpHolder();
  TcpHolder(const TcpHolder&) = delete;
  TcpHolder& operator=(const TcpHolder&) = delete;
  const Answer& greeting() const { return greeting_; }
  bool Alive(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

 private:
  int fd_ = -1;
  Answer greeting_;
  int counter_ = 0;
};

}  // namespace kr::testing
