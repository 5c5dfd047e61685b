// Golden tests: bonsai's ops against PyTorch 1.13, forward and backward.
//
// tests/golden/make_golden.py wrote one safetensors file per case, already in
// bonsai's layouts (NHWC, HWIO), holding the inputs, the params, PyTorch's
// output "y", a random upstream gradient "gy" and PyTorch's gradients of
// sum(y * gy); the op's parameters are in the file's metadata. Each case here
// runs the bonsai op on the same inputs, backpropagates the same loss and
// compares everything. This is what pins down conventions a gradient check
// cannot: padding sides, weight layout, group order, pooling's padding
// semantics, resize's pixel centres, running-stat momentum and variance bias.
#include <algorithm>
#include <cmath>
#include <doctest/doctest.h>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"

using bonsai::Tensor;
namespace io = bonsai::io;
namespace ops = bonsai::ops;

namespace {

const char* const kConvCases[] = {
    "conv_1x1",         "conv_1x1_nobias", "conv_3x3_s1_p1",     "conv_3x3_s2_same",
    "conv_5x5_s2_p2",   "conv_7x7_s2_p3",  "conv_3x3_d2_p2",     "conv_dw3x3_s1",
    "conv_dw3x3_s2_same", "conv_dw3x3_mult2", "conv_grouped_g2",
};
const char* const kPoolCases[] = {
    "maxpool_3x3_s2_p1",      "maxpool_2x2_s2", "avgpool_3x3_s1_p1_excl",
    "avgpool_3x3_s1_p1_incl", "avgpool_2x2_s2",
};
const char* const kResizeCases[] = {"resize_up_5x7_to_11x13", "resize_down_12x10_to_5x4"};
const char* const kBatchNormCases[] = {"batchnorm_train", "batchnorm_eval"};

std::string golden_dir() { return std::string(BONSAI_SOURCE_ROOT) + "/tests/golden/data"; }

struct Golden {
  std::string name;
  io::SafetensorsFile file;

  explicit Golden(const std::string& n)
      : name(n), file(io::read_safetensors(golden_dir() + "/" + n + ".safetensors")) {}

  Tensor get(const std::string& key) const {
    auto it = file.tensors.find(key);
    BONSAI_CHECK(it != file.tensors.end(), "golden " + name + ": no tensor '" + key + "'");
    return it->second;
  }
  int param(const std::string& key) const {
    auto it = file.metadata.find(key);
    BONSAI_CHECK(it != file.metadata.end(), "golden " + name + ": no metadata '" + key + "'");
    return std::stoi(it->second);
  }
  ops::Padding pad() const {
    return {param("pad_top"), param("pad_left"), param("pad_bottom"), param("pad_right")};
  }
};

// Tolerance: max|a - b| <= 1e-4 * max(1, max|b|), with b the golden value.
// Relative to the tensor's largest magnitude (not per element), so a value
// that is tiny only through cancellation is judged on the tensor's scale;
// the floor of 1 keeps near-zero tensors from demanding absolute precision
// below float32's. The goldens were computed in float64, so this bounds
// bonsai's own float32 error. Do not loosen it to make a case pass.
void check_close(const std::string& what, const Tensor& actual, const Tensor& expected) {
  if (!actual.defined()) {
    FAIL_CHECK(what << ": bonsai produced no tensor (missing gradient?)");
    return;
  }
  if (actual.shape() != expected.shape() || actual.dtype() != bonsai::DType::f32) {
    FAIL_CHECK(what << ": bonsai gives " << actual.shape_str() << " "
                    << bonsai::dtype_name(actual.dtype()) << ", PyTorch " << expected.shape_str());
    return;
  }
  const float* a = actual.data<float>();
  const float* b = expected.data<float>();
  double max_err = 0, max_ref = 0;
  int64_t worst = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    double err = std::fabs(double(a[i]) - double(b[i]));
    if (!(err <= max_err)) {  // also catches NaN
      max_err = std::isnan(err) ? INFINITY : err;
      worst = i;
    }
    max_ref = std::max(max_ref, std::fabs(double(b[i])));
  }
  const double tol = 1e-4 * std::max(1.0, max_ref);
  CHECK_MESSAGE(max_err <= tol, what << ": max|bonsai - torch| = " << max_err << " at flat index "
                                     << worst << " (bonsai " << a[worst] << ", torch " << b[worst]
                                     << "), allowed " << tol);
}

// loss = sum(y * gy), so every gradient is the vector-Jacobian product with gy,
// exactly as make_golden.py computed it.
void backprop(const Tensor& y, const Tensor& gy) { ops::sum(ops::mul(y, gy)).backward(); }

// Runs one case; an exception (unimplemented op, shape error) fails that case
// only, so one broken op does not hide the others' results.
template <typename Fn>
void run_case(const std::string& name, Fn fn) {
  try {
    Golden g(name);
    fn(g);
  } catch (const std::exception& e) {
    FAIL_CHECK(name << ": threw: " << std::string(e.what()));
  }
}

