// Safetensors reading and writing: the one file format bonsai uses for
// checkpoints, imported weights (PyTorch/torchvision) and golden test data.
//
// Layout: an 8-byte little-endian u64 header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [3, 3, 1, 32], "data_offsets": [0, 1152]},
//    "__metadata__": {"step": "1200"}}
// (space-padded to a multiple of 8), then the raw little-endian data, offsets
// counted from the end of the header.
//
//   io::save_safetensors("ckpt.safetensors", {{"conv1.w", w}, {"conv1.b", b}},
//                        {{"step", "1200"}});
//   auto tensors = io::load_safetensors("ckpt.safetensors");
//   Tensor w = tensors.at("conv1.w");
//
//   io::SafetensorsFile f = io::read_safetensors("golden.safetensors");
//   std::string stride = f.metadata.at("stride_h");
//
// Files come from elsewhere (the internet, other tools, a crashed run), so
// loading validates everything before trusting it and every error names the
// file and, where there is one, the tensor. Saving is atomic: a reader never
// sees a half-written file, and a failed save leaves the old file in place.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace bonsai::io {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" object, if any
};

// Dtypes read: F32, I8, U8, I32, I64 as themselves; F64 converted to f32
// (PyTorch writes float64 buffers often enough that refusing them would be
// unhelpful). Anything else (F16, BF16, BOOL, ...) is an error naming the
// tensor. Throws bonsai::Error on any malformed input.
SafetensorsFile read_safetensors(const std::string& path);

// read_safetensors without the metadata.
std::map<std::string, Tensor> load_safetensors(const std::string& path);

struct SaveOptions {
  // Store each tensor with zeros sparsely when that is smaller (see below).
  bool sparse = false;
};

// Writes to `path + ".tmp.<pid>"`, fsyncs, then renames over `path`. On any
// failure the temporary file is removed, `path` is left as it was, and
// bonsai::Error is thrown. Tensor names must be non-empty, not
// "__metadata__" and not end in ".__mask" or ".__nz"; every tensor must be
// defined.
//
// Sparse tensors (SaveOptions::sparse): a tensor (F32, I8 or I32) whose
// zeros make it smaller that way is stored as two tensors, "<name>.__mask"
// (U8, one bit per element, little-endian bit order, set = non-zero) and
// "<name>.__nz" (the non-zero values in order), its shape in the metadata
// key "bonsai.sparse" ({"<name>": [dims]}). read_safetensors restores it
// (validating mask size and population count against the values) and drops
// that key, so callers never see the encoding — pruned checkpoints and int8
// models are then really smaller. Plain safetensors readers see the two
// parts.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {}, const SaveOptions& options = {});

}  // namespace bonsai::io
