// The model-zoo subcommands: `bonsai info`, `bonsai import torchvision`,
// `bonsai predict` (tensor files).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bonsai::apps {

// Parameter, buffer and MAC counts of a registry model at resolution `res`
// (one forward at batch 1), for the whole model, each top-level child, and
// the per-layer tree.
nlohmann::json model_info(const std::string& name, const nlohmann::json& options, int64_t res);
// The same as indented text.
std::string model_info_text(const nlohmann::json& info);

// torchvision state_dict (safetensors) -> bonsai checkpoint. Returns a summary line.
std::string import_torchvision_checkpoint(const std::string& model, const std::string& in,
                                          const std::string& out);

// Reads tensor "input" (NCHW f32, as PyTorch writes it) from `input`, runs
// the checkpoint's model in eval mode, writes "logits" to `output`
// ([N, classes]; segmentation models [N, classes, H, W] at feature stride).
std::string predict_tensors(const std::string& checkpoint, const std::string& input,
                            const std::string& output);

// Runs a checkpoint written by `bonsai train` on image files (JPEG/PNG) with
// the evaluation preprocessing recorded in it, and returns, per image, the
// top-5 classes with probabilities (class names when the checkpoint has them).
std::string predict_images(const std::string& checkpoint, const std::vector<std::string>& images);

}  // namespace bonsai::apps
