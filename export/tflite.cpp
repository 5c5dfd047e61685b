#include "export/tflite.h"

#include "core/check.h"
#include "core/io/atomic_file.h"

namespace bonsai::exporters {

std::vector<uint8_t> to_tflite(const quant::Int8Model&, const TfliteOptions&) {
  BONSAI_CHECK(false, "TFLite export is not implemented yet");
  return {};
}

void write_tflite(const quant::Int8Model& model, const std::string& path, const TfliteOptions& options) {
  const std::vector<uint8_t> bytes = to_tflite(model, options);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace bonsai::exporters
