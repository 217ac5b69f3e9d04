// SPDX-License-Identifier: Apache-2.0
// The kubeconfig fake-apiserver writes for its clients (--kubeconfig-out).
#pragma once

#include <string>

#include "flags.h"

namespace fake_apiserver {

// Writes a kubeconfig for `server_url` with the CA, token and client certificate the flags
// name, atomically (tests poll for the file to know the server is up); false with `error` set.
bool WriteKubeconfig(const Flags& f, const std::string& server_url, std::string* error);

}  // namespace fake_apiserver
