// Small text-file helpers shared by the dataset readers (list files, label
// files, synset lists).
#pragma once

#include <string>
#include <vector>

namespace bonsai::data {

// s without leading and trailing spaces, tabs, CR and LF.
std::string trim(const std::string& s);

// Every line of a text file; `what` names the file's role in errors
// ("image list '/x/train.txt': not found or not a file").
std::vector<std::string> read_lines(const std::string& path, const std::string& what);

}  // namespace bonsai::data
