#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace bonsai::io {

namespace {

std::string errno_str(int err) { return std::strerror(err); }

void write_all(int fd, const void* src, size_t n, const std::string& path, const std::string& tmp) {
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    int err = errno;
    BONSAI_CHECK(put > 0, "'" + path + "': write to '" + tmp + "' failed: " +
                              (put < 0 ? errno_str(err) : std::string("no progress")));
    p += put;
    n -= static_cast<size_t>(put);
  }
}

// Makes the rename itself durable. Best effort: some filesystems refuse
// fsync on directories, and the data is already safe either way.
void fsync_parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(const Sink&)>& fill) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  int err = errno;
  BONSAI_CHECK(fd >= 0, "'" + path + "': cannot create temporary file '" + tmp + "': " + errno_str(err));
  try {
    fill([&](const void* data, size_t bytes) { write_all(fd, data, bytes, path, tmp); });
    // fsync before rename, or a crash could leave the new name pointing at
    // an empty file.
    int rc = ::fsync(fd);
    err = errno;
    BONSAI_CHECK(rc == 0, "'" + path + "': fsync of '" + tmp + "' failed: " + errno_str(err));
    rc = ::close(fd);
    err = errno;
    fd = -1;
    BONSAI_CHECK(rc == 0, "'" + path + "': close of '" + tmp + "' failed: " + errno_str(err));
    rc = ::rename(tmp.c_str(), path.c_str());
    err = errno;
    BONSAI_CHECK(rc == 0, "'" + path + "': cannot rename '" + tmp + "' over it: " + errno_str(err));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_parent_dir(path);
}

void write_file_atomically(const std::string& path, const void* data, size_t bytes) {
  write_atomically(path, [&](const Sink& put) { put(data, bytes); });
}

}  // namespace bonsai::io
