// SPDX-License-Identifier: Apache-2.0
#include "kubeconfig_out.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kube_router/base/base64.h"
#include "lib/files.h"

namespace fake_apiserver {

bool WriteKubeconfig(const Flags& f, const std::string& server_url, std::string* error) {
  std::ostringstream y;
  y << "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: "
    << server_url << "\n";
  if (!f.tls_cert.empty()) {
    std::string ca = kr::testing::ReadFile(f.kubeconfig_ca.empty() ? f.tls_cert : f.kubeconfig_ca);
    y << "    certificate-authority-data: " << kr::Base64Encode(ca) << "\n";
  }
  y << "users:\n- name: fake\n  user:";
  bool any = false;
  if (!f.token.empty()) {
    y << "\n    token: " << f.token;
    any = true;
  }
  if (!f.kubeconfig_client_cert.empty()) {
    y << "\n    client-certificate-data: "
      << kr::Base64Encode(kr::testing::ReadFile(f.kubeconfig_client_cert))
      << "\n    client-key-data: "
      << kr::Base64Encode(kr::testing::ReadFile(f.kubeconfig_client_key));
    any = true;
  }
  if (!any) y << " {}";
  y << "\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
       "current-context: fake\n";
  // Written atomically: tests poll for the file to know the server is up.
  std::string tmp = f.kubeconfig_out + ".tmp";
  {
    std::ofstream out(tmp);
    out << y.str();
    if (!out) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, f.kubeconfig_out, ec);
  if (ec) {
    *error = "cannot rename " + tmp + ": " + ec.message();
    return false;
  }
  return true;
}

}  // namespace fake_apiserver
