#include "lib/netns.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "lib/files.h"

namespace kr::testing {

bool IsRoot() { return geteuid() == 0; }

std::string LineDifference(const std::string& want, const std::string& have, size_t max_chars) {
  auto lines = [](const std::string& s) {
    std::multiset<std::string> m;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) m.insert(l);
    return m;
  };
  auto w = lines(want), h = lines(have);
  std::string out;
  for (const auto& l : std::set<std::string>(w.begin(), w.end())) {
    if (w.count(l) > h.count(l)) out += "  missing: " + l + "\n";
  }
  for (const auto& l : std::set<std::string>(h.begin(), h.end())) {
    if (h.count(l) > w.count(l)) out += "  extra (stale or duplicate): " + l + "\n";
  }
  if (out.empty() && want != have) out = OrderDifference(want, have);
  return out.substr(0, max_chars);
}

std::string OrderDifference(const std::string& want, const std::string& have) {
  // Lines grouped by where their order matters: "-A CHAIN ..." by table and chain (the table
  // is the last "*table" line above), every other line in one group.
  auto groups = [](const std::string& s) {
    std::map<std::string, std::vector<std::string>> out;
    std::string table;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) {
      if (l.starts_with("*")) table = l.substr(1);
      std::string key = "(lines outside iptables chains)";
      if (l.starts_with("-A ")) key = table + " " + l.substr(3, l.find(' ', 3) - 3);
      out[key].push_back(l);
    }
    return out;
  };
  auto w = groups(want), h = groups(have);
  std::string out;
  for (const auto& [key, lines] : w) {
    const auto& other = h[key];
    if (lines == other) continue;
    out += "  same lines, other order in " + key + "; want:\n";
    for (const auto& l : lines) out += "    " + l + "\n";
    out += "  have:\n";
    for (const auto& l : other) out += "    " + l + "\n";
  }
  return out.empty() ? "  same lines, other order\n" : out;
}

Netns::Netns(const std::string& prefix) {
  static std::atomic<int> counter{0};
  name_ = prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  (void)Exec({"ip", "netns", "delete", name_});  // a leftover from a crashed run
  auto r = ExecChecked({"ip", "netns", "add", name_});
  if (!r.ok()) throw std::runtime_error("cannot create netns " + name_ + ": " + r.error());
  (void)ExecChecked({"ip", "netns", "exec", name_, "ip", "link", "set", "lo", "up"});
}

Netns::~Netns() {
  // Kill what still runs inside, then delete the namespace.
  auto pids = Exec({"ip", "netns", "pids", name_});
  if (pids.ok()) {
    std::istringstream in(pids->out);
    pid_t pid;
    while (in >> pid) kill(pid, SIGKILL);
  }
  (void)Exec({"ip", "netns", "delete", name_});
}

std::vector<std::string> Netns::Wrap(const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

Result<ExecResult> Netns::Run(const std::vector<std::string>& argv,
                              const std::string& input) const {
  return Exec(Wrap(argv), input);
}

Result<std::string> Netns::Sh(const std::string& command_line) const {
  return ExecChecked(Wrap({"sh", "-c", command_line}));
}

Process::Process(const std::vector<std::string>& argv, const std::string& log_path)
    : log_path_(log_path) {
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ <= 0 || reaped_) return;
  kill(-pid_, SIGTERM);
  kill(pid_, SIGTERM);
  if (!Wait(std::chrono::seconds(5))) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
}

bool Process::Running() {
  if (reaped_) return false;
  return !Wait(std::chrono::milliseconds(0)).has_value();
}

void Process::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Process::Log() const { return ReadFile(log_path_); }

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kr-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kr::testing
