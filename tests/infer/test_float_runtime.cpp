// Tests of the fast FP32 runtime (infer/float_runtime.h): the fused oneDNN
// execution of a float graph equals the model's own eval forward, on the
// small float net (every op type and fusion) and on zoo models, and it
// fuses what it says it fuses.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "core/autograd.h"
#include "core/check.h"
#include "export/float_graph.h"
#include "infer/float_runtime.h"
#include "layers/layers.h"
#include "models/registry.h"
#include "tests/export/float_net.h"

using namespace bonsai;

using testing::relative_difference;

namespace {

Tensor forward(Module& m, const Tensor& x) {
  NoGrad ng;
  m.eval();
  return m.forward(x);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l.substr(0, l.find(' ')) + "\n";
  return s;
}

}  // namespace

TEST_CASE("float runtime: the small net, every op type, fused as planned") {
  auto m = testing::small_float_net();
  infer::FloatRuntime rt(exporters::convert_float(*m, Tensor::zeros({1, 16, 16, 3})));
  CHECK(joined(rt.plan()) ==
        "conv+relu6\n"
        "conv+relu6\n"
        "conv+hard_swish\n"  // depthwise + the hard_swish activation op
        "mean\n"
        "conv+relu\n"
        "conv+hard_sigmoid\n"
        "mul\n"
        "conv+add(in-place)+relu\n"  // project conv accumulates into the block input's buffer
        "avg_pool\n"
        "resize\n"
        "concat\n"
        "activation\n"
        "max_pool\n"
        "reshape\n"
        "fully_connected\n");
  std::mt19937 rng(5);
  for (int64_t n : {1, 3, 1}) {  // batch sizes change the prepared buffers and back
    CAPTURE(n);
    const Tensor x = Tensor::randn({n, 16, 16, 3}, rng, 1.5f);
    const Tensor want = forward(*m, x);
    const Tensor got = rt.run(x);
    const double rel = relative_difference(got, want);
    CAPTURE(rel);
    CHECK(rel < 1e-4);
    // Twice in a row gives the same: no state leaks between runs (the in-place sum).
    CHECK(relative_difference(rt.run(x), got) == 0);
  }
  CHECK_THROWS_WITH_AS(rt.run(Tensor::zeros({1, 8, 16, 3})), doctest::Contains("[N, 16, 16, 3]"), Error);
}

TEST_CASE("float runtime: zoo models equal their eval forward") {
  struct Case {
    const char* name;
    int res;
    const char* fused;  // a plan line that must occur
  };
  const Case cases[] = {{"resnet50", 32, "conv+add(in-place)+relu"},
                        {"mobilenet_v2", 32, "conv+add(in-place)"},
                        {"mobilenet_v3_large", 32, "conv+hard_swish"},
                        {"mobilenet_multi_avg", 32, "conv+relu"},
                        {"deeplabv3_mobilenet_v2", 64, "resize"}};
  std::mt19937 rng(9);
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto model = models::build(c.name, {{"num_classes", 10}});
    // Non-trivial BN statistics, so the folds matter.
    model->train();
    {
      NoGrad ng;
      for (int i = 0; i < 2; ++i) model->forward(Tensor::randn({4, c.res, c.res, 3}, rng, 1.0f));
    }
    infer::FloatRuntime rt(exporters::convert_float(*model, Tensor::zeros({1, c.res, c.res, 3})));
    bool found = false;
    for (const std::string& line : rt.plan()) found = found || line.rfind(std::string(c.fused) + " ", 0) == 0;
    CHECK(found);
    const Tensor x = Tensor::randn({2, c.res, c.res, 3}, rng, 1.0f);
    const double rel = relative_difference(rt.run(x), forward(*model, x));
    CAPTURE(rel);
    CHECK(rel < 1e-4);
  }
}
