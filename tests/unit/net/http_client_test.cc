// The HTTP client: URL parsing; GzipDecoder (the same output however the compressed bytes are
// split, corrupt and truncated input rejected); HttpClient inflating a gzipped chunked stream
// event by event; its limits (body size, inflation ratio, head deadline, interim responses).
#include "kube_router/net/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "kube_router/base/sanitizers.h"
#include "kube_router/net/gzip.h"

namespace kr::net::http_client_test {
namespace {

// One gzip member; with `flush_every` > 0 a Z_SYNC_FLUSH after every that many input bytes
// (what a streaming server does after each watch event), returning each flushed piece.
std::vector<std::string> GzipPieces(const std::string& in, size_t flush_every = 0) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::vector<std::string> pieces;
  size_t step = flush_every ? flush_every : std::max<size_t>(in.size(), 1);
  for (size_t pos = 0; pos <= in.size(); pos += step) {
    size_t n = std::min(step, in.size() - std::min(pos, in.size()));
    bool last = pos + n >= in.size();
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
    z.avail_in = static_cast<uInt>(n);
    std::string piece;
    int r;
    do {
      char buf[4096];
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      r = deflate(&z, last ? Z_FINISH : Z_SYNC_FLUSH);
      piece.append(buf, sizeof buf - z.avail_out);
    } while (last ? r != Z_STREAM_END : z.avail_out == 0);
    pieces.push_back(piece);
    if (last) break;
  }
  deflateEnd(&z);
  return pieces;
}

std::string Gzip(const std::string& in) {
  std::string out;
  for (const auto& p : GzipPieces(in)) out += p;
  return out;
}

std::string SampleJson(size_t objects) {
  std::string s = "{\"kind\":\"PodList\",\"items\":[";
  std::mt19937 rng(7);
  for (size_t i = 0; i < objects; ++i) {
    if (i) s += ",";
    s += "{\"metadata\":{\"name\":\"pod-" + std::to_string(i) + "\",\"uid\":\"" +
         std::to_string(rng()) + "\"},\"status\":{\"podIP\":\"10.244." + std::to_string(i % 250) +
         "." + std::to_string(rng() % 250) + "\"}}";
  }
  return s + "]}";
}

Result<std::string> DecodeSplit(const std::string& compressed, const std::vector<size_t>& cuts,
                                bool* done) {
  GzipDecoder d;
  std::string out;
  size_t prev = 0;
  for (size_t c : cuts) {
    if (auto s = d.Feed(std::string_view(compressed).substr(prev, c - prev), &out); !s.ok())
      return s;
    prev = c;
  }
  if (auto s = d.Feed(std::string_view(compressed).substr(prev), &out); !s.ok()) return s;
  *done = d.done();
  return out;
}

TEST(GzipDecoderTest, WholeInput) {
  std::string plain = SampleJson(200);
  bool done = false;
  auto out = DecodeSplit(Gzip(plain), {}, &done);
  ASSERT_TRUE(out.ok()) << out.error();
  EXPECT_EQ(*out, plain);
  EXPECT_TRUE(done);
}

TEST(GzipDecoderTest, SameOutputAtEverySplitPoint) {
  std::string plain = SampleJson(20);
  std::string gz = Gzip(plain);
  for (size_t cut = 0; cut <= gz.size(); ++cut) {
    bool done = false;
    auto out = DecodeSplit(gz, {cut}, &done);
    ASSERT_TRUE(out.ok()) << "cut " << cut << ": " << out.error();
    ASSERT_EQ(*out, plain) << "cut " << cut;
    EXPECT_TRUE(done);
  }
}

TEST(GzipDecoderTest, SameOutputForRandomSplittingsAndByteAtATime) {
  // Large enough that inflated output exceeds the decoder's internal buffer many times over.
  std::string plain = SampleJson(3000);
  std::string gz = Gzip(plain);
  ASSERT_LT(gz.size(), plain.size() / 3);  // really compressed
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> cuts;
    int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) cuts.push_back(rng() % (gz.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    bool done = false;
    auto out = DecodeSplit(gz, cuts, &done);
    ASSERT_TRUE(out.ok()) << out.error();
    ASSERT_EQ(*out, plain) << "round " << round;
    EXPECT_TRUE(done);
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < gz.size(); ++i) every.push_back(i);
  bool done = false;
  auto out = DecodeSplit(gz, every, &done);
  ASSERT_TRUE(out.ok()) << out.error();
  EXPECT_EQ(*out, plain);
  EXPECT_TRUE(done);
}

TEST(GzipDecoderTest, SyncFlushedPiecesInflateAsTheyArrive) {
  // A streaming server flushes after each event: each piece must yield its event at once.
  std::string events;
  for (int i = 0; i < 50; ++i)
    events += "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"s" + std::to_string(i) +
              "\"}}}\n";
  auto pieces = GzipPieces(events, events.size() / 50);
  ASSERT_GT(pieces.size(), 40u);
  GzipDecoder d;
  std::string out;
  for (size_t i = 0; i + 1 < pieces.size(); ++i) {
    ASSERT_TRUE(d.Feed(pieces[i], &out).ok());
    EXPECT_EQ(out, events.substr(0, out.size()));
    EXPECT_GE(out.size(), (i + 1) * (events.size() / 50)) << "piece " << i << " held back";
    EXPECT_FALSE(d.done());
  }
  ASSERT_TRUE(d.Feed(pieces.back(), &out).ok());
  EXPECT_EQ(out, events);
  EXPECT_TRUE(d.done());
}

TEST(GzipDecoderTest, ConcatenatedMembers) {
  std::string a = SampleJson(5), b = SampleJson(9);
  std::string gz = Gzip(a) + Gzip(b);
  for (size_t cut = 0; cut <= gz.size(); cut += 7) {
    bool done = false;
    auto out = DecodeSplit(gz, {cut}, &done);
    ASSERT_TRUE(out.ok()) << out.error();
    EXPECT_EQ(*out, a + b);
    EXPECT_TRUE(done);
  }
}

TEST(GzipDecoderTest, CorruptInputIsAnError) {
  std::string plain = SampleJson(100);
  std::string gz = Gzip(plain);
  // Not gzip at all (a JSON body mislabelled as gzip).
  {
    GzipDecoder d;
    std::string out;
    auto s = d.Feed(plain, &out);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("gzip"), std::string::npos) << s.message();
    // Stays failed.
    EXPECT_FALSE(d.Feed(gz, &out).ok());
    EXPECT_FALSE(d.done());
  }
  // Flipped bytes in the header, the deflate data and the CRC/length trailer: every one is
  // rejected (a data flip is caught by inflate or by the CRC check).
  for (size_t pos :
       {size_t{0}, size_t{1}, size_t{2}, size_t{12}, gz.size() / 2, gz.size() - 6, gz.size() - 2}) {
    std::string bad = gz;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
    for (size_t cut : {size_t{0}, pos, bad.size() / 3}) {
      bool done = false;
      auto out = DecodeSplit(bad, {cut}, &done);
      EXPECT_FALSE(out.ok()) << "flip at " << pos << " cut " << cut;
    }
  }
  // Garbage after a complete member.
  {
    bool done = false;
    auto out = DecodeSplit(gz + "garbage!", {}, &done);
    EXPECT_FALSE(out.ok());
  }
}

