#!/usr/bin/python3
"""Layer by layer: every int8 value of bonsai's int8 runtime against ONNX
Runtime running bonsai's ONNX export of the same model, on the same images.

  compare_values.py --onnx M.onnx --values VDIR --sample DIR --count N
                    [--require-exact F] [--work TMP]

VDIR is `bonsai export run --int8 M --images DIR --values VDIR` (the first
N images of DIR are compared). Every QuantizeLinear output of the export
becomes a graph output (a copy of the model in TMP), tests/node/
run_onnx_values.js runs it, and each value's codes are compared with
bonsai's of the same name. Prints one line per value that differs and a
JSON summary; with --require-exact, also 'agree' (exit 0) or 'DISAGREE'
(exit 1): at least that share of all compared codes equal.
"""
import argparse, json, os, subprocess, sys, tempfile

import numpy as np
import onnx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--values", required=True)
    p.add_argument("--sample", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--require-exact", type=float, default=None)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="bonsai_values_")
    m = onnx.load(a.onnx)
    init = {i.name: i for i in m.graph.initializer}
    present = {o.name for o in m.graph.output}
    for node in m.graph.node:
        if node.op_type != "QuantizeLinear" or node.output[0] in present:
            continue
        zp = init.get(node.input[2]) if len(node.input) > 2 else None
        elem = zp.data_type if zp is not None else onnx.TensorProto.UINT8
        m.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], elem, None))
    model = os.path.join(work, "all_values.onnx")
    onnx.save(m, model)
    ort_dir = os.path.join(work, "ort_values")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["node", os.path.join(here, "..", "tests", "node", "run_onnx_values.js"), "--model", model,
                    "--images", a.sample, "--out", ort_dir, "--count", str(a.count)], check=True)
    ort = {o["name"]: o for o in json.load(open(os.path.join(ort_dir, "outputs.json")))}
    values = json.load(open(os.path.join(a.values, "values.json")))
    compared = equal = layers = 0
    worst = 0
    first = None
    for v in values:
        o = ort.get(v["name"])
        if o is None:
            continue
        per = int(np.prod(v["shape"][1:]))
        b = np.fromfile(os.path.join(a.values, f"{v['id']}.s8"), dtype=np.int8)[: a.count * per].astype(np.int32)
        r = np.fromfile(os.path.join(ort_dir, o["file"]), dtype=np.int8).astype(np.int32)
        if b.size != r.size:
            sys.exit(f"compare_values: '{v['name']}' has {b.size} codes in bonsai's dump, {r.size} from ORT")
        diff = np.abs(b - r)
        layers += 1
        compared += b.size
        equal += int((diff == 0).sum())
        if diff.max() > 0:
            worst = max(worst, int(diff.max()))
            first = first or v["name"]
            print(f"{v['name']}: {int((diff > 0).sum())} of {b.size} codes differ, by up to {int(diff.max())}")
    share = equal / compared if compared else 0.0
    print(json.dumps({"values": layers, "codes": compared, "exact": share, "max_steps": worst,
                      "first_difference": first}))
    if compared == 0:
        sys.exit("compare_values: no value of the export matched a bonsai value by name")
    if a.require_exact is not None:
        print("agree" if share >= a.require_exact else "DISAGREE")
        sys.exit(0 if share >= a.require_exact else 1)


if __name__ == "__main__":
    main()
