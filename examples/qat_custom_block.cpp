// Quantization-aware training of a model with a custom block, then the
// integer-only int8 model: convert, check it against the QAT simulation
// layer by layer, save, load and run.
//
//   c++ qat_custom_block.cpp $(pkg-config --cflags --libs bonsai) -o qat_custom_block
//   ./qat_custom_block /tmp/model_int8.safetensors
//
// The custom block needs nothing from bonsai's quantizer: its forward goes
// through its children (the residual sum is an Add merge layer), so
// quant::quantize places fake-quantizers inside it and quant::convert can
// lower it to integer ops.
#include <cstdio>
#include <random>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "optim/optimizer.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"

using namespace bonsai;

// conv3x3 → BN → relu → conv3x3 → BN, plus the input: a ResNet basic block.
class Residual : public Module {
 public:
  explicit Residual(int64_t channels) {
    add("conv1", std::make_shared<Conv2d>(Conv2dOptions{.in = channels, .out = channels, .kernel = 3, .seed = 11}));
    add("bn1", std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = channels}));
    add("act1", std::make_shared<Activation>(ActivationKind::relu));
    add("conv2", std::make_shared<Conv2d>(Conv2dOptions{.in = channels, .out = channels, .kernel = 3, .seed = 12}));
    add("bn2", std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = channels}));
    add("add", std::make_shared<Add>());
    add("act2", std::make_shared<Activation>(ActivationKind::relu));
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (const char* name : {"conv1", "bn1", "act1", "conv2", "bn2"}) y = child(name)->forward(y);
    y = merge_child(*this, "add", {y, x});
    return child("act2")->forward(y);
  }
  std::string type_name() const override { return "Residual"; }
};

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "model_int8.safetensors";
  auto model = std::make_shared<Sequential>();
  model->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 16, .kernel = 3, .stride = 2, .seed = 1}), "stem");
  model->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 16}), "stem_bn");
  model->push(std::make_shared<Activation>(ActivationKind::relu6), "stem_act");
  model->push(std::make_shared<Residual>(16), "block");
  model->push(std::make_shared<GlobalAvgPool>(), "pool");
  model->push(std::make_shared<Flatten>(), "flatten");
  model->push(std::make_shared<Dense>(DenseOptions{.in = 16, .out = 4, .seed = 2}), "classifier");

  quant::quantize(*model, {});  // 8-bit weights (per channel) and activations
  for (const auto& q : quant::list_quantizers(*model)) std::printf("quantizer %s\n", q.name.c_str());

  // A toy task: the class is the brightest quarter of the image.
  std::mt19937 rng(0);
  optim::Sgd opt(model->named_parameters(), {.momentum = 0.9f});
  for (int step = 0; step < 60; ++step) {
    Tensor x = Tensor::randn({16, 16, 16, 3}, rng);
    Tensor labels = Tensor::empty({16}, DType::s64);
    for (int64_t n = 0; n < 16; ++n) {
      const int64_t k = static_cast<int64_t>(rng() % 4);
      labels.data<int64_t>()[n] = k;
      for (int64_t h = (k / 2) * 8; h < (k / 2) * 8 + 8; ++h)
        for (int64_t w = (k % 2) * 8; w < (k % 2) * 8 + 8; ++w)
          for (int64_t c = 0; c < 3; ++c) x.data<float>()[((n * 16 + h) * 16 + w) * 3 + c] += 2.0f;
    }
    model->zero_grad();
    Tensor loss = ops::softmax_cross_entropy(model->forward(x), labels);
    loss.backward();
    opt.step(0.02f);
    if (step % 20 == 0) std::printf("step %d loss %.4f\n", step, loss.item());
  }

  model->eval();
  Tensor sample = Tensor::randn({1, 16, 16, 3}, rng);
  quant::Int8Model int8 = quant::convert(*model, sample);
  int worst = 0;
  for (const auto& layer : quant::compare_with_simulation(*model, int8, Tensor::randn({8, 16, 16, 3}, rng))) {
    std::printf("%-28s %-16s largest difference %d step(s)\n", layer.name.c_str(), layer.op.c_str(), layer.max_steps);
    worst = std::max(worst, layer.max_steps);
  }
  int8.save(out);
  quant::Int8Model loaded = quant::Int8Model::load(out);
  Tensor logits = loaded.run(sample);
  std::printf("int8 model: %zu ops, saved to %s; logits of the sample:", loaded.ops().size(), out.c_str());
  for (int64_t k = 0; k < logits.numel(); ++k) std::printf(" %.3f", logits.data<float>()[k]);
  std::printf("\n");
  return worst <= 1 ? 0 : 1;  // the scheme keeps every layer within one step
}
