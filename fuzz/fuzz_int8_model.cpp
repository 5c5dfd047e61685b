// Fuzzes quant::Int8Model::load (quant/int8_model.h): a safetensors file
// whose "bonsai.int8_graph" metadata is the graph as JSON (values, ops,
// geometry, clamps) and whose tensors are the ops' weights, biases, scales
// and tables, all validated against each other. A model that loads and is
// small is then run on one image: load promises that what it accepts runs.
#include "core/io/safetensors.h"
#include "fuzz/fuzz_util.h"
#include "quant/int8_model.h"

using namespace bonsai;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, "model.int8.safetensors");
  fuzz::refusal_ok([&] {
    quant::Int8Model m = quant::Int8Model::load(path);
    // Only models whose every value is small are run, so the harness stays
    // fast; the sizes come from the file, and load has checked them.
    int64_t total = 0;
    for (const auto& v : m.values()) {
      int64_t n = 1;
      for (int64_t d : v.shape) {
        if (d <= 0 || d > 4096) return;
        n *= d;
      }
      total += n;
      if (total > (1 << 16)) return;
    }
    const auto& in = m.input().shape;
    Tensor x = Tensor::zeros({1, in[0], in[1], in[2]});
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>(i % 7) - 3.f;
    (void)m.run(x);
  });
  return 0;
}
