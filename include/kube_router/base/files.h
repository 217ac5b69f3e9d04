// Replacing a file that another program reads (the CNI config the container runtime reads)
// so that the reader sees the old or the new content, never a mix, even across a crash.
#pragma once

#include <sys/types.h>

#include <string>

#include "kube_router/base/status.h"

namespace kr {

// Writes `content` to a new temporary file next to `path` (O_CREAT|O_EXCL|O_NOFOLLOW, an
// unpredictable name, exactly `mode` whatever the umask), fsyncs it, renames it over `path`
// (a symlink at `path` is replaced, not followed) and fsyncs the directory. The directory is
// created (0755) if missing. On failure `path` is untouched and the temporary file removed.
Status WriteFileAtomically(const std::string& path, const std::string& content, mode_t mode);

}  // namespace kr
