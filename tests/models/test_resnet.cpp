// ResNet: topology against the Model Garden's counts (spec §6.1, §6.2), the
// blocks against the layer conformance check, and whole models against
// torchvision (eval logits and train-mode gradients of every parameter).
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/layout.h"
#include "core/ops.h"
#include "layers/state.h"
#include "models/classification.h"
#include "models/resnet.h"
#include "models/torchvision_import.h"
#include "tests/layer_check.h"
#include "tests/peer/torchvision_peer.h"

using namespace bonsai;
namespace fs = std::filesystem;

namespace {

// Keras count_params: trainable parameters plus BN moving statistics.
int64_t keras_count(const Module& m) {
  int64_t n = m.num_parameters();
  for (const auto& [name, t] : m.named_buffers()) n += t.numel();
  return n;
}

std::shared_ptr<Module> backbone_of(const std::shared_ptr<Module>& model) { return model->child("backbone"); }

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/bonsai_resnet_XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(double(t.data<float>()[i])));
  return m;
}

// ||a - b||_2 / ||b||_2
double rel_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double d = double(a.data<float>()[i]) - double(b.data<float>()[i]);
    num += d * d;
    den += double(b.data<float>()[i]) * double(b.data<float>()[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// How closely the train-mode gradients can agree. Float32 rounding moves a
// few pre-activations that sit within ~1e-5 of zero to the other side of a
// ReLU, and each such flip shifts the gradient of every parameter below it
// by roughly 1/sqrt(elements of that layer) — about 1% in the small deep
// maps of a 33x33 input. ResNet18 (138k ReLU outputs, smaller float error)
// has no flip at this input, so it is held to 1e-3 everywhere.
// torchvision's own float32 ResNet50 gradients differ from its float64 ones
// by 0.7-4% (relative L2) at every input size (33-224), batch (1-16) and seed
// tried (2-4 mask flips at 33x33; the peer's initialisation), so no float32
// implementation can match its float32 gradients to 1e-3: bonsai's differ
// from them by up to 2.1% here. Measured against the float64 gradients of
// the same weights and batch, bonsai's error is 1.0-1.33x torch float32's
// own (median 2.5% vs 2.2%, worst 3.45% vs 3.45%), so for ResNet50 the
// backbone is held to that: at most twice torch float32's error against
// float64, plus 1e-3 (`vs_float64`), and to 1e-1 against torch float32,
// which catches a gradient that is structurally wrong (a missing path, a
// transposed kernel, a misplaced stride). The head (above every ReLU) is
// held to 1e-3. The ops themselves are held to tight bounds by ResNet18
// here (3x3, 7x7 and strided 1x1 convs, BN, ReLU, max-pool, add, pooling,
// dense) and by the op golden tests (1x1 convs among them).
struct GradTolerance {
  double head = 1e-3;
  double backbone = 1e-3;
  // When > 0, the gradients are also compared with the float64 ones
  // (tests/peer/torchvision_grad64.py, same weights and batch): each
  // parameter's relative L2 error against them must be at most
  // `vs_float64` times torch float32's own error there, plus 1e-3 — bonsai
  // is as accurate as PyTorch's float32, measured against the exact answer.
  double vs_float64 = 0;
};

// The peer's gradients (`grad.<torch name>` in `expected`) in bonsai layout
// and names: the importer's own mapping, run on the torch state with every
// parameter replaced by its gradient (the buffers keep the weights' values:
// look up parameters only).
std::map<std::string, Tensor> torch_grads_in_bonsai_layout(int depth, const std::map<std::string, Tensor>& weights,
                                                           const std::map<std::string, Tensor>& expected) {
  std::map<std::string, Tensor> torch_grads = weights;
  for (const auto& [k, g] : expected)
    if (k.rfind("grad.", 0) == 0) {
      const std::string param = k.substr(5);
      REQUIRE_MESSAGE(torch_grads.count(param), "gradient of unknown torch parameter " << param);
      torch_grads[param] = g;
    }
  return models::import_torchvision_resnet(depth, torch_grads).state;
}

// Imports torchvision weights, builds the bonsai model with the imported
// options, and checks eval logits, the train-mode loss and the gradient of
// every parameter against the peer's.
void check_torchvision_parity(int depth, const GradTolerance& tol_grad) {
  const std::string name = "resnet" + std::to_string(depth);
  TempDir dir;
  testing::run_torchvision_peer(name, dir.path, /*res=*/33, /*batch=*/2, /*classes=*/10);
  const auto weights = io::load_safetensors(dir.file("weights.safetensors"));
  const auto inputs = io::load_safetensors(dir.file("input.safetensors"));
  const auto expected = io::load_safetensors(dir.file("expected.safetensors"));

  models::ImportedModel imported = models::import_torchvision_resnet(depth, weights);
  CHECK(imported.name == name);
  CHECK(imported.options.at("num_classes") == 10);
  auto model = models::build_resnet(depth, imported.options);
  LoadReport report = load_state(*model, imported.state);  // strict
  CHECK(report.loaded.size() == state_dict(*model).size());

  const Tensor x = nchw_to_nhwc(inputs.at("input"));  // [2, 33, 33, 3]
  const Tensor labels = inputs.at("labels");          // [2] s64

  // Eval logits.
  model->eval();
  Tensor logits;
  {
    NoGrad ng;
    logits = model->forward(x);
  }
  const Tensor& want = expected.at("logits");
  REQUIRE(logits.shape() == want.shape());
  const double tol = 1e-4 * max_abs(want) + 1e-4;
  double worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::fabs(double(logits.data<float>()[i]) - double(want.data<float>()[i])));
  CHECK_MESSAGE(worst <= tol, name << " eval logits: max |bonsai - torch| = " << worst << " > " << tol);

  // Train-mode loss and gradients (batch statistics, dropout 0).
  model->train();
  model->zero_grad();
  Tensor loss = ops::softmax_cross_entropy(model->forward(x), labels);
  loss.backward();
  const float want_loss = expected.at("loss").data<float>()[0];
  CHECK(loss.item() == doctest::Approx(want_loss).epsilon(1e-4));

  const auto grads = torch_grads_in_bonsai_layout(depth, weights, expected);
  const auto params = model->named_parameters();
  const auto n_grads = std::count_if(expected.begin(), expected.end(),
                                     [](const auto& e) { return e.first.rfind("grad.", 0) == 0; });
  CHECK(static_cast<std::ptrdiff_t>(params.size()) == n_grads);
  double worst_head = 0, worst_backbone = 0;
  for (const auto& p : params) {
    Tensor g = p.tensor.grad();
    REQUIRE_MESSAGE(g.defined(), name << ": no gradient reached " << p.name);
    const Tensor& w = grads.at(p.name);
    REQUIRE(g.shape() == w.shape());
    const double e = rel_l2(g, w);
    const bool head = p.name.rfind("head.", 0) == 0;
    const double bound = head ? tol_grad.head : tol_grad.backbone;
    (head ? worst_head : worst_backbone) = std::max(head ? worst_head : worst_backbone, e);
    CHECK_MESSAGE(e <= bound,
                  name << ": gradient of " << p.name << " has relative L2 error " << e << " > " << bound);
  }
  if (tol_grad.vs_float64 > 0) {
    testing::run_torchvision_grad64(name, dir.path);
    const auto grads64 =
        torch_grads_in_bonsai_layout(depth, weights, io::load_safetensors(dir.file("expected64.safetensors")));
    double worst_bonsai = 0, worst_torch = 0;
    for (const auto& p : params) {
      const double e_bonsai = rel_l2(p.tensor.grad(), grads64.at(p.name));
      const double e_torch = rel_l2(grads.at(p.name), grads64.at(p.name));
      worst_bonsai = std::max(worst_bonsai, e_bonsai);
      worst_torch = std::max(worst_torch, e_torch);
      const double bound = tol_grad.vs_float64 * e_torch + 1e-3;
      CHECK_MESSAGE(e_bonsai <= bound, name << ": gradient of " << p.name << " is " << e_bonsai
                                            << " from float64 (relative L2), torch float32 " << e_torch
                                            << ": over " << bound);
    }
    MESSAGE(name << " against float64 gradients, worst relative L2: bonsai " << worst_bonsai
                 << ", torch float32 " << worst_torch);
  }
  MESSAGE(name << " vs torchvision: logits max err " << worst << " (tol " << tol
               << "); gradient rel L2, worst: head " << worst_head << ", backbone " << worst_backbone
               << " over " << params.size() << " parameters");
}

}  // namespace

