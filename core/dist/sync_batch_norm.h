// Synchronized batch normalisation: training-mode batch norm whose batch
// statistics are those of the global batch, over every rank of `comm` (the
// Model Garden's norm_activation.use_sync_bn, PyTorch's SyncBatchNorm).
// Replicas with small per-rank batches (segmentation) normalise as one large
// batch would, and N ranks × batch B train exactly like one process with
// batch N·B.
//
//   Tensor y = dist::sync_batch_norm(x, gamma, beta, moving_mean, moving_var,
//                                    {.training = true, .momentum = 0.99f}, comm);
//
// Forward: each rank sums x and x² per channel (in double), one allreduce
// gives the global count N, mean μ and biased variance σ²; y = γ·x̂ + β with
// x̂ = (x − μ)/√(σ² + ε). The moving statistics are updated as
// ops::batch_norm does (Keras momentum, unbiased variance N/(N−1)·σ²), the
// same on every rank.
//
// Backward: with g = ∂L/∂y, where L is the sum of every rank's loss,
//   ∂L/∂x = γ/√(σ²+ε) · (g − Σg/N − x̂·Σ(g·x̂)/N)
// needs the global Σg and Σg·x̂: a second allreduce. ∂L/∂γ = Σ g·x̂ and
// ∂L/∂β = Σ g are returned as this rank's share (the local sums), because
// the gradient averaging that follows backward sums the shares over ranks
// (and divides by the rank count, as it does for every parameter).
//
// With a single rank this is plain training-mode batch norm; the tests hold
// it against ops::batch_norm and the finite-difference checker, and check
// two ranks (a thread group) against one rank holding both halves.
#pragma once

#include "core/dist/communicator.h"
#include "core/ops.h"

namespace bonsai::dist {

// x [N, H, W, C] or [N, C]; gamma, beta, moving_mean, moving_var [C].
// p.training must be true (inference uses the moving statistics: ops::batch_norm).
Tensor sync_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& moving_mean,
                       const Tensor& moving_var, const ops::BatchNormParams& p, Communicator& comm);

}  // namespace bonsai::dist
