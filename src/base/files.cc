#include "kube_router/base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

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
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%08x%08x", random(), random());
    temp = (dir / ("." + target.filename().string() + ".tmp-" + suffix)).string();
    fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && errno != EEXIST) return Status::Error(Errno("cannot create " + temp));
  }
  if (fd < 0) return Status::Error(Errno("cannot create a temporary file next to " + path));
  auto fail = [&](const std::string& what) {
    Status s = Status::Error(Errno(what));
    if (fd >= 0) close(fd);
    unlink(temp.c_str());
    return s;
  };
  // open() applied the umask; the file must have exactly `mode`.
  if (fchmod(fd, mode) != 0) return fail("cannot set the mode of " + temp);
  if (!WriteAll(fd, content)) return fail("cannot write " + temp);
  if (fsync(fd) != 0) return fail("cannot sync " + temp);
  int closed = close(fd);
  fd = -1;
  if (closed != 0) return fail("cannot write " + temp);
  if (rename(temp.c_str(), path.c_str()) != 0) return fail("cannot replace " + path);
  // The rename is durable only once the directory entry is on disk.
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return Status::Error(Errno("cannot open " + dir.string()));
  int synced = fsync(dir_fd);
  close(dir_fd);
  if (synced != 0) return Status::Error(Errno("cannot sync " + dir.string()));
  return Status::Ok();
}

}  // namespace kr
