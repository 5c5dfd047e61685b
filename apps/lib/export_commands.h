// `bonsai export`: the int8 model → TFLite or ONNX (export/), and the two
// helpers the interop check (scripts/interop_check) uses to feed the same
// images to bonsai and to other runtimes:
//   bonsai export sample  — a config's validation images and labels as raw files;
//   bonsai export run     — bonsai's int8 runtime on those images.
#pragma once

namespace bonsai::apps {

extern const char* kExportUsage;

int export_command(int argc, char** argv);

}  // namespace bonsai::apps
