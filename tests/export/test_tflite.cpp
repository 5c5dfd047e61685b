// Tests of the tflite exporter (export/tflite.h).
#include <doctest/doctest.h>

#include "export/tflite.h"