TEST_CASE("resnet: parameter counts match the Model Garden's") {
  // Whole ResNet50 classifier, 1000 classes, trainable (§6.2).
  auto r50 = models::build_resnet(50, {});
  CHECK(r50->num_parameters() == 25'557'032);
  CHECK(keras_count(*r50) == 25'610'152);
  // Backbones, Keras count_params (resnet_test.py, §6.1).
  CHECK(keras_count(*backbone_of(r50)) == 23'561'152);
  CHECK(keras_count(*backbone_of(models::build_resnet(18, {}))) == 11'190'464);
  CHECK(keras_count(*backbone_of(models::build_resnet(101, {}))) == 42'605'504);

  // R18 projects in group2's first block (64 -> 64) unless told not to, as
  // torchvision does not: the difference is one 1x1 conv and one BN.
  auto r18_tv = models::build_resnet(18, {{"use_first_projection", false}});
  CHECK(keras_count(*backbone_of(r18_tv)) == 11'190'464 - (64 * 64 + 4 * 64));
  CHECK_THROWS(r18_tv->child("backbone.group2.block0.shortcut"));
  CHECK(r18_tv->child("backbone.group3.block0.shortcut")->type_name() == "Conv2dBNBlock");
}

TEST_CASE("resnet: ResNet50 (TF SAME) — endpoints, names, MACs at 224, a training step") {
  auto model = models::build_resnet(50, {});
  auto backbone = std::dynamic_pointer_cast<models::Backbone>(model->child("backbone"));
  REQUIRE(backbone);
  std::map<std::string, int64_t> want_ch{{"2", 256}, {"3", 512}, {"4", 1024}, {"5", 2048}};
  CHECK(backbone->endpoint_channels() == want_ch);

  // TF SAME puts the odd padding pixel bottom/right: 7x7 s2 on 224 pads
  // (2, 3); symmetric (torchvision) pads 3 on every side.
  auto stem_conv = std::dynamic_pointer_cast<Conv2d>(model->child("backbone.stem.conv"));
  REQUIRE(stem_conv);
  const ops::Padding same = stem_conv->padding_for(224, 224);
  CHECK((same.top == 2 && same.left == 2 && same.bottom == 3 && same.right == 3));
  auto sym_model = models::build_resnet(18, {{"padding_style", "symmetric"}});
  const ops::Padding sym =
      std::dynamic_pointer_cast<Conv2d>(sym_model->child("backbone.stem.conv"))->padding_for(224, 224);
  CHECK((sym.top == 3 && sym.left == 3 && sym.bottom == 3 && sym.right == 3));

  // Names read as the topology.
  auto sd = state_dict(*model);
  for (const char* n : {"backbone.stem.conv.kernel", "backbone.stem.bn.moving_variance",
                        "backbone.group2.block0.shortcut.conv.kernel", "backbone.group5.block2.conv3.kernel",
                        "backbone.group4.block5.bn2.gamma", "head.dense.kernel", "head.dense.bias"})
    CHECK_MESSAGE(sd.count(n), "missing " << n);
  CHECK_FALSE(sd.count("backbone.group2.block1.shortcut.conv.kernel"));
  CHECK_FALSE(sd.count("backbone.group4.block6.conv1.kernel"));
  CHECK(model->child("backbone.group3.block0")->type_name() == "BottleneckBlock");
  // v1.5: the stride is on the 3x3 conv, the 1x1s keep full resolution.
  CHECK(sd.at("backbone.group3.block0.conv2.kernel").shape() == Shape{3, 3, 128, 128});

  // One model for both checks below (building ResNet50 is not free; a
  // SUBCASE would rebuild it).
  std::mt19937 rng(3);
  {  // Eval at 224: endpoint shapes and MACs (§6.2).
    Tensor x = Tensor::randn({1, 224, 224, 3}, rng);
    model->eval();
    NoGrad ng;
    auto eps = backbone->endpoints(x);
    CHECK(eps.at("2").shape() == Shape{1, 56, 56, 256});
    CHECK(eps.at("3").shape() == Shape{1, 28, 28, 512});
    CHECK(eps.at("4").shape() == Shape{1, 14, 14, 1024});
    CHECK(eps.at("5").shape() == Shape{1, 7, 7, 2048});
    Tensor logits = model->child("head")->forward(eps.at("5"));
    CHECK(logits.shape() == Shape{1, 1000});
    const double macs = static_cast<double>(model->macs());
    MESSAGE("ResNet50 @224 MACs: " << macs);
    CHECK(macs == doctest::Approx(4.089e9).epsilon(0.01));
  }
  {  // Train mode at 64: forward, loss, a gradient for every parameter.
    Tensor x = Tensor::randn({1, 64, 64, 3}, rng);
    Tensor labels = Tensor::zeros({1}, DType::s64);
    labels.data<int64_t>()[0] = 7;
    model->train();
    Tensor logits = model->forward(x);
    CHECK(logits.shape() == Shape{1, 1000});
    Tensor loss = ops::softmax_cross_entropy(logits, labels);
    CHECK(std::isfinite(loss.item()));
    loss.backward();
    for (const auto& p : model->named_parameters()) {
      Tensor g = p.tensor.grad();
      REQUIRE_MESSAGE(g.defined(), "no gradient reached " << p.name);
      CHECK_MESSAGE(std::isfinite(max_abs(g)), "non-finite gradient in " << p.name);
    }
  }
}

