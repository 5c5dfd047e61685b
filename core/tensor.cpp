#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/autograd.h"

namespace bonsai {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::s8: return 1;
    case DType::u8: return 1;
    case DType::s32: return 4;
    case DType::s64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::s8: return "s8";
    case DType::u8: return "u8";
    case DType::s32: return "s32";
    case DType::s64: return "s64";
  }
  return "?";
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  BONSAI_CHECK(dims.size() <= static_cast<size_t>(kMaxDims),
               "shape has " + std::to_string(dims.size()) + " dimensions; at most " +
                   std::to_string(kMaxDims) + " are supported");
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    BONSAI_CHECK(dims[i] >= 0, "negative extent " + std::to_string(dims[i]) + " in a shape");
    dims_[i] = dims[i];
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

Storage::Storage(size_t n) : bytes(n) {
  size_t rounded = ((n + 63) / 64) * 64;
  data = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  BONSAI_CHECK(data != nullptr, "out of memory allocating " + std::to_string(n) + " bytes");
}

Storage::~Storage() { std::free(data); }

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(shape.numel() * dtype_size(dtype));
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

Tensor Tensor::scalar(float value) { return full({1}, value); }

Tensor Tensor::from(const Shape& shape, const std::vector<float>& values) {
  BONSAI_CHECK(static_cast<int64_t>(values.size()) == shape.numel(),
               "Tensor::from: " + std::to_string(values.size()) + " values for shape " + shape.str());
  Tensor t = empty(shape);
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::randn(const Shape& shape, std::mt19937& rng, float stddev) {
  Tensor t = empty(shape);
  std::normal_distribution<float> d(0.0f, stddev);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, std::mt19937& rng, float lo, float hi) {
  Tensor t = empty(shape);
  std::uniform_real_distribution<float> d(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

float Tensor::item() const {
  BONSAI_CHECK(numel() == 1, "item() needs one element, tensor has shape " + shape_str());
  return *data<float>();
}

Tensor Tensor::view(const Shape& shape) const {
  BONSAI_CHECK(shape.numel() == numel(),
               "cannot view shape " + shape_str() + " as " + shape.str() + ": element counts differ");
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->shape = shape;
  impl->grad.reset();
  impl->grad_fn.reset();
  impl->requires_grad = false;
  return Tensor(std::move(impl));
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype());
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return clone();
  Tensor t = empty(shape(), target);
  auto convert = [&](auto* src) {
    int64_t n = numel();
    auto store = [&](auto* dst) {
      using D = std::remove_pointer_t<decltype(dst)>;
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
    };
    switch (target) {
      case DType::f32: store(t.data<float>()); break;
      case DType::s8: store(t.data<int8_t>()); break;
      case DType::u8: store(t.data<uint8_t>()); break;
      case DType::s32: store(t.data<int32_t>()); break;
      case DType::s64: store(t.data<int64_t>()); break;
    }
  };
  switch (dtype()) {
    case DType::f32: convert(data<float>()); break;
    case DType::s8: convert(data<int8_t>()); break;
    case DType::u8: convert(data<uint8_t>()); break;
    case DType::s32: convert(data<int32_t>()); break;
    case DType::s64: convert(data<int64_t>()); break;
  }
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  BONSAI_CHECK(src.shape() == shape() && src.dtype() == dtype(),
               "copy_from: destination " + shape_str() + " " + dtype_name(dtype()) + ", source " +
                   src.shape_str() + " " + dtype_name(src.dtype()));
  std::memcpy(raw(), src.raw(), nbytes());
}

void Tensor::fill(float value) {
  float* p = data<float>();
  for (int64_t i = 0; i < numel(); ++i) p[i] = value;
}

Tensor& Tensor::requires_grad_(bool on) {
  BONSAI_CHECK(!on || dtype() == DType::f32, "only f32 tensors can require grad");
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

void Tensor::backward() const {
  BONSAI_CHECK(numel() == 1, "backward() needs a one-element tensor, got shape " + shape_str());
  run_backward(*this, Tensor::full(shape(), 1.0f));
}

std::string shapes_str(const Tensor& a, const Tensor& b) { return a.shape_str() + " and " + b.shape_str(); }

}  // namespace bonsai
