// Runs a helper program (iptables-restore, ipset, ...) without a shell: argv is passed as is,
// stdin is fed from a string, stdout and stderr are captured.
#pragma once

#include <string>
#include <vector>

#include "kube_router/base/status.h"

namespace kr {

struct ExecResult {
  int exit_code = -1;  // -1 when the program could not be started or was killed by a signal
  std::string out;
  std::string err;
};

// Starts argv[0] (looked up in PATH), writes `input` to its stdin, waits for it to exit.
// Fails only when the program cannot be started; a non-zero exit is reported in exit_code.
Result<ExecResult> Exec(const std::vector<std::string>& argv, const std::string& input = "");

// Like Exec, but a non-zero exit becomes an error naming the program and its stderr.
Result<std::string> ExecChecked(const std::vector<std::string>& argv,
                                const std::string& input = "");

}  // namespace kr