TEST_CASE("resnet: options are strict") {
  CHECK_THROWS_WITH_AS(models::build_resnet(50, {{"num_clases", 10}}), doctest::Contains("num_clases"),
                       Error);
  CHECK_THROWS_WITH_AS(models::build_resnet(42, {}), doctest::Contains("42"), Error);
  CHECK_THROWS_AS(models::build_resnet(18, {{"padding_style", "reflect"}}), Error);
  CHECK_THROWS_AS(models::build_resnet(18, {{"num_classes", "ten"}}), Error);
  auto m = models::build_resnet(18, {{"num_classes", 7},
                                     {"dropout_rate", 0.5},
                                     {"seed", 3},
                                     {"padding_style", "symmetric"},
                                     {"bn_epsilon", 1e-5},
                                     {"bn_momentum", 0.9}});
  CHECK(state_dict(*m).at("head.dense.bias").shape() == Shape{7});
}

// Finite differences cannot step across ReLU's kink (a perturbation that
// crosses it changes the slope), so the conformance checks run the blocks
// with a smooth activation; ReLU has its own gradient tests in core, and the
// torchvision parity runs the real ReLUs through whole models.
constexpr ActivationKind kSmooth = ActivationKind::sigmoid;

TEST_CASE("resnet: blocks pass the layer conformance check") {
  using testing::check_layer;
  const auto basic_checks = [](Module& m) {
    for (const char* c : {"conv1", "bn1", "conv2", "bn2"}) CHECK_NOTHROW(m.child(c));
  };
  SUBCASE("bottleneck, strided projection") {
    models::BottleneckBlock b(
        {.in = 6, .filters = 4, .stride = 2, .use_projection = true, .activation = kSmooth, .seed = 5});
    basic_checks(b);
    CHECK(b.child("shortcut.conv")->type_name() == "Conv2d");
    check_layer(b, {2, 7, 7, 6});
    NoGrad ng;
    std::mt19937 rng(1);
    CHECK(b.forward(Tensor::randn({2, 7, 7, 6}, rng)).shape() == Shape{2, 4, 4, 16});
  }
  SUBCASE("bottleneck, identity shortcut, symmetric padding, dilated") {
    models::BottleneckBlock b(
        {.in = 12, .filters = 3, .dilation = 2, .activation = kSmooth, .padding = PaddingStyle::symmetric});
    CHECK_THROWS(b.child("shortcut"));
    check_layer(b, {2, 6, 6, 12});
  }
  SUBCASE("residual, strided projection") {
    models::ResidualBlock b(
        {.in = 4, .filters = 6, .stride = 2, .use_projection = true, .activation = kSmooth, .seed = 9});
    basic_checks(b);
    check_layer(b, {2, 7, 7, 4});
    NoGrad ng;
    std::mt19937 rng(1);
    CHECK(b.forward(Tensor::randn({2, 7, 7, 4}, rng)).shape() == Shape{2, 4, 4, 6});
  }
  SUBCASE("residual, identity shortcut") {
    models::ResidualBlock b({.in = 5, .filters = 5, .activation = kSmooth});
    check_layer(b, {2, 5, 5, 5});
  }
  SUBCASE("an identity shortcut that cannot be one is an error") {
    CHECK_THROWS_AS(models::ResidualBlock({.in = 4, .filters = 8}), Error);
    CHECK_THROWS_AS(models::BottleneckBlock({.in = 16, .filters = 4, .stride = 2}), Error);
    models::ResidualBlock b({.in = 5, .filters = 5});
    std::mt19937 rng(1);
    CHECK_THROWS_WITH_AS(b.forward(Tensor::randn({1, 4, 4, 3}, rng)), doctest::Contains("[N, H, W, 5]"),
                         Error);
  }
}

