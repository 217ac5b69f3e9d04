// SPDX-License-Identifier: Apache-2.0
// A cpp-httplib client that bounds the number of interim (1xx) responses before the final one.
// httplib skips "100 Continue" lines itself, as many as a server sends (only the head deadline
// ended them); Go's transport stops after a few. This client reads the connection through a
// stream that counts the status lines of interim responses and fails the read past
// kMaxInterimResponses (issue 16 item 6). httplib's SSLClient is final and its TLS stream
// internal, so TLS is done here too: the handshake in create_and_connect_socket, reads and
// writes in TlsStream.
#pragma once

#include <httplib.h>
#include <openssl/ssl.h>

#include <string>

namespace kr::net {

inline constexpr int kMaxInterimResponses = 16;

// What the counting stream saw on one exchange.
struct InterimCount {
  int seen = 0;
  bool exceeded = false;  // more than kMaxInterimResponses: the exchange was failed
};

class InterimBoundedClient : public httplib::ClientImpl {
 public:
  // `count` must outlive every request. `tls`: connect with TLS (SNI and verification name
  // `host`), configured through ssl_context().
  InterimBoundedClient(const std::string& host, int port, bool tls, InterimCount* count);
  ~InterimBoundedClient() override;

  SSL_CTX* ssl_context() const { return ctx_; }
  void enable_server_certificate_verification(bool on) { verify_ = on; }
  // After a failed handshake: the OpenSSL verification result (X509_V_OK when it was not that).
  long get_openssl_verify_result() const { return verify_result_; }

 private:
  bool create_and_connect_socket(Socket& socket, httplib::Error& error) override;
  void shutdown_ssl(Socket& socket, bool shutdown_gracefully) override;
  bool process_socket(const Socket& socket,
                      std::function<bool(httplib::Stream&)> callback) override;
  bool Handshake(Socket& socket, httplib::Error& error);

  InterimCount* count_;
  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  long verify_result_ = X509_V_OK;
};

}  // namespace kr::net
