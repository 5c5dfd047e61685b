// Backbone: a feature extractor that exposes its feature maps by level, as
// the Model Garden names endpoints: level L has stride 2^L ("2" = stride 4 …
// "5" = stride 32). Task models (classification, segmentation) pick the
// levels they need.
//
//   std::map<std::string, Tensor> feats = backbone->endpoints(x);
//   Tensor c5 = feats.at("5");
#pragma once

#include <map>
#include <string>

#include "layers/module.h"

namespace bonsai::models {

class Backbone : public Module {
 public:
  virtual std::map<std::string, Tensor> endpoints(const Tensor& x) = 0;
  // Channels of each endpoint, by level.
  virtual std::map<std::string, int64_t> endpoint_channels() const = 0;
  // The highest-level endpoint (what a classifier consumes).
  Tensor forward(const Tensor& x) override;
  // The key of the highest level: numeric comparison, not string order.
  static std::string last_level(const std::map<std::string, Tensor>& eps);
};

}  // namespace bonsai::models
