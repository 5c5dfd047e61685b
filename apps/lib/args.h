// Minimal "--key value" argument parsing for the bonsai subcommands. Every
// flag must be declared by the subcommand; unknown flags are errors that name
// the flag and list the known ones.
//
//   Args a(argc, argv, 3, {{"threads", "2"}, {"steps", "10"}});
//   int t = a.get_int("threads");
#pragma once

#include <map>
#include <string>

namespace bonsai::apps {

class Args {
 public:
  // Parses argv[first..]; `known` maps each accepted flag to its default.
  Args(int argc, char** argv, int first, std::map<std::string, std::string> known);
  std::string get(const std::string& key) const;
  int get_int(const std::string& key) const;
  float get_float(const std::string& key) const;
  // Flags whose default is "true"/"false" may be given alone (--json).
  bool get_bool(const std::string& key) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace bonsai::apps
