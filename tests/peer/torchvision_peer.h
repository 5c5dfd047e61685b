// Runs the torchvision peer (tests/peer/torchvision_reference.py, with
// Debian's python3-torch) for the parity tests. When it fails, the test's
// message carries what is needed to tell why without re-running it: the
// command, its exit status, the end of its output and the free space where
// it writes.
#pragma once

#include <doctest/doctest.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace bonsai::testing {

// Runs `cmd` (output to `log`, in `dir`); on failure, FAILs with the command,
// its exit status, the free space in `dir` and the end of its output.
inline void run_peer_command(const std::string& cmd, const std::string& dir, const std::string& log) {
  const int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
  if (rc == 0) return;
  std::ostringstream why;
  why << "the torchvision peer failed (it needs /usr/bin/python3 with Debian's python3-torch and "
         "python3-torchvision); command: "
      << cmd << "; ";
  if (rc == -1)
    why << "it could not be started";
  else if (WIFEXITED(rc))
    why << "exit status " << WEXITSTATUS(rc);
  else if (WIFSIGNALED(rc))
    why << "killed by signal " << WTERMSIG(rc);
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) == 0)
    why << "; " << (static_cast<double>(fs.f_bavail) * fs.f_frsize / (1 << 20)) << " MiB free in " << dir;
  std::ifstream in(log);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > 15) tail.pop_front();
  }
  why << "; the end of its output:";
  for (const auto& line : tail) why << "\n  | " << line;
  FAIL(why.str());
}

// Writes weights.safetensors, input.safetensors, expected.safetensors (with
// --grads: the loss and every parameter's gradient) and peer.log into `dir`.
inline void run_torchvision_peer(const std::string& model, const std::string& dir, int res, int batch, int classes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) FAIL("cannot make the torchvision peer's directory " << dir << ": " << ec.message());
  run_peer_command(std::string("/usr/bin/python3 ") + BONSAI_SOURCE_ROOT +
                       "/tests/peer/torchvision_reference.py --model " + model + " --out " + dir + " --res " +
                       std::to_string(res) + " --batch " + std::to_string(batch) + " --classes " +
                       std::to_string(classes) + " --grads",
                   dir, dir + "/peer.log");
}

// After run_torchvision_peer into `dir`: writes expected64.safetensors, the
// same loss and gradients computed in float64 (tests/peer/torchvision_grad64.py).
inline void run_torchvision_grad64(const std::string& model, const std::string& dir) {
  run_peer_command(std::string("/usr/bin/python3 ") + BONSAI_SOURCE_ROOT + "/tests/peer/torchvision_grad64.py --model " +
                       model + " --dir " + dir,
                   dir, dir + "/grad64.log");
}

}  // namespace bonsai::testing
