#include "quant/calibrate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "quant/quantize.h"
#include "quant/scheme.h"

namespace bonsai::quant {

CalibrationMethod calibration_method(const std::string& name) {
  if (name == "minmax") return CalibrationMethod::minmax;
  if (name == "percentile") return CalibrationMethod::percentile;
  if (name == "mse") return CalibrationMethod::mse;
  BONSAI_CHECK(false, "unknown calibration method '" + name + "' (minmax, percentile, mse)");
  return CalibrationMethod::minmax;
}

namespace {

// What one quantizer saw: the extremes (pass 0) and a histogram over them
// (pass 1).
struct Record {
  ActivationQuantizer* quantizer = nullptr;
  float min = std::numeric_limits<float>::infinity(), max = -std::numeric_limits<float>::infinity();
  std::vector<double> hist;
};

void observe(Record& r, const Tensor& x, int pass, int bins) {
  const float* p = x.data<float>();
  const int64_t n = x.numel();
  if (pass == 0) {
    for (int64_t i = 0; i < n; ++i) {
      r.min = std::min(r.min, p[i]);
      r.max = std::max(r.max, p[i]);
    }
    return;
  }
  if (r.hist.empty()) r.hist.assign(bins, 0.0);
  const float lo = r.min, width = std::max(r.max - r.min, 1e-12f);
  for (int64_t i = 0; i < n; ++i) {
    const int b = static_cast<int>((p[i] - lo) / width * bins);
    r.hist[std::clamp(b, 0, bins - 1)] += 1;
  }
}

// Value below which a fraction q of the histogram's mass lies (bin edges).
float quantile(const Record& r, double q) {
  double total = 0;
  for (double h : r.hist) total += h;
  const int bins = static_cast<int>(r.hist.size());
  const float width = (r.max - r.min) / bins;
  double acc = 0;
  for (int b = 0; b < bins; ++b) {
    acc += r.hist[b];
    if (acc >= q * total) return r.min + width * (b + 1);
  }
  return r.max;
}

// Expected squared error of quantizing the histogram on [lo, hi].
double quantization_mse(const Record& r, float lo, float hi, int num_bits) {
  const AffineQuant g = nudge_range(lo, hi, {.num_bits = num_bits});
  const int bins = static_cast<int>(r.hist.size());
  const double width = (r.max - r.min) / static_cast<double>(bins), rounding = g.scale * g.scale / 12.0;
  double err = 0;
  for (int b = 0; b < bins; ++b) {
    if (r.hist[b] == 0) continue;
    const double v = r.min + width * (b + 0.5);
    const double clipped = std::clamp(v, static_cast<double>(g.nudged_min), static_cast<double>(g.nudged_max));
    err += r.hist[b] * (v == clipped ? rounding : (v - clipped) * (v - clipped));
  }
  return err;
}

}  // namespace

int calibrate(Module& model, const std::function<void(int pass)>& run_pass, const CalibrationOptions& o) {
  BONSAI_CHECK(o.bins >= 16, "calibrate: bins must be at least 16");
  BONSAI_CHECK(o.percentile > 50 && o.percentile <= 100, "calibrate: percentile must be in (50, 100]");
  std::vector<std::unique_ptr<Record>> records;
  model.visit([&](const std::string&, Module& m) {
    auto* q = dynamic_cast<ActivationQuantizer*>(&m);
    if (q && !q->fixed_range()) {
      records.push_back(std::make_unique<Record>());
      records.back()->quantizer = q;
    }
  });
  BONSAI_CHECK(!records.empty(), "calibrate: the model has no activation quantizers to calibrate");
  const bool was_training = model.is_training();
  model.eval();
  const int passes = o.method == CalibrationMethod::minmax ? 1 : 2;
  for (int pass = 0; pass < passes; ++pass) {
    for (auto& r : records) {
      Record* rec = r.get();
      rec->quantizer->set_recorder([rec, pass, &o](const Tensor& x) { observe(*rec, x, pass, o.bins); });
    }
    try {
      NoGrad ng;
      run_pass(pass);
    } catch (...) {
      for (auto& r : records) r->quantizer->set_recorder(nullptr);
      throw;
    }
    for (auto& r : records) r->quantizer->set_recorder(nullptr);
  }
  model.train(was_training);

  for (auto& r : records) {
    BONSAI_CHECK(r->min <= r->max, "calibrate: the calibration data never reached a quantizer (empty pass?)");
    float lo = std::min(r->min, 0.0f), hi = std::max(r->max, 0.0f);
    const int bits = r->quantizer->num_bits();
    if (o.method == CalibrationMethod::percentile) {
      if (r->min < 0) lo = std::min(0.0f, quantile(*r, 1.0 - o.percentile / 100.0));
      hi = std::max(0.0f, quantile(*r, o.percentile / 100.0));
    } else if (o.method == CalibrationMethod::mse) {
      double best = std::numeric_limits<double>::infinity();
      float best_lo = lo, best_hi = hi;
      for (int k = 100; k >= 30; --k) {
        const float f = k / 100.0f;
        if (f * (hi - lo) <= 0) break;
        const double e = quantization_mse(*r, f * lo, f * hi, bits);
        if (e < best) {
          best = e;
          best_lo = f * lo;
          best_hi = f * hi;
        }
      }
      lo = best_lo;
      hi = best_hi;
    }
    r->quantizer->set_range(lo, hi);
  }
  return static_cast<int>(records.size());
}

}  // namespace bonsai::quant
