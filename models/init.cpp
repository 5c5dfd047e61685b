#include "models/init.h"

#include <cmath>
#include <functional>
#include <random>

#include "layers/layers.h"

namespace bonsai::models {

void reinitialize(Module& m, const std::string& scheme, uint32_t seed) {
  BONSAI_CHECK(scheme == "he_normal" || scheme == "torchvision",
               "unknown kernel_initializer '" + scheme + "' (he_normal, torchvision)");
  if (scheme == "he_normal") return;  // what the constructors drew
  m.visit([&](const std::string& name, Module& mod) {
    // A generator per layer from its name: independent of visiting order.
    std::mt19937 rng(seed ^ static_cast<uint32_t>(std::hash<std::string>{}(name)));
    if (auto* c = dynamic_cast<Conv2d*>(&mod)) {
      const Shape& s = c->kernel.shape();  // [KH, KW, Cin/g, Cout]
      const double fan_out = static_cast<double>(s[0] * s[1] * s[3]);
      c->kernel.copy_from(Tensor::randn(s, rng, static_cast<float>(std::sqrt(2.0 / fan_out))));
      if (c->bias.defined()) c->bias.fill(0.f);
    } else if (auto* d = dynamic_cast<Dense*>(&mod)) {
      d->kernel.copy_from(Tensor::randn(d->kernel.shape(), rng, 0.01f));
      if (d->bias.defined()) d->bias.fill(0.f);
    }
  });
}

}  // namespace bonsai::models
