// Fuzzes the experiment config reader (apps/experiment/config.h): JSON
// parsing, --params_override strings ("a.b=v,c.d=[1,2]") and the strict
// schema walk. Input: the override string, a line "\n--\n", then the JSON
// file; without the separator, all of it is the file.
#include "apps/experiment/config.h"
#include "fuzz/fuzz_util.h"

using namespace bonsai;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto [first, second] = fuzz::split(data, size, "\n--\n");
  std::string overrides, file;
  if (second.data() == nullptr) {
    file = std::string(first);
  } else {
    overrides = std::string(first);
    file = std::string(second);
  }
  const std::string path = fuzz::as_file(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "config.json");
  fuzz::refusal_ok([&] {
    apps::ExperimentConfig c = apps::load_experiment_config(path, overrides);
    // What the runner does with a parsed config: write it back out.
    (void)apps::to_json(c).dump();
  });
  return 0;
}
