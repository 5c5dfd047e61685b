#include "apps/lib/args.h"

#include "core/check.h"

namespace bonsai::apps {

Args::Args(int argc, char** argv, int first, std::map<std::string, std::string> known)
    : values_(std::move(known)) {
  auto known_list = [&] {
    std::string s;
    for (const auto& [k, v] : values_) s += " --" + k;
    return s;
  };
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    BONSAI_CHECK(a.rfind("--", 0) == 0, "unexpected argument '" + a + "'; flags are --key value");
    std::string key = a.substr(2), value;
    auto eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (values_.count(key) && (values_[key] == "false" || values_[key] == "true") &&
               (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0)) {
      value = "true";  // a boolean flag given alone: --json
    } else {
      BONSAI_CHECK(i + 1 < argc, "flag --" + key + " needs a value");
      value = argv[++i];
    }
    BONSAI_CHECK(values_.count(key), "unknown flag --" + key + "; known:" + known_list());
    values_[key] = value;
  }
}

std::string Args::get(const std::string& key) const { return values_.at(key); }

bool Args::get_bool(const std::string& key) const {
  const std::string& v = get(key);
  BONSAI_CHECK(v == "true" || v == "false", "--" + key + " expects true or false, got '" + v + "'");
  return v == "true";
}

int Args::get_int(const std::string& key) const {
  try {
    size_t used = 0;
    int v = std::stoi(get(key), &used);
    if (used == get(key).size()) return v;
  } catch (const std::exception&) {
  }
  BONSAI_CHECK(false, "--" + key + " expects an integer, got '" + get(key) + "'");
  return 0;
}

float Args::get_float(const std::string& key) const {
  try {
    size_t used = 0;
    float v = std::stof(get(key), &used);
    if (used == get(key).size()) return v;
  } catch (const std::exception&) {
  }
  BONSAI_CHECK(false, "--" + key + " expects a number, got '" + get(key) + "'");
  return 0.f;
}

}  // namespace bonsai::apps
