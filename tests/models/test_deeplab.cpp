// DeepLabV3 / V3+ with MobileNetV2: the ASPP and segmentation head pass the
// layer conformance check, and the whole models match the Model Garden's
// resolved graph (spec §3.4) through the counts of §6.4 — parameters, Keras
// count (with BN moving statistics) and MACs at 512x512 with 21 classes,
// without the unused 1x1→1280 backbone conv.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/autograd.h"
#include "core/ops.h"
#include "models/deeplab.h"
#include "models/segmentation.h"
#include "tests/layer_check.h"

using namespace bonsai;
using namespace bonsai::models;

namespace {

// The head starts from RandomNormal(0.01) kernels, whose outputs are so small
// that a finite-difference check would pass on anything; give the conformance
// checks weights of a useful size.
void rescale_kernels(Module& m, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  for (auto& p : m.named_parameters())
    if (p.role == ParamRole::conv_kernel || p.role == ParamRole::depthwise_kernel)
      p.tensor.copy_from(Tensor::randn(p.tensor.shape(), rng, stddev));
}

// Buffers count too in Keras' count_params (BN moving mean and variance).
int64_t keras_count(const Module& m) {
  int64_t n = m.num_parameters();
  for (const auto& [name, t] : m.named_buffers()) n += t.numel();
  return n;
}

bool has_param(const Module& m, const std::string& name) {
  for (const auto& p : m.named_parameters())
    if (p.name == name) return true;
  return false;
}

// A fused head seen as one-input layer for check_layer: the input is the
// low-level feature map, and a 2x2 average pool of it plays the decoder
// output (half the resolution, as a real decoder's is coarser).
class FusedHeadProbe : public Module {
 public:
  explicit FusedHeadProbe(const SegmentationHeadOptions& o) { add("head", std::make_shared<SegmentationHead>(o)); }
  Tensor forward(const Tensor& x) override {
    Tensor coarse = ops::avg_pool2d(x, {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2});
    return std::dynamic_pointer_cast<SegmentationHead>(child("head"))->forward(coarse, x);
  }
  std::string type_name() const override { return "FusedHeadProbe"; }
};

// The conformance checks compare eval-mode gradients with central
// differences; with ReLU, a step of 1e-2 crosses kinks in some of the many
// pre-activations and the difference quotient is then wrong, not the
// gradient. The blocks take their activation as an option, so the checks run
// them with a smooth one (sigmoid); ReLU's own gradient is tested in core/.
constexpr ActivationKind kSmooth = ActivationKind::sigmoid;

}  // namespace

TEST_CASE("deeplab: ASPP conformance (global pooling, atrous, depthwise, window pooling)") {
  using testing::check_layer;
  SUBCASE("global pooling + two atrous rates") {
    ASPP aspp({.in_channels = 5, .dilation_rates = {1, 2}, .num_filters = 4, .activation = kSmooth, .seed = 3});
    CHECK(has_param(aspp, "atrous1.conv.kernel"));
    CHECK(has_param(aspp, "pool_conv.bn.gamma"));
    CHECK(has_param(aspp, "project.conv.kernel"));
    CHECK(aspp.named_parameters().size() == 5 * 3);  // 5 conv-BN units: kernel, gamma, beta
    check_layer(aspp, {2, 7, 9, 5}, {.max_params_checked = 6});
  }
  SUBCASE("depthwise separable atrous branch") {
    ASPP aspp({.in_channels = 4, .dilation_rates = {2}, .num_filters = 3, .use_depthwise_convolution = true,
               .activation = kSmooth, .seed = 4});
    CHECK(has_param(aspp, "atrous0_depthwise.kernel"));
    check_layer(aspp, {2, 6, 5, 4}, {.max_params_checked = 6});
  }
  SUBCASE("window pooling: [8, 12] input pixels at level 1 is a 4x6 VALID window") {
    ASPP aspp({.in_channels = 3, .level = 1, .num_filters = 4, .pool_kernel_size = {8, 12},
               .activation = kSmooth, .seed = 5});
    check_layer(aspp, {2, 9, 13, 3});  // 2x2 pooled map, resized back to 9x13
    NoGrad ng;
    aspp.eval();
    CHECK_THROWS_AS(aspp.forward(Tensor::zeros({1, 3, 13, 3})), Error);  // window taller than the map
  }
  SUBCASE("output shape and input check") {
    ASPP aspp({.in_channels = 6, .num_filters = 8});
    NoGrad ng;
    aspp.eval();
    CHECK(aspp.forward(Tensor::zeros({1, 5, 3, 6})).shape() == Shape{1, 5, 3, 8});
    CHECK_THROWS_AS(aspp.forward(Tensor::zeros({1, 5, 3, 7})), Error);
    aspp.train();  // one image: the pooling branch's BN has one value per channel
    CHECK_THROWS_AS(aspp.forward(Tensor::zeros({1, 5, 3, 6})), Error);
    CHECK(aspp.forward(Tensor::zeros({2, 5, 3, 6})).shape() == Shape{2, 5, 3, 8});
  }
}

