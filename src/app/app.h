// The agent's wiring, kept out of main() so it can be read top to bottom: parse options, set
// up logging and signals, then either --cleanup-config or run (health/metrics servers, API
// caches, controller runners) until SIGTERM/SIGINT.
#pragma once

namespace kr::app {

// Runs kube-router with this command line; returns the process exit status: 0 on success or
// clean shutdown, 1 on a runtime error, 2 on a bad command line.
int Main(int argc, char** argv);

}  // namespace kr::app
