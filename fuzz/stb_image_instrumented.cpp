// stb_image compiled into the image harnesses from Debian's header (it is a
// header-only library; bonsai itself links Debian's prebuilt libstb.so).
// Built here with the fuzz dir's flags, the decoder gets libFuzzer's
// coverage counters and ASan's checks; the executable's definitions take
// precedence over libstb.so's, so data/image.cpp's calls land here. Without
// it, fuzzing the PNG decoder is blind and sees only outright crashes. (JPEG
// no longer goes to stb_image: its JPEG decoder is what this found broken,
// docs/reliability.md finding 8; data/image.cpp uses libjpeg-turbo.)
// UBSan is off for this file (fuzz/meson.build): stb relies on shifts of
// negative values and the like by design, which are not bonsai's findings.
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
