#include "optim/sgd.h"

#include "core/autograd.h"

namespace bonsai::optim {

Sgd::Sgd(std::vector<NamedParam> params, const SgdOptions& o) : params_(std::move(params)), opt_(o) {
  for (const NamedParam& p : params_) velocity_[p.name] = Tensor::zeros(p.tensor.shape());
}

void Sgd::step(float lr) {
  NoGrad no_grad;
  for (const NamedParam& p : params_) {
    Tensor g = p.tensor.grad();
    if (!g.defined()) continue;
    bool decay = opt_.weight_decay > 0.f &&
                 (p.role == ParamRole::conv_kernel || p.role == ParamRole::dense_kernel ||
                  (p.role == ParamRole::depthwise_kernel && opt_.decay_depthwise));
    const float wd = decay ? opt_.weight_decay : 0.f, m = opt_.momentum;
    float* w = p.tensor.data<float>();
    const float* pg = g.data<float>();
    float* v = velocity_.at(p.name).data<float>();
    const int64_t n = p.tensor.numel();
    const bool nesterov = opt_.nesterov;
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      float gi = pg[i] + wd * w[i];
      v[i] = m * v[i] + gi;
      w[i] -= lr * (nesterov ? gi + m * v[i] : v[i]);
    }
  }
}

}  // namespace bonsai::optim
