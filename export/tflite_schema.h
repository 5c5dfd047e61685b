// The parts of TFLite's flatbuffer schema (tensorflow/compiler/mlir/lite/
// schema/schema.fbs, file identifier "TFL3", schema version 3) that the
// exporter writes and its tests read back: field ids of each table, enum
// values, builtin operator codes and the BuiltinOptions union's member
// numbers. These are facts of the format, written down by hand; nothing is
// generated from schema.fbs.
//
// A table field with id i lives at vtable offset 4 + 2·i (vtable_offset()).
// A union field takes two ids: its type (a ubyte, 0 = NONE) and then its
// value (an offset to the member table).
#pragma once

#include <cstdint>

namespace bonsai::exporters::tflite_schema {

constexpr uint16_t vtable_offset(int field_id) { return static_cast<uint16_t>(4 + 2 * field_id); }

constexpr const char* kFileIdentifier = "TFL3";
constexpr uint32_t kSchemaVersion = 3;

// enum TensorType : byte
enum TensorType : int8_t { kFloat32 = 0, kInt32 = 2, kInt8 = 9 };

// enum Padding : byte
enum Padding : int8_t { kSame = 0, kValid = 1 };

// enum ActivationFunctionType : byte
enum Activation : int8_t { kActNone = 0, kActRelu = 1, kActRelu6 = 3 };

// enum DimensionType : byte
enum DimensionType : int8_t { kDense = 0, kSparseCsr = 1 };

// union SparseIndexVector (member numbers; 0 is NONE)
enum SparseIndexVector : uint8_t { kInt32Vector = 1, kUint16Vector = 2, kUint8Vector = 3 };

// enum BuiltinOperator : int32
enum BuiltinOperator : int32_t {
  kAdd = 0,
  kAveragePool2d = 1,
  kConcatenation = 2,
  kConv2d = 3,
  kDepthwiseConv2d = 4,
  kDequantize = 6,
  kFullyConnected = 9,
  kLogistic = 14,
  kMaxPool2d = 17,
  kMul = 18,
  kRelu = 19,
  kRelu6 = 21,
  kReshape = 22,
  kResizeBilinear = 23,
  kMean = 40,
  kGather = 36,
  kCast = 53,
  kPadV2 = 60,
  kQuantize = 114,
  kHardSwish = 117,
  kDensify = 124,
  // Codes above this one exist only in OperatorCode.builtin_code; the old
  // byte field deprecated_builtin_code holds this placeholder for them.
  kPlaceholderForGreaterOpCodes = 127,
};

// union BuiltinOptions (member numbers; 0 is NONE)
enum BuiltinOptions : uint8_t {
  kConv2DOptions = 1,
  kDepthwiseConv2DOptions = 2,
  kPool2DOptions = 5,
  kFullyConnectedOptions = 8,
  kConcatenationOptions = 10,
  kAddOptions = 11,
  kResizeBilinearOptions = 15,
  kReshapeOptions = 17,
  kMulOptions = 21,
  kGatherOptions = 23,
  kReducerOptions = 27,
};

// ---- field ids, table by table ----

namespace model {
constexpr int version = 0, operator_codes = 1, subgraphs = 2, description = 3, buffers = 4;
}
namespace operator_code {
constexpr int deprecated_builtin_code = 0, custom_code = 1, version = 2, builtin_code = 3;
}
namespace subgraph {
constexpr int tensors = 0, inputs = 1, outputs = 2, operators = 3, name = 4;
}
namespace buffer {
constexpr int data = 0;
}
namespace tensor {
constexpr int shape = 0, type = 1, buffer = 2, name = 3, quantization = 4, is_variable = 5, sparsity = 6;
}
namespace quantization {
constexpr int min = 0, max = 1, scale = 2, zero_point = 3, details_type = 4, details = 5,
              quantized_dimension = 6;
}
namespace sparsity {
constexpr int traversal_order = 0, block_map = 1, dim_metadata = 2;
}
namespace dimension_metadata {
constexpr int format = 0, dense_size = 1, array_segments_type = 2, array_segments = 3,
              array_indices_type = 4, array_indices = 5;
}
namespace index_vector {  // Int32Vector, Uint16Vector, Uint8Vector
constexpr int values = 0;
}
namespace op {  // table Operator
constexpr int opcode_index = 0, inputs = 1, outputs = 2, builtin_options_type = 3, builtin_options = 4;
}
namespace conv2d_options {
constexpr int padding = 0, stride_w = 1, stride_h = 2, fused_activation = 3, dilation_w = 4, dilation_h = 5;
}
namespace depthwise_options {
constexpr int padding = 0, stride_w = 1, stride_h = 2, depth_multiplier = 3, fused_activation = 4,
              dilation_w = 5, dilation_h = 6;
}
namespace pool2d_options {
constexpr int padding = 0, stride_w = 1, stride_h = 2, filter_width = 3, filter_height = 4,
              fused_activation = 5;
}
namespace fully_connected_options {
constexpr int fused_activation = 0, weights_format = 1, keep_num_dims = 2;
}
namespace concatenation_options {
constexpr int axis = 0, fused_activation = 1;
}
namespace add_options {  // AddOptions and MulOptions
constexpr int fused_activation = 0;
}
namespace resize_bilinear_options {  // ids 0 and 1 are the deprecated new_height/new_width
constexpr int align_corners = 2, half_pixel_centers = 3;
}
namespace reshape_options {
constexpr int new_shape = 0;
}
namespace gather_options {
constexpr int axis = 0, batch_dims = 1;
}
namespace reducer_options {
constexpr int keep_dims = 0;
}

}  // namespace bonsai::exporters::tflite_schema
