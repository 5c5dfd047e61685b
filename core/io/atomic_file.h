// Crash-safe file writing: the content goes to a temporary file beside the
// target, which is fsynced and renamed over it, so a reader (or a run
// resumed after a crash) sees the old file or the new one, never a mix.
//
//   io::write_file_atomically("model.tflite", bytes.data(), bytes.size());
//   io::write_atomically("big.bin", [&](const io::Sink& put) {
//     put(header, header_size);
//     for (...) put(chunk, n);
//   });
//
// Errors name the target and the temporary file; on any error (including
// one thrown by the fill callback) the temporary file is removed and the
// target is untouched.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace bonsai::io {

using Sink = std::function<void(const void* data, size_t bytes)>;

void write_atomically(const std::string& path, const std::function<void(const Sink&)>& fill);
void write_file_atomically(const std::string& path, const void* data, size_t bytes);

}  // namespace bonsai::io
