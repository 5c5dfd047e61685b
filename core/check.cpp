#include "core/check.h"

namespace bonsai {

void throw_error(const char* file, int line, const std::string& message) {
  std::string where = file;
  auto slash = where.find_last_of('/');
  if (slash != std::string::npos) {
    // keep "folder/file.cpp" so the message points into the tree
    auto prev = where.find_last_of('/', slash - 1);
    where = where.substr(prev == std::string::npos ? 0 : prev + 1);
  }
  throw Error(message + " (" + where + ":" + std::to_string(line) + ")");
}

}  // namespace bonsai
