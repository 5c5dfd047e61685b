#include "models/torchvision_import.h"

namespace bonsai::models {

Tensor oihw_to_hwio(const Tensor& w) {
  BONSAI_CHECK(w.rank() == 4, "oihw_to_hwio: expected a 4-D conv weight, got " + w.shape_str());
  const int64_t O = w.dim(0), I = w.dim(1), H = w.dim(2), W = w.dim(3);
  Tensor out = Tensor::empty({H, W, I, O});
  const float* s = w.data<float>();
  float* d = out.data<float>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t x = 0; x < W; ++x) d[((h * W + x) * I + i) * O + o] = s[((o * I + i) * H + h) * W + x];
  return out;
}

Tensor linear_to_dense(const Tensor& w) {
  BONSAI_CHECK(w.rank() == 2, "linear_to_dense: expected [out, in], got " + w.shape_str());
  const int64_t O = w.dim(0), I = w.dim(1);
  Tensor out = Tensor::empty({I, O});
  const float* s = w.data<float>();
  float* d = out.data<float>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) d[i * O + o] = s[o * I + i];
  return out;
}

Tensor linear_to_conv1x1(const Tensor& w) {
  Tensor t = linear_to_dense(w);
  return t.view({1, 1, t.dim(0), t.dim(1)});
}

const Tensor& torch_get(const std::map<std::string, Tensor>& s, const std::string& name,
                        const std::string& model) {
  auto it = s.find(name);
  BONSAI_CHECK(it != s.end(), "torchvision " + model + " weights have no tensor '" + name + "'");
  BONSAI_CHECK(it->second.dtype() == DType::f32,
               "torchvision " + model + " tensor '" + name + "' is not float32");
  return it->second;
}

}  // namespace bonsai::models
