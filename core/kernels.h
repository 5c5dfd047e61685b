// Internal to core: raw (non-autograd) kernels shared by several ops and
// their backward closures.
#pragma once

#include "core/tensor.h"

namespace bonsai::kernels {

enum class BinaryOp { add, sub, mul };

// numpy broadcasting of two shapes; throws naming both shapes if they do not
// broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// out = a (op) b with broadcasting, f32.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

// Sum `t` down to `shape` (the inverse of broadcasting `shape` up to t's
// shape): the gradient of a broadcast input.
Tensor sum_to(const Tensor& t, const Shape& shape);

// out = x * s.
Tensor scaled(const Tensor& x, float s);

}  // namespace bonsai::kernels
