#include "data/text.h"

#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace bonsai::data {

namespace fs = std::filesystem;

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::error_code ec;
  BONSAI_CHECK(fs::is_regular_file(path, ec), what + " '" + path + "': not found or not a file");
  std::ifstream f(path);
  BONSAI_CHECK(f.good(), what + " '" + path + "': cannot open");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) lines.push_back(line);
  BONSAI_CHECK(!f.bad(), what + " '" + path + "': read failed");
  return lines;
}

}  // namespace bonsai::data
