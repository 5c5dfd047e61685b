#include "quant/observer.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

namespace bonsai::quant {

MovingAverageMinMax::MovingAverageMinMax(const MovingAverageOptions& o) : opt_(o) {
  BONSAI_CHECK(o.decay >= 0.0f && o.decay < 1.0f,
               "MovingAverageMinMax: decay must be in [0, 1), got " + std::to_string(o.decay));
  BONSAI_CHECK(o.init_min <= 0.0f && o.init_max >= 0.0f && o.init_min < o.init_max,
               "MovingAverageMinMax: the initial range [" + std::to_string(o.init_min) + ", " +
                   std::to_string(o.init_max) + "] must contain zero");
  BONSAI_CHECK(o.channels >= 0, "MovingAverageMinMax: channels must be >= 0");
  const int64_t c = o.channels > 0 ? o.channels : 1;
  min_ = Tensor::full({c}, o.init_min);
  max_ = Tensor::full({c}, o.init_max);
  step_ = Tensor::zeros({1});
}

int64_t MovingAverageMinMax::steps() const { return static_cast<int64_t>(step_.data<float>()[0]); }

bool MovingAverageMinMax::frozen() const { return opt_.freeze_step >= 0 && steps() >= opt_.freeze_step; }

void MovingAverageMinMax::observe(const Tensor& x) {
  BONSAI_CHECK(x.dtype() == DType::f32 && x.numel() > 0, "observer: input must be non-empty f32, got " +
                                                             x.shape_str());
  const int64_t channels = min_.numel();
  BONSAI_CHECK(opt_.channels == 0 || x.dim(-1) == channels,
               "observer: per-channel observer of " + std::to_string(channels) + " channels got " +
                   x.shape_str());
  if (!frozen()) {
    // Batch range per channel, forced to contain zero (TFLite needs 0.0 on the grid).
    std::vector<float> lo(channels, 0.0f), hi(channels, 0.0f);
    const float* p = x.data<float>();
    const int64_t rows = x.numel() / channels;
    if (channels == 1) {  // per tensor: a parallel reduction over every element
      float l = 0.0f, h = 0.0f;
#pragma omp parallel for reduction(min : l) reduction(max : h) if (rows > 65536)
      for (int64_t i = 0; i < rows; ++i) {
        l = std::min(l, p[i]);
        h = std::max(h, p[i]);
      }
      lo[0] = l;
      hi[0] = h;
    } else {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < channels; ++c) {
          lo[c] = std::min(lo[c], p[r * channels + c]);
          hi[c] = std::max(hi[c], p[r * channels + c]);
        }
    }
    float* pmin = min_.data<float>();
    float* pmax = max_.data<float>();
    const bool seed = opt_.init == RangeInit::first_batch && steps() == 0;
    const float k = 1.0f - opt_.decay;
    for (int64_t c = 0; c < channels; ++c) {
      if (seed) {
        pmin[c] = lo[c];
        pmax[c] = hi[c];
      } else {  // tf assign_moving_average: var -= (var - value) * (1 - decay)
        pmin[c] -= (pmin[c] - lo[c]) * k;
        pmax[c] -= (pmax[c] - hi[c]) * k;
      }
    }
  }
  step_.data<float>()[0] += 1.0f;
}

}  // namespace bonsai::quant