TEST_CASE("deeplab: segmentation head conformance") {
  using testing::check_layer;
  SUBCASE("plain head: 3x3 conv + classifier") {
    SegmentationHead head({.in_channels = 6, .num_classes = 3, .num_convs = 1, .num_filters = 4,
                           .activation = kSmooth});
    CHECK(has_param(head, "conv0.conv.kernel"));
    CHECK(has_param(head, "classifier.bias"));
    rescale_kernels(head, 0.4f, 1);
    check_layer(head, {2, 5, 6, 6});
  }
  SUBCASE("classifier only (DeepLabV3): a 1x1 conv with bias") {
    SegmentationHead head({.in_channels = 4, .num_classes = 3, .num_convs = 0});
    CHECK(head.named_parameters().size() == 2);
    rescale_kernels(head, 0.4f, 2);
    check_layer(head, {2, 3, 3, 4});
  }
  SUBCASE("deeplabv3plus fusion, depthwise-separable convs") {
    FusedHeadProbe probe({.in_channels = 5, .num_classes = 3, .num_convs = 2, .num_filters = 4,
                          .use_depthwise_convolution = true,
                          .feature_fusion = FeatureFusion::deeplabv3plus, .low_level = "2/depthwise",
                          .low_level_channels = 5, .low_level_num_filters = 2, .activation = kSmooth});
    CHECK(has_param(probe, "head.fusion.conv.kernel"));
    CHECK(has_param(probe, "head.depthwise0.conv.kernel"));
    CHECK(has_param(probe, "head.conv1.bn.beta"));
    rescale_kernels(probe, 0.4f, 3);
    check_layer(probe, {2, 6, 8, 5}, {.max_params_checked = 6});
    NoGrad ng;
    probe.eval();
    CHECK(probe.forward(Tensor::zeros({1, 6, 8, 5})).shape() == Shape{1, 6, 8, 3});  // at the low level's size
  }
  SUBCASE("deeplabv3plus_sum_to_merge fusion") {
    FusedHeadProbe probe({.in_channels = 4, .num_classes = 2, .num_convs = 1, .num_filters = 3,
                          .feature_fusion = FeatureFusion::deeplabv3plus_sum_to_merge,
                          .low_level_channels = 4, .low_level_num_filters = 4, .activation = kSmooth});
    rescale_kernels(probe, 0.4f, 4);
    check_layer(probe, {2, 5, 7, 4});
  }
  SUBCASE("a fused head needs its low-level features") {
    SegmentationHead head({.in_channels = 4, .num_classes = 2, .num_convs = 0,
                           .feature_fusion = FeatureFusion::deeplabv3plus, .low_level_channels = 3});
    CHECK_THROWS_AS(head.forward(Tensor::zeros({1, 2, 2, 4})), Error);
    CHECK_THROWS_AS(SegmentationHead({.in_channels = 4, .num_classes = 2,
                                      .feature_fusion = FeatureFusion::deeplabv3plus_sum_to_merge,
                                      .low_level_channels = 3, .low_level_num_filters = 48}),
                    Error);
  }
}

// §6.4: DeepLab @512x512, 21 classes, without the unused 1280 conv.
TEST_CASE("deeplab: DeepLabV3-MNV2 counts and MACs at 512x512") {
  auto model = build_deeplab(false, {});
  CHECK(model->num_parameters() == 2113557);
  CHECK(keras_count(*model) == 2146645);
  CHECK(has_param(*model, "decoder.conv1x1.conv.kernel"));
  CHECK(has_param(*model, "decoder.pool_conv.conv.kernel"));
  CHECK(has_param(*model, "head.classifier.kernel"));
  CHECK_FALSE(has_param(*model, "head.conv0.conv.kernel"));  // num_convs 0
  auto seg = std::dynamic_pointer_cast<SegmentationModel>(model);
  REQUIRE(seg);
  NoGrad ng;
  model->eval();
  Tensor logits = model->forward(Tensor::zeros({1, 512, 512, 3}));
  CHECK(logits.shape() == Shape{1, 32, 32, 21});
  const double gmacs = static_cast<double>(model->macs()) / 1e9;
  MESSAGE("DeepLabV3-MNV2: " << model->num_parameters() << " params, " << model->macs() << " MACs");
  CHECK(std::round(gmacs * 1000) == 2604);
}

