#include "kube_router/base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "kube_router/base/unique_fd.h"

namespace kr {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool WriteAll(int fd, const std::string& content) {
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Status WriteFileAtomically(const std::string& path, const std::string& content, mode_t mode) {
  std::filesystem::path target(path);
  std::filesystem::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Error("cannot create " + dir.string() + ": " + ec.message());

  // An unpredictable name and O_EXCL|O_NOFOLLOW: nobody can plant a file or a symlink there
  // for us to write through.
  std::random_device random;
  std::string temp;
  UniqueFd fd;
  for (int attempt = 0; attempt < 8 && !fd; ++attempt) {
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%08x%08x", random(), random());
    temp = (dir / ("." + target.filename().string() + ".tmp-" + suffix)).string();
    fd.reset(open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd && errno != EEXIST) return Status::Error(Errno("cannot create " + temp));
  }
  if (!fd) return Status::Error(Errno("cannot create a temporary file next to " + path));
  auto fail = [&](const std::string& what) {
    Status s = Status::Error(Errno(what));
    fd.reset();
    unlink(temp.c_str());
    return s;
  };
  // open() applied the umask; the file must have exactly `mode`.
  if (fchmod(fd.get(), mode) != 0) return fail("cannot set the mode of " + temp);
  if (!WriteAll(fd.get(), content)) return fail("cannot write " + temp);
  if (fsync(fd.get()) != 0) return fail("cannot sync " + temp);
  // close() reports a failed write-back: it is checked, not left to the destructor.
  if (close(fd.release()) != 0) return fail("cannot write " + temp);
  if (rename(temp.c_str(), path.c_str()) != 0) return fail("cannot replace " + path);
  // The rename is durable only once the directory entry is on disk.
  UniqueFd dir_fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return Status::Error(Errno("cannot open " + dir.string()));
  if (fsync(dir_fd.get()) != 0) return Status::Error(Errno("cannot sync " + dir.string()));
  return Status::Ok();
}

}  // namespace kr
