#include "kube_router/base/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "kube_router/base/unique_fd.h"

extern char** environ;

namespace kr {
namespace {

using Clock = std::chrono::steady_clock;

// A pipe's two ends (0: read, 1: write), each closed once: by CloseEnd or with the Pipe.
struct Pipe {
  UniqueFd ends[2];
  bool Open() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    ends[0].reset(fds[0]);
    ends[1].reset(fds[1]);
    return true;
  }
  int fd(int i) const { return ends[i].get(); }
  void CloseEnd(int i) { ends[i].reset(); }
};

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// The agent's environment with `extra` set on top (an entry of the same name is replaced).
std::vector<std::string> MergedEnvironment(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool replaced =
        std::any_of(extra.begin(), extra.end(), [&](const auto& kv) { return kv.first == name; });
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

void AddRawSignal(sigset_t* set, int sig) {
  constexpr int kBits = 8 * sizeof(set->__val[0]);
  set->__val[(sig - 1) / kBits] |= 1UL << ((sig - 1) % kBits);
}

// Spawn attributes: own process group (so a deadline kills grandchildren too), every signal at
// its default disposition and none blocked (exec keeps ignored signals and the mask).
class SpawnAttributes {
 public:
  SpawnAttributes() {
    posix_spawnattr_init(&attr_);
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    // glibc's sigfillset leaves out its two internal signals (32, 33), and posix_spawn then
    // leaves them ignored across exec; set their bits directly so they start at SIG_DFL too.
    for (int sig = 32; sig < SIGRTMIN; ++sig) AddRawSignal(&all, sig);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr_, &all);
    posix_spawnattr_setsigmask(&attr_, &none);
    posix_spawnattr_setpgroup(&attr_, 0);
    posix_spawnattr_setflags(
        &attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attr_); }
  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// True once the group leader has exited (it stays a zombie, so its pid and process group id
// cannot be reused until we reap it).
bool LeaderExited(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid;
}

}  // namespace

Result<ExecResult> Exec(const std::vector<std::string>& argv, const std::string& input,
                        const ExecOptions& options) {
  if (argv.empty()) return Status::Error("exec: empty command");
  const std::string& program = argv[0];
  Pipe in, out, err;
  if (!in.Open() || !out.Open() || !err.Open()) {
    return Status::Error(std::string("exec: pipe: ") + std::strerror(errno));
  }
  // Our ends never block: a child that stops reading stdin must not stop us draining its
  // output (and the deadline must stay enforceable).
  if (!SetNonBlocking(in.fd(1)) || !SetNonBlocking(out.fd(0)) || !SetNonBlocking(err.fd(0)))
    return Status::Error(std::string("exec: fcntl: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fd(0), 0);
  posix_spawn_file_actions_adddup2(&actions, out.fd(1), 1);
  posix_spawn_file_actions_adddup2(&actions, err.fd(1), 2);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings = MergedEnvironment(options.env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  SpawnAttributes attr;
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, program.c_str(), &actions, attr.get(), args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::Error("exec " + program + ": " + std::strerror(rc));
  in.CloseEnd(0);
  out.CloseEnd(1);
  err.CloseEnd(1);

  const auto deadline = Clock::now() + options.timeout;
  std::string failure;  // set when we kill the child
  auto kill_group = [&](std::string why) {
    if (failure.empty()) failure = std::move(why);
    kill(-pid, SIGKILL);
  };
  ExecResult result;
  size_t written = 0;
  if (input.empty()) in.CloseEnd(1);
  bool leader_exited = false;
  // Feed stdin and drain both outputs together so a chatty child never blocks on a full pipe.
  while (out.fd(0) >= 0 || err.fd(0) >= 0) {
    if (failure.empty()) {
      if (options.cancel && options.cancel->load()) {
        kill_group("cancelled");
      } else if (Clock::now() >= deadline) {
        kill_group("timed out after " + std::to_string(options.timeout.count()) + " ms");
      }
    }
    if (!failure.empty()) {
      // The group is dead or dying; a descendant that left it could still hold a pipe open.
      in.CloseEnd(1);
      out.CloseEnd(0);
      err.CloseEnd(0);
      break;
    }
    if (!leader_exited && LeaderExited(pid)) {
      leader_exited = true;
      // Stragglers of the group (background children) would keep the pipes open.
      kill(-pid, SIGKILL);
    }
    pollfd fds[3];
    int n = 0;
    if (in.fd(1) >= 0) fds[n++] = {in.fd(1), POLLOUT, 0};
    if (out.fd(0) >= 0) fds[n++] = {out.fd(0), POLLIN, 0};
    if (err.fd(0) >= 0) fds[n++] = {err.fd(0), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int wait_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100));
    if (poll(fds, n, wait_ms) < 0) {
      if (errno == EINTR) continue;
      kill_group(std::string("poll: ") + std::strerror(errno));
      continue;
    }
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in.fd(1)) {
        ssize_t w = write(in.fd(1), input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        // EPIPE: the child closed its stdin; it may still exit cleanly, so keep reading.
        if (w < 0 && errno != EINTR && errno != EAGAIN) written = input.size();
        if (written >= input.size()) in.CloseEnd(1);
        continue;
      }
      bool is_out = fds[i].fd == out.fd(0);
      char buf[65536];
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        (is_out ? out : err).CloseEnd(0);
        continue;
      }
      if (is_out) {
        result.out.append(buf, static_cast<size_t>(r));
        if (result.out.size() > options.max_output)
          kill_group("output exceeded " + std::to_string(options.max_output) + " bytes");
      } else if (result.err.size() < kExecStderrKept) {
        result.err.append(buf,
                          std::min(static_cast<size_t>(r), kExecStderrKept - result.err.size()));
      }
    }
  }
  in.CloseEnd(1);
  // Both outputs are closed; the leader may still run (it closed them itself).
  int wstatus = 0;
  for (int sleep_us = 1000;;) {
    pid_t got = waitpid(pid, &wstatus, WNOHANG);
    if (got == pid || (got < 0 && errno != EINTR)) break;
    if (failure.empty()) {
      if (options.cancel && options.cancel->load()) {
        kill_group("cancelled");
      } else if (Clock::now() >= deadline) {
        kill_group("timed out after " + std::to_string(options.timeout.count()) + " ms");
      } else if (LeaderExited(pid)) {
        kill(-pid, SIGKILL);  // reap below; first end any straggler in its group
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min(sleep_us * 2, 20'000);
  }
  if (!failure.empty()) return Status::Error(program + " " + failure + " (process group killed)");
  result.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  return result;
}

Result<std::string> ExecChecked(const std::vector<std::string>& argv, const std::string& input,
                                const ExecOptions& options) {
  auto r = Exec(argv, input, options);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    std::string err = r->err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return Status::Error(argv[0] + " exited " + std::to_string(r->exit_code) + ": " + err);
  }
  return std::move(r->out);
}

}  // namespace kr
