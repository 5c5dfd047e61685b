// `bonsai data prepare fashion-mnist`: writes Fashion-MNIST in the ImageNet or
// Pascal VOC layout (data/prepare.h), prints progress, then opens the result
// with the matching loader and prints what it found.
//
//   bonsai data prepare fashion-mnist --layout imagenet --out /tmp/fm-imagenet
//   bonsai data prepare fashion-mnist --layout voc --out /tmp/fm-voc --seed 1 --limit 500
#pragma once

namespace bonsai::apps {

// The usage text for main.cpp's help.
extern const char* const kDataPrepareUsage;

// argv[1] == "data", argv[2] == "prepare", argv[3] == "fashion-mnist", then
// flags. Returns the process exit code; throws bonsai::Error on bad flags or
// failures (which name the file or flag).
int data_prepare_command(int argc, char** argv);

}  // namespace bonsai::apps