TEST(GzipDecoderTest, TruncatedInputIsNotDone) {
  std::string gz = Gzip(SampleJson(50));
  for (size_t len : {size_t{0}, size_t{5}, gz.size() / 2, gz.size() - 1}) {
    GzipDecoder d;
    std::string out;
    ASSERT_TRUE(d.Feed(std::string_view(gz).substr(0, len), &out).ok()) << len;
    EXPECT_FALSE(d.done()) << len;
  }
}

// A listening TCP socket on 127.0.0.1; the kernel picks the port (stored in *port).
int ListenOnLoopback(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A one-shot HTTP server on loopback: sends `head`, then each body piece, waiting for
// `gate` before every piece after the first.
class OneShotServer {
 public:
  OneShotServer() { fd_ = ListenOnLoopback(&port_); }
  ~OneShotServer() {
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void Serve(std::string head, std::vector<std::string> pieces, std::atomic<int>* gate) {
    thread_ = std::thread([this, head, pieces, gate] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      request_ = req;
      ::send(c, head.data(), head.size(), MSG_NOSIGNAL);
      for (size_t i = 0; i < pieces.size(); ++i) {
        // Piece i goes out only after the client has seen i events: proves streaming.
        int w = 0;
        for (; gate && i > 0 && gate->load() < static_cast<int>(i) && w < 500; ++w)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (w == 500) stalled_ = true;  // the client held event i-1 back
        ::send(c, pieces[i].data(), pieces[i].size(), MSG_NOSIGNAL);
      }
      ::shutdown(c, SHUT_WR);
      ::close(c);
    });
  }
  bool stalled() {
    if (thread_.joinable()) thread_.join();
    return stalled_;
  }
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
  std::atomic<bool> stalled_{false};
};

std::string Chunk(const std::string& data) {
  char size[32];
  snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

TEST(HttpClientGzipTest, ChunkedGzipWatchIsInflatedEventByEvent) {
  std::vector<std::string> events;
  std::string all;
  for (int i = 0; i < 5; ++i) {
    events.push_back("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"n" +
                     std::to_string(i) + "\"}}}\n");
    all += events.back();
  }
  auto pieces = GzipPieces(all, events[0].size());
  ASSERT_EQ(pieces.size(), 5u);
  std::vector<std::string> wire;
  for (const auto& p : pieces) wire.push_back(Chunk(p));
  wire.back() += "0\r\n\r\n";
  OneShotServer server;
  std::atomic<int> seen{0};
  server.Serve(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json;stream=watch\r\n"
      "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
      wire, &seen);
  auto client = HttpClient::Create(server.url(), {});
  ASSERT_TRUE(client.ok());
  std::string got;
  auto res = (*client)->Stream(
      HttpRequest{"GET", "/api/v1/nodes?watch=true", {}, ""},
      [](const HttpResponse&) { return true; },
      [&](std::string_view bytes) {
        got.append(bytes);
        seen = static_cast<int>(std::count(got.begin(), got.end(), '\n'));
        return true;
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(got, all);
  EXPECT_FALSE(server.stalled()) << "events were buffered instead of streamed";
  EXPECT_NE(server.request().find("Accept-Encoding: gzip\r\n"), std::string::npos);
}

// The error of a GET whose gzip body is `body` (empty if the request succeeded).
std::string GzipBodyError(const std::string& body) {
  OneShotServer server;
  server.Serve(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
      "Content-Length: " +
          std::to_string(body.size()) + "\r\n\r\n",
      {body}, nullptr);
  auto client = HttpClient::Create(server.url(), {});
  if (!client.ok()) return "client: " + client.error();
  auto res = (*client)->Do(HttpRequest{"GET", "/api/v1/pods", {}, ""}, std::chrono::seconds(10));
  return res.ok() ? "" : res.error();
}

TEST(HttpClientGzipTest, CorruptGzipBodyFailsTheRequest) {
  std::string body = Gzip(SampleJson(30));
  body[body.size() / 2] = static_cast<char>(body[body.size() / 2] ^ 0x33);
  std::string error = GzipBodyError(body);
  EXPECT_NE(error.find("gzip"), std::string::npos) << error;
}

TEST(HttpClientGzipTest, TruncatedGzipBodyFailsTheRequest) {
  std::string body = Gzip(SampleJson(30));
  body.resize(body.size() - 4);  // the length trailer is missing
  std::string error = GzipBodyError(body);
  EXPECT_NE(error.find("gzip"), std::string::npos) << error;
}

TEST(HttpClientGzipTest, IdentityBodyUntouched) {
  std::string body = SampleJson(3);
  OneShotServer server;
  server.Serve("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n",
               {body}, nullptr);
  auto client = HttpClient::Create(server.url(), {});
  ASSERT_TRUE(client.ok());
  auto res = (*client)->Do(HttpRequest{"GET", "/api/v1/pods", {}, ""}, std::chrono::seconds(10));
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(res->body, body);
}

// Issue 16 item 6: limits on what a server can make the client hold.

// A gzip member of `size` zero bytes, compressed without holding the input (~1000:1).
std::string ZeroBomb(size_t size) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string zeros(1 << 20, '\0');
  std::string out;
  char buf[1 << 16];
  for (size_t done = 0; done < size; done += zeros.size()) {
    z.next_in = reinterpret_cast<Bytef*>(zeros.data());
    z.avail_in = static_cast<uInt>(zeros.size());
    int flush = done + zeros.size() >= size ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      deflate(&z, flush);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  return out;
}

long RssKiB() {
  FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) kib = std::atol(line + 6);
  }
  if (f) std::fclose(f);
  return kib;
}

TEST(HttpClientLimitsTest, GzipBombIsRefusedWithBoundedMemory) {
  std::string bomb = ZeroBomb(size_t{512} << 20);  // 512 MiB inflated
  ASSERT_LT(bomb.size(), 600u << 10) << "about 510 KB on the wire";
  long before = RssKiB();
  for (bool chunked : {false, true}) {
    SCOPED_TRACE(chunked ? "chunked watch" : "list with Content-Length");
    OneShotServer server;
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Encoding: gzip\r\n";
    head += chunked ? "Transfer-Encoding: chunked\r\n\r\n"
                    : "Content-Length: " + std::to_string(bomb.size()) + "\r\n\r\n";
    server.Serve(head, {chunked ? Chunk(bomb) + "0\r\n\r\n" : bomb}, nullptr);
    auto client = HttpClient::Create(server.url(), {});
    ASSERT_TRUE(client.ok());
    Status error;
    if (chunked) {
      size_t delivered = 0;
      auto res = (*client)->Stream(
          HttpRequest{"GET", "/api/v1/pods?watch=true", {}, ""},
          [](const HttpResponse&) { return true; },
          [&](std::string_view bytes) {
            delivered += bytes.size();
            return true;
          },
          std::chrono::seconds(10));
      ASSERT_FALSE(res.ok());
      error = res.status();
      EXPECT_LT(delivered, size_t{64} << 20);
    } else {
      auto res =
          (*client)->Do(HttpRequest{"GET", "/api/v1/pods", {}, ""}, std::chrono::seconds(10));
      ASSERT_FALSE(res.ok());
      error = res.status();
    }
    EXPECT_NE(error.message().find("inflates more than"), std::string::npos) << error.message();
  }
  long growth = RssKiB() - before;
  // The bomb inflates to 512 MiB; AddressSanitizer's shadow memory and quarantine add their own
  // growth on top of what the client keeps, so its bound is looser (still far below the bomb).
#if KR_ASAN()
  constexpr long kBoundKiB = 160 * 1024;
#else
  constexpr long kBoundKiB = 64 * 1024;
#endif
  EXPECT_LT(growth, kBoundKiB) << "RSS grew by " << growth << " KiB";
}

// A server that answers the request with `first` and then sends `drip` every 50 ms until the
// client goes away (or 20 s pass).
class DripServer {
 public:
  DripServer(std::string first, std::string drip) {
    fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this, first, drip] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      std::string req;
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      ::send(c, first.data(), first.size(), MSG_NOSIGNAL);
      for (int i = 0; i < 400 && !stop_; ++i) {
        if (::send(c, drip.data(), drip.size(), MSG_NOSIGNAL) < 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      ::close(c);
    });
  }
  ~DripServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string StreamError(const std::string& url, std::chrono::milliseconds idle,
                        std::chrono::steady_clock::duration* took) {
  auto client = HttpClient::Create(url, {});
  if (!client.ok()) return client.error();
  auto start = std::chrono::steady_clock::now();
  auto res = (*client)->Stream(
      HttpRequest{"GET", "/api/v1/pods?watch=true", {}, ""},
      [](const HttpResponse&) { return true; }, [](std::string_view) { return true; }, idle);
  *took = std::chrono::steady_clock::now() - start;
  return res.ok() ? "" : res.error();
}

TEST(HttpClientLimitsTest, ResponseHeadHasATotalDeadline) {
  // Every header line arrives well within the idle timeout, but the head never ends.
  DripServer server("HTTP/1.1 200 OK\r\n", "X-Slow: a\r\n");
  std::chrono::steady_clock::duration took;
  std::string error = StreamError(server.url(), std::chrono::milliseconds(1500), &took);
  EXPECT_NE(error.find("no complete response head"), std::string::npos) << error;
  EXPECT_LT(took, std::chrono::seconds(5));
}

// An endless stream of 100 Continue ends at the 17th, long before the head deadline (here
// one every 50 ms: under a second).
TEST(HttpClientLimitsTest, EndlessContinueIsBoundedByCount) {
  DripServer server("", "HTTP/1.1 100 Continue\r\n\r\n");
  std::chrono::steady_clock::duration took;
  std::string error = StreamError(server.url(), std::chrono::milliseconds(5000), &took);
  EXPECT_NE(error.find("more than 16 informational (1xx) responses"), std::string::npos) << error;
  EXPECT_LT(took, std::chrono::seconds(3)) << error;
}

std::string Interim(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += "HTTP/1.1 100 Continue\r\n\r\n";
  return out;
}

// 16 interim responses are still fine; the 17th fails the request (all sent at once, so only
// the count can tell).
TEST(HttpClientLimitsTest, InterimResponsesAreBoundedByCount) {
  for (int n : {0, 1, 16, 17, 200}) {
    SCOPED_TRACE(std::to_string(n) + " interim responses");
    OneShotServer server;
    server.Serve(Interim(n) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", {"ok"}, nullptr);
    auto client = HttpClient::Create(server.url(), {});
    ASSERT_TRUE(client.ok());
    auto res = (*client)->Do(HttpRequest{"GET", "/api/v1/pods", {}, ""}, std::chrono::seconds(10));
    if (n <= 16) {
      ASSERT_TRUE(res.ok()) << res.error();
      EXPECT_EQ(res->status, 200);
      EXPECT_EQ(res->body, "ok");
    } else {
      ASSERT_FALSE(res.ok());
      EXPECT_NE(res.error().find("more than 16 informational"), std::string::npos) << res.error();
    }
  }
}

TEST(HttpClientLimitsTest, OtherInformationalAnswersAreErrors) {
  OneShotServer server;
  server.Serve("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", {}, nullptr);
  auto client = HttpClient::Create(server.url(), {});
  ASSERT_TRUE(client.ok());
  auto res = (*client)->Do(HttpRequest{"GET", "/api/v1/pods", {}, ""}, std::chrono::seconds(10));
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().find("informational"), std::string::npos) << res.error();
}

// Chunked framing is httplib's now; the client still gets the payload across extensions and
// trailers, and malformed framing fails the request.
TEST(HttpClientLimitsTest, ChunkedBodiesWithExtensionsAndTrailers) {
  OneShotServer server;
  server.Serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
               {"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n"}, nullptr);
  auto client = HttpClient::Create(server.url(), {});
  ASSERT_TRUE(client.ok());
  auto res = (*client)->Do(HttpRequest{"GET", "/x", {}, ""}, std::chrono::seconds(10));
  ASSERT_TRUE(res.ok()) << res.error();
  EXPECT_EQ(res->body, "hello world");
  OneShotServer bad;
  bad.Serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", {"x\r\nhello\r\n"}, nullptr);
  auto bad_client = HttpClient::Create(bad.url(), {});
  ASSERT_TRUE(bad_client.ok());
  EXPECT_FALSE((*bad_client)->Do(HttpRequest{"GET", "/x", {}, ""}, std::chrono::seconds(10)).ok());
}

TEST(HttpClientTest, ParseUrl) {
  auto u = ParseUrl("https://[fd00::1]:6443/prefix/");
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "fd00::1");
  EXPECT_EQ(u->port, 6443);
  EXPECT_EQ(u->base_path, "/prefix");
  u = ParseUrl("http://kubernetes");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 80);
  EXPECT_FALSE(ParseUrl("ftp://x").ok());
  EXPECT_FALSE(ParseUrl("https://:443").ok());
  EXPECT_FALSE(ParseUrl("https://h:99999").ok());
  EXPECT_FALSE(ParseUrl("https://h:12x").ok());
}

}  // namespace
}  // namespace kr::net::http_client_test
