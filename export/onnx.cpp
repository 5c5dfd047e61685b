#include "export/onnx.h"

#include "core/check.h"
#include "core/io/atomic_file.h"

namespace bonsai::exporters {

std::vector<uint8_t> to_onnx(const quant::Int8Model&) {
  BONSAI_CHECK(false, "ONNX export is not implemented yet");
  return {};
}

void write_onnx(const quant::Int8Model& model, const std::string& path) {
  const std::vector<uint8_t> bytes = to_onnx(model);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace bonsai::exporters
