// Tests of the onnx exporter (export/onnx.h).
#include <doctest/doctest.h>

#include "export/onnx.h"
