// The project's cpp-httplib build (kr_httplib): compiled with zlib and OpenSSL, poll() based.
#include <gtest/gtest.h>
#include <httplib.h>

#include <string>
#include <thread>

namespace {

TEST(Httplib, ServesAndInflatesGzipOverLoopback) {
  httplib::Server server;
  const std::string body(100000, 'x');
  server.Get("/big", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "text/plain");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread thread([&] { server.listen_after_bind(); });
  server.wait_until_ready();

  httplib::Client client("127.0.0.1", port);
  client.set_decompress(true);
  auto res = client.Get("/big", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, body);
  // The server compressed it (zlib support compiled in) and the client inflated it.
  EXPECT_EQ(res->get_header_value("Content-Encoding"), "gzip");
  server.stop();
  thread.join();
}

TEST(Httplib, TlsSupportCompiledIn) {
  // Fails to link or compile without CPPHTTPLIB_OPENSSL_SUPPORT.
  httplib::SSLClient client("127.0.0.1", 1);
  client.set_connection_timeout(1, 0);
  EXPECT_FALSE(client.Get("/"));
}

}  // namespace
