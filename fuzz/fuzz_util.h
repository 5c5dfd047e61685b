// Shared by the libFuzzer harnesses in fuzz/ (see docs/reliability.md).
//
// The oracle: a parser of outside input may accept the bytes or refuse them
// with bonsai::Error. Anything else is a finding: a sanitizer report, a
// signal, any other exception escaping (libFuzzer aborts on it), or an
// allocation above -malloc_limit_mb (a size believed before it was checked).
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     fuzz::refusal_ok([&] { io::read_safetensors(fuzz::as_file(data, size)); });
//     return 0;
//   }
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "core/check.h"

namespace bonsai::fuzz {

// A per-process scratch directory (in /dev/shm when there is one, so the
// file round trip costs no disk I/O). libFuzzer leaves with _Exit, so no
// exit hook runs; instead each new harness process removes the directories
// of harness processes that no longer exist.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("bonsai-fuzz-", 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + 12, nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
        std::filesystem::remove_all(e.path(), ec);
    }
    std::string d = base + "/bonsai-fuzz-" + std::to_string(getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

// Writes `size` bytes to `path` (truncating); aborts on I/O failure, which
// is the harness's problem, not a finding in the parser.
inline void write_bytes(const std::string& path, const void* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n <= 0) std::abort();
    p += n;
    size -= static_cast<size_t>(n);
  }
  ::close(fd);
}

// The input as a file in the scratch directory, for parsers that take paths.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& name = "input") {
  std::string path = scratch_dir() + "/" + name;
  write_bytes(path, data, size);
  return path;
}

// Runs f; a bonsai::Error is a correct refusal, everything else propagates.
template <typename F>
void refusal_ok(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

// Splits the input at the first occurrence of `sep` (the harnesses that
// need two inputs, e.g. a config and its overrides). Without `sep`, all of
// it is `first`.
inline std::pair<std::string_view, std::string_view> split(const uint8_t* data, size_t size,
                                                           std::string_view sep) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t at = all.find(sep);
  if (at == std::string_view::npos) return {all, {}};
  return {all.substr(0, at), all.substr(at + sep.size())};
}

}  // namespace bonsai::fuzz
