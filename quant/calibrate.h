// Post-training quantization: calibrating activation ranges of a quantized
// model (quant::quantize) from data instead of training them — the PTQ
// baseline QAT is compared with.
//
//   auto model = models::build(...);  quant::quantize(*model, config);
//   quant::load_float_state(*model, float_weights);
//   quant::calibrate(*model, [&](int pass) {          // called once per pass
//       loader.start_epoch(0);                       // the same batches each pass
//       for (int i = 0; i < steps; ++i) model->forward(loader.next()->images);
//     }, {.method = quant::CalibrationMethod::mse});
//   quant::Int8Model int8 = quant::convert(*model, sample);
//
// While calibrating, the model is in eval mode (BatchNorm uses its moving
// statistics) and every activation quantizer with a learned range passes
// its input through unquantized, recording it — so ranges come from the
// float model, as TFLite's calibrator takes them. Quantizers with fixed
// ranges (sigmoid gates) keep them. Afterwards each range is set from what
// was recorded, contains zero, and is frozen:
//   minmax      the smallest and largest value seen (one pass);
//   percentile  the `percentile` and 100 - `percentile` quantiles of a
//               2048-bin histogram over [min, max] (two passes);
//   mse         [f·min, f·max] with f in {1.00, 0.99, ..., 0.30} minimising
//               the expected squared quantization error over the histogram
//               (rounding error step²/12 inside the range, the clipping
//               distance² outside; two passes).
#pragma once

#include <functional>

#include "layers/module.h"

namespace bonsai::quant {

enum class CalibrationMethod { minmax, percentile, mse };
CalibrationMethod calibration_method(const std::string& name);  // "minmax" | "percentile" | "mse"

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::minmax;
  double percentile = 99.99;
  int bins = 2048;
};

// `run_pass(pass)` feeds the calibration data through the model (pass 0,
// and pass 1 for the histogram methods). Returns the number of quantizers
// calibrated.
int calibrate(Module& model, const std::function<void(int pass)>& run_pass, const CalibrationOptions& o = {});

}  // namespace bonsai::quant