void run_conv(const Golden& g) {
  Tensor x = g.get("x"), w = g.get("w");
  x.requires_grad_();
  w.requires_grad_();
  Tensor b;
  if (g.param("bias")) {
    b = g.get("b");
    b.requires_grad_();
  }
  ops::Conv2dParams p;
  p.stride_h = g.param("stride_h");
  p.stride_w = g.param("stride_w");
  p.dilation_h = g.param("dilation_h");
  p.dilation_w = g.param("dilation_w");
  p.pad = g.pad();
  p.groups = g.param("groups");
  Tensor y = ops::conv2d(x, w, b, p);
  check_close(g.name + " y", y, g.get("y"));
  backprop(y, g.get("gy"));
  check_close(g.name + " gx", x.grad(), g.get("gx"));
  check_close(g.name + " gw", w.grad(), g.get("gw"));
  if (b.defined()) check_close(g.name + " gb", b.grad(), g.get("gb"));
}

void run_pool(const Golden& g) {
  Tensor x = g.get("x");
  x.requires_grad_();
  ops::PoolParams p;
  p.kernel_h = g.param("kernel_h");
  p.kernel_w = g.param("kernel_w");
  p.stride_h = g.param("stride_h");
  p.stride_w = g.param("stride_w");
  p.pad = g.pad();
  p.exclude_padding = g.param("exclude_padding") != 0;
  const bool is_max = g.file.metadata.at("op") == "max_pool2d";
  Tensor y = is_max ? ops::max_pool2d(x, p) : ops::avg_pool2d(x, p);
  check_close(g.name + " y", y, g.get("y"));
  backprop(y, g.get("gy"));
  check_close(g.name + " gx", x.grad(), g.get("gx"));
}

void run_resize(const Golden& g) {
  Tensor x = g.get("x");
  x.requires_grad_();
  Tensor y = ops::resize_bilinear(x, g.param("out_h"), g.param("out_w"));
  check_close(g.name + " y", y, g.get("y"));
  backprop(y, g.get("gy"));
  check_close(g.name + " gx", x.grad(), g.get("gx"));
}

void run_batch_norm(const Golden& g) {
  const bool training = g.param("training") != 0;
  Tensor x = g.get("x"), gamma = g.get("gamma"), beta = g.get("beta");
  x.requires_grad_();
  gamma.requires_grad_();
  beta.requires_grad_();
  // Updated in place in training; clones keep the starting values to check
  // that evaluation leaves them alone.
  Tensor rmean = g.get("rmean"), rvar = g.get("rvar");
  Tensor rmean0 = rmean.clone(), rvar0 = rvar.clone();
  Tensor y = ops::batch_norm(x, gamma, beta, rmean, rvar,
                             {.training = training, .momentum = 0.99f, .epsilon = 1e-3f});
  check_close(g.name + " y", y, g.get("y"));
  if (training) {
    check_close(g.name + " running mean", rmean, g.get("rmean_out"));
    check_close(g.name + " running var", rvar, g.get("rvar_out"));
  } else {
    check_close(g.name + " running mean (unchanged)", rmean, rmean0);
    check_close(g.name + " running var (unchanged)", rvar, rvar0);
  }
  backprop(y, g.get("gy"));
  check_close(g.name + " gx", x.grad(), g.get("gx"));
  check_close(g.name + " ggamma", gamma.grad(), g.get("ggamma"));
  check_close(g.name + " gbeta", beta.grad(), g.get("gbeta"));
}

}  // namespace

TEST_CASE("golden: conv2d forward and backward vs PyTorch") {
  for (const char* name : kConvCases) run_case(name, run_conv);
}

TEST_CASE("golden: batch_norm training and eval vs PyTorch") {
  for (const char* name : kBatchNormCases) run_case(name, run_batch_norm);
}

TEST_CASE("golden: max and avg pooling vs PyTorch") {
  for (const char* name : kPoolCases) run_case(name, run_pool);
}

TEST_CASE("golden: resize_bilinear vs PyTorch (align_corners=False)") {
  for (const char* name : kResizeCases) run_case(name, run_resize);
}

TEST_CASE("golden: every data file is exercised") {
  // A case added to make_golden.py but not here would otherwise pass silently.
  std::set<std::string> listed;
  auto add = [&](const auto& names) {
    for (const char* n : names) listed.insert(std::string(n) + ".safetensors");
  };
  add(kConvCases);
  add(kPoolCases);
  add(kResizeCases);
  add(kBatchNormCases);
  std::set<std::string> on_disk;
  for (const auto& e : std::filesystem::directory_iterator(golden_dir()))
    if (e.path().extension() == ".safetensors") on_disk.insert(e.path().filename().string());
  CHECK(listed == on_disk);
}