TEST_CASE("resnet: torchvision resnet18 parity (logits and every gradient)") {
  check_torchvision_parity(18, {.head = 1e-3, .backbone = 1e-3});
}

TEST_CASE("resnet: torchvision resnet50 parity (logits and every gradient)") {
  // See GradTolerance: the backbone bound is the float32 reference's own noise.
  check_torchvision_parity(50, {.head = 1e-3, .backbone = 1e-1, .vs_float64 = 2});
}

TEST_CASE("resnet: torchvision import names what it cannot place") {
  // A synthetic resnet18 state: only names and shapes matter to the importer.
  auto model = models::build_resnet(18, {{"num_classes", 3}, {"use_first_projection", false}});
  std::map<std::string, Tensor> ts;
  auto conv = [&](const std::string& n, int64_t o, int64_t i, int64_t k) {
    ts[n + ".weight"] = Tensor::zeros({o, i, k, k});
  };
  auto bn = [&](const std::string& n, int64_t c) {
    for (const char* s : {".weight", ".bias", ".running_mean", ".running_var"})
      ts[n + s] = Tensor::zeros({c});
    ts[n + ".num_batches_tracked"] = Tensor::zeros({1}, DType::s64);
  };
  conv("conv1", 64, 3, 7);
  bn("bn1", 64);
  int64_t in = 64;
  for (int g = 0; g < 4; ++g) {
    const int64_t f = 64 << g;
    for (int b = 0; b < 2; ++b) {
      const std::string t = "layer" + std::to_string(g + 1) + "." + std::to_string(b);
      conv(t + ".conv1", f, b == 0 ? in : f, 3);
      bn(t + ".bn1", f);
      conv(t + ".conv2", f, f, 3);
      bn(t + ".bn2", f);
      if (b == 0 && g > 0) {
        conv(t + ".downsample.0", f, in, 1);
        bn(t + ".downsample.1", f);
      }
    }
    in = f;
  }
  ts["fc.weight"] = Tensor::zeros({3, 512});
  ts["fc.bias"] = Tensor::zeros({3});

  auto m = models::import_torchvision_resnet(18, ts);
  CHECK(m.options.at("use_first_projection") == false);
  CHECK(m.options.at("num_classes") == 3);
  CHECK_NOTHROW(load_state(*models::build_resnet(18, m.options), m.state));
  CHECK(m.state.size() == state_dict(*model).size());

  auto extra = ts;
  extra["layer2.0.conv3.weight"] = Tensor::zeros({1, 1, 1, 1});
  CHECK_THROWS_WITH_AS(models::import_torchvision_resnet(18, extra),
                       doctest::Contains("layer2.0.conv3.weight"), Error);
  auto missing = ts;
  missing.erase("layer3.0.downsample.1.running_var");
  CHECK_THROWS_WITH_AS(models::import_torchvision_resnet(18, missing),
                       doctest::Contains("layer3.0.downsample.1.running_var"), Error);
  // resnet18 weights are not resnet34's.
  CHECK_THROWS_AS(models::import_torchvision_resnet(34, ts), Error);
}
