// A minimal protobuf wire-format writer for the ONNX exporter.
#pragma once
