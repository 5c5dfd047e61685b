// Magnitude pruning of a zoo model on a schedule, then a plain checkpoint
// whose zeros are stored sparsely (a smaller file).
//
//   c++ prune_and_strip.cpp $(pkg-config --cflags --libs bonsai) -o prune_and_strip
//   ./prune_and_strip /tmp/pruned.safetensors
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "layers/state.h"
#include "models/registry.h"
#include "optim/optimizer.h"
#include "prune/prune.h"

using namespace bonsai;

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "pruned.safetensors";
  auto model = models::build("mobilenet_v2", {{"num_classes", 10}, {"width_multiplier", 0.35}});

  // 80% sparsity reached along a PolynomialDecay schedule over 40 steps,
  // masks recomputed every 10; depthwise kernels left dense (the default).
  prune::Pruner pruner = prune::prune_low_magnitude(
      *model, {.schedule = prune::Schedule::polynomial_decay(
                   {.initial_sparsity = 0.0, .final_sparsity = 0.8, .begin_step = 0, .end_step = 40, .frequency = 10})});

  std::mt19937 rng(0);
  optim::Sgd opt(model->named_parameters(), {.momentum = 0.9f});
  for (int64_t step = 0; step <= 40; ++step) {
    Tensor x = Tensor::randn({4, 32, 32, 3}, rng);
    Tensor labels = Tensor::zeros({4}, DType::s64);
    model->zero_grad();
    ops::softmax_cross_entropy(model->forward(x), labels).backward();
    opt.step(0.01f);
    if (pruner.step(step)) std::printf("step %lld: masks updated, sparsity %.2f%%\n", static_cast<long long>(step),
                                       100.0 * pruner.sparsity());
  }
  std::fputs(pruner.table().c_str(), stdout);

  // Strip: the masks are already multiplied into the weights, so the plain
  // state dict is the pruned model; sparse encoding stores only the nonzeros.
  io::save_safetensors(out, state_dict(*model), {}, {.sparse = true});
  const std::string dense = out + ".dense";
  io::save_safetensors(dense, state_dict(*model), {}, {.sparse = false});
  const auto sparse_bytes = std::filesystem::file_size(out), dense_bytes = std::filesystem::file_size(dense);
  std::filesystem::remove(dense);
  std::printf("kernel sparsity %.2f%%; file %.2f MB sparse vs %.2f MB dense\n", 100.0 * prune::kernel_sparsity(*model),
              sparse_bytes / 1e6, dense_bytes / 1e6);
  return sparse_bytes < dense_bytes ? 0 : 1;
}
