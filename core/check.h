// BONSAI_CHECK: the one error macro. It adds file and line and throws
// bonsai::Error, so a bad file, key or shape surfaces as a message that names
// it instead of a crash.
//
//   BONSAI_CHECK(a.shape() == b.shape(),
//                "add: shapes differ: " + a.shape_str() + " vs " + b.shape_str());
#pragma once

#include <stdexcept>
#include <string>

namespace bonsai {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

}  // namespace bonsai

#define BONSAI_CHECK(cond, message)                                  \
  do {                                                               \
    if (!(cond)) ::bonsai::throw_error(__FILE__, __LINE__, (message)); \
  } while (0)
