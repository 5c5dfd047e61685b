#!/usr/bin/python3
"""Runs a TFLite file in Arm NN (Debian's python3-pyarmnn 20.08: its TfLite
parser and the CpuRef reference backend, a runtime independent of TFLite
and XNNPACK) on a sample from `bonsai export sample`, writing the float
outputs as tests/node/run_tflite.js does, for scripts/compare_outputs.py.

  run_armnn.py --model M.tflite --images DIR --out OUT.f32 [--count N]

DIR/meta.json gives {count, shape [H, W, C]}; DIR/images.f32 holds float32
NHWC images, fed one at a time (the model's batch is 1). Arm NN 20.08 reads
the 1-byte op codes of its era: files with newer ops (GATHER lookups,
DENSIFY) are refused by its parser, which this script reports.
"""
import argparse, json, os, sys

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=0, help="the first N images (0: all)")
    a = p.parse_args()
    import pyarmnn as ann

    meta = json.load(open(os.path.join(a.images, "meta.json")))
    h, w, c = meta["shape"]
    n = meta["count"] if a.count <= 0 else min(a.count, meta["count"])
    images = np.fromfile(os.path.join(a.images, "images.f32"), dtype=np.float32)[: n * h * w * c].reshape(n, h, w, c)
    parser = ann.ITfLiteParser()
    try:
        net = parser.CreateNetworkFromBinaryFile(a.model)
    except Exception as e:  # the parser's own message names the op it does not know
        sys.exit(f"run_armnn: Arm NN's TfLite parser refused {a.model}: {e}")
    graph = 0
    in_name = parser.GetSubgraphInputTensorNames(graph)[0]
    out_name = parser.GetSubgraphOutputTensorNames(graph)[0]
    in_info = parser.GetNetworkInputBindingInfo(graph, in_name)
    out_info = parser.GetNetworkOutputBindingInfo(graph, out_name)
    runtime = ann.IRuntime(ann.CreationOptions())
    opt, messages = ann.Optimize(net, [ann.BackendId("CpuRef")], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(opt)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        for i in range(n):
            inputs = ann.make_input_tensors([in_info], [images[i : i + 1]])
            outputs = ann.make_output_tensors([out_info])
            runtime.EnqueueWorkload(net_id, inputs, outputs)
            f.write(np.ascontiguousarray(ann.workload_tensors_to_ndarray(outputs)[0], dtype=np.float32).tobytes())
    os.replace(tmp, a.out)
    print(f"run_armnn: {n} images through Arm NN (CpuRef) -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
