// Tensor: a dense, contiguous, 64-byte aligned array of up to 5 dimensions,
// and the handle autograd hangs on.
//
// A Tensor is a cheap shared handle (copying it shares storage and autograd
// state, as in PyTorch). Activations are NHWC, conv weights HWIO
// ([KH, KW, Cin/groups, Cout]), dense weights [in, out] — TensorFlow's layouts.
//
//   Tensor x = Tensor::zeros({8, 28, 28, 1});          // f32 by default
//   Tensor y = x.reshape({8, 784});                     // view, no copy
//   float* p = x.data<float>();
//   Tensor w = Tensor::randn({3, 3, 1, 32}, rng, 0.1f).requires_grad_();
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"

namespace bonsai {

enum class DType : uint8_t { f32, s8, u8, s32, s64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<int8_t>() { return DType::s8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::s32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::s64; }

inline constexpr int kMaxDims = 5;

// Shape: up to kMaxDims extents, stored inline.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  // Negative indices count from the end: back(-1) is the last extent.
  int64_t dim(int i) const { return dims_[i < 0 ? rank_ + i : i]; }
  int64_t numel() const;
  std::vector<int64_t> vec() const { return {dims_, dims_ + rank_}; }
  std::string str() const;  // "[8, 28, 28, 1]"
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t dims_[kMaxDims] = {0, 0, 0, 0, 0};
  int rank_ = 0;
};

// Raw aligned bytes shared by a tensor and its views.
struct Storage {
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
};

struct Node;  // autograd graph node, core/autograd.h

// Everything a Tensor handle points at. Autograd fields live here so that a
// tensor and every copy of its handle share one gradient.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes into storage
  Shape shape;
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the op that produced this tensor, if any
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Factories. Storage is 64-byte aligned; empty() leaves it uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value);
  static Tensor from(const Shape& shape, const std::vector<float>& values);
  static Tensor randn(const Shape& shape, std::mt19937& rng, float stddev = 1.0f);
  static Tensor uniform(const Shape& shape, std::mt19937& rng, float lo, float hi);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  int rank() const { return impl_->shape.rank(); }
  int64_t dim(int i) const { return impl_->shape.dim(i); }
  int64_t numel() const { return impl_->shape.numel(); }
  DType dtype() const { return impl_->dtype; }
  size_t nbytes() const { return numel() * dtype_size(dtype()); }
  std::string shape_str() const { return impl_->shape.str(); }

  template <typename T> T* data() const {
    BONSAI_CHECK(dtype_of<T>() == dtype(), std::string("tensor is ") + dtype_name(dtype()) +
                                               ", accessed as " + dtype_name(dtype_of<T>()));
    return reinterpret_cast<T*>(raw());
  }
  void* raw() const { return static_cast<char*>(impl_->storage->data) + impl_->offset; }
  float item() const;  // value of a one-element f32 tensor

  // A view with a new shape over the same storage (same numel). Not an
  // autograd op by itself; ops::reshape is the differentiable one.
  Tensor view(const Shape& shape) const;
  Tensor clone() const;                   // deep copy, no autograd history
  Tensor to(DType dtype) const;           // converting copy
  void copy_from(const Tensor& src);      // same shape and dtype
  void fill(float value);

  // autograd
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& requires_grad_(bool on = true);
  Tensor grad() const { return Tensor(impl_->grad); }
  void zero_grad() { impl_->grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  // Same storage, no history: the result is a leaf that does not require grad.
  Tensor detach() const;
  // Backpropagate from this one-element tensor (seed gradient 1).
  void backward() const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// "[2, 3] and [3, 2]" style message helper for shape errors.
std::string shapes_str(const Tensor& a, const Tensor& b);

}  // namespace bonsai