TEST_CASE("deeplab: DeepLabV3+-MNV2 counts and MACs at 512x512") {
  auto model = build_deeplab(true, {});
  CHECK(model->num_parameters() == 2271109);
  CHECK(keras_count(*model) == 2306437);
  CHECK(has_param(*model, "head.fusion.conv.kernel"));
  CHECK(has_param(*model, "head.depthwise1.conv.kernel"));
  CHECK(has_param(*model, "head.conv1.conv.kernel"));
  NoGrad ng;
  model->eval();
  Tensor logits = model->forward(Tensor::zeros({1, 512, 512, 3}));
  CHECK(logits.shape() == Shape{1, 128, 128, 21});
  const double gmacs = static_cast<double>(model->macs()) / 1e9;
  MESSAGE("DeepLabV3+-MNV2: " << model->num_parameters() << " params, " << model->macs() << " MACs");
  CHECK(std::round(gmacs * 1000) == 5231);
}

TEST_CASE("deeplab: options are strict and checked") {
  CHECK_THROWS_AS(build_deeplab(false, {{"no_such_option", 1}}), Error);
  CHECK_THROWS_AS(build_deeplab(false, {{"low_level", "2"}}), Error);  // V3 has no feature fusion
  CHECK_THROWS_AS(build_deeplab(false, {{"output_stride", 4}}), Error);
  CHECK_THROWS_AS(build_deeplab(true, {{"feature_fusion", "pyramid"}}), Error);
  auto m = build_deeplab(false, {{"num_classes", 4}, {"dilation_rates", {6, 12, 18}}, {"seed", 3}});
  CHECK(has_param(*m, "decoder.atrous2.conv.kernel"));
  CHECK(m->child("head.classifier")->named_parameters()[1].tensor.numel() == 4);  // classifier bias
  // No trace of the unused final 1x1→1280 conv.
  for (const auto& p : m->named_parameters()) CHECK_MESSAGE(p.tensor.dim(-1) != 1280, p.name);

  // The ASPP follows the output stride: level log2(OS) of the backbone.
  NoGrad ng;
  for (int os : {8, 32}) {
    CAPTURE(os);
    auto v = build_deeplab(false, {{"num_classes", 3}, {"output_stride", os}});
    v->eval();
    CHECK(v->forward(Tensor::zeros({1, 64, 64, 3})).shape() == Shape{1, 64 / os, 64 / os, 3});
  }
  auto thin = build_deeplab(true, {{"num_classes", 3}, {"width_multiplier", 0.5}, {"low_level", "3/depthwise"},
                                   {"low_level_num_filters", 8}, {"pool_kernel_size", {64, 32}}});
  thin->eval();
  CHECK(thin->forward(Tensor::zeros({1, 64, 64, 3})).shape() == Shape{1, 8, 8, 3});  // fused at stride 8
}

TEST_CASE("deeplab: DeepLabV3 trains end to end at small odd sizes") {
  auto model = build_deeplab(false, {{"num_classes", 5}, {"seed", 1}});
  auto seg = std::dynamic_pointer_cast<SegmentationModel>(model);
  REQUIRE(seg);
  std::mt19937 rng(2);
  for (int64_t size : {65, 33}) {
    CAPTURE(size);
    model->train();
    model->zero_grad();
    Tensor x = Tensor::randn({2, size, size, 3}, rng);
    Tensor labels = Tensor::zeros({2, size, size}, DType::s64);
    int64_t* l = labels.data<int64_t>();
    for (int64_t i = 0; i < labels.numel(); ++i) l[i] = i % 7 == 0 ? 255 : (i / 3) % 5;  // some ignored pixels
    Tensor logits = model->forward(x);
    const int64_t h = (((size + 1) / 2 + 1) / 2 + 1) / 2;  // TF SAME: ceil halvings to stride 8 …
    CHECK(logits.shape() == Shape{2, (h + 1) / 2, (h + 1) / 2, 5});  // … and 16
    Tensor full = ops::resize_bilinear(logits, size, size);  // the loss compares at label size
    Tensor loss = ops::softmax_cross_entropy(full, labels, {.ignore_label = 255});
    CHECK(std::isfinite(loss.item()));
    loss.backward();
    int with_signal = 0;
    for (const auto& p : model->named_parameters()) {
      Tensor g = p.tensor.grad();
      REQUIRE_MESSAGE(g.defined(), "no gradient reached " << p.name);
      REQUIRE(g.shape() == p.tensor.shape());
      double norm = 0;
      const float* gp = g.data<float>();
      for (int64_t i = 0; i < g.numel(); ++i) norm += double(gp[i]) * gp[i];
      CHECK_MESSAGE(std::isfinite(norm), p.name << " has a non-finite gradient");
      with_signal += norm > 0;
    }
    // Every parameter but possibly a few dead-ReLU BN betas gets a signal.
    CHECK(with_signal > static_cast<int>(model->named_parameters().size()) * 9 / 10);
    model->eval();
    NoGrad ng;
    CHECK(seg->predict(x).shape() == Shape{2, size, size, 5});
  }
}
