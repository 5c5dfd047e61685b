// The quantization subcommands: `bonsai convert` (a QAT checkpoint → int8
// model file), `bonsai ptq` (a float checkpoint → calibrated int8 model) and
// `bonsai verify-int8` (the int8 model against its QAT simulation, layer by
// layer). Each takes the experiment config the model was trained with.
#pragma once

namespace bonsai::apps {

extern const char* kQuantUsage;

int convert_command(int argc, char** argv);
int ptq_command(int argc, char** argv);
int verify_int8_command(int argc, char** argv);

}  // namespace bonsai::apps
