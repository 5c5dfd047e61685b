#!/usr/bin/python3
"""Compares another runtime's outputs with bonsai's int8 runtime on the same
images (bonsai export sample / export run; tests/node/run_*.js).

  compare_outputs.py --sample DIR --reference REF.f32 --candidate OUT.f32 [--name NAME]
  compare_outputs.py --float --sample DIR --reference REF.f32 --candidate OUT.f32 [--require 0.999]

REF.f32.json (written by `bonsai export run`) gives the output shape and the
output grid's scale. Prints one JSON line: elements, the share within one
quantization step, the largest difference in steps, and the metric (top-1 or
mIoU, percent; segmentation logits resized bilinearly to the label size as
bonsai's evaluator does) on both outputs.

--float compares float outputs (bonsai's float model, `export run --config
--checkpoint`, against a float export): the largest difference relative to
max|ref| ("max_rel"), the share of elements within 1e-4·max|ref| + 1e-5
("within_tolerance"), the share of images whose argmax agrees ("top1_agree";
per pixel for segmentation), and the metric on both. --require then applies
to within_tolerance.
"""
import argparse
import json
import sys

import numpy as np


def resize_bilinear(x, out_h, out_w):
    """[N, h, w, K] → [N, out_h, out_w, K], half-pixel centres, edges clamped."""
    n, h, w, k = x.shape

    def axis(out, size):
        src = (np.arange(out) + 0.5) * (size / out) - 0.5
        src = np.clip(src, 0, size - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, fy = axis(out_h, h)
    x0, x1, fx = axis(out_w, w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bot = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def metric(out, labels, meta):
    if meta["task"] == "classification":
        return 100.0 * float(np.mean(np.argmax(out, axis=1) == labels))
    k = meta["num_classes"]
    h, w = meta["shape"][0], meta["shape"][1]
    conf = np.zeros((k, k), dtype=np.int64)
    for i in range(0, out.shape[0], 64):
        logits = out[i:i + 64]
        if logits.shape[1:3] != (h, w):
            logits = resize_bilinear(logits, h, w)
        pred = np.argmax(logits, axis=3).ravel()
        lab = labels[i:i + 64].ravel()
        keep = (lab != meta["ignore_label"]) & (lab >= 0) & (lab < k)
        conf += np.bincount(lab[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return 100.0 * float(np.mean(tp[present] / union[present]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sample", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--candidate", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--float", action="store_true", help="float outputs: relative differences, not steps")
    p.add_argument("--count", type=int, default=0,
                   help="compare the first N images only (the candidate ran on those; 0: all)")
    p.add_argument("--require", type=float, default=None,
                   help="also print 'agree' (exit 0) or 'DISAGREE' (exit 1): at least this share within one step")
    p.add_argument("--require-exact", type=float, default=None,
                   help="int8 outputs: also require at least this share of the codes to be equal")
    a = p.parse_args()
    meta = json.load(open(a.sample + "/meta.json"))
    ref_meta = json.load(open(a.reference + ".json"))
    shape = ref_meta["shape"]
    ref = np.fromfile(a.reference, dtype=np.float32)
    cand = np.fromfile(a.candidate, dtype=np.float32)
    if a.count > 0 and a.count < shape[0]:
        ref = ref[: a.count * int(np.prod(shape[1:]))]
        shape = [a.count] + list(shape[1:])
    if ref.size != np.prod(shape) or cand.size != ref.size:
        sys.exit(f"compare_outputs: {a.candidate} has {cand.size} values, {a.reference} {ref.size}, "
                 f"expected {int(np.prod(shape))} for shape {shape}")
    ref = ref.reshape(shape)
    cand = cand.reshape(shape)
    labels = np.fromfile(a.sample + "/labels.i32", dtype=np.int32)
    per_label = int(np.prod([meta["shape"][0], meta["shape"][1]])) if meta["task"] == "segmentation" else 1
    labels = labels[: shape[0] * per_label]
    labels = labels.reshape([shape[0]] + ([meta["shape"][0], meta["shape"][1]] if meta["task"] == "segmentation" else []))
    name = "top1" if meta["task"] == "classification" else "miou"
    if a.float:
        diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
        scale = float(np.abs(ref).max())
        within = float(np.mean(diff <= 1e-4 * scale + 1e-5))
        axis = 1 if meta["task"] == "classification" else 3
        print(json.dumps({
            "name": a.name,
            "elements": int(ref.size),
            "max_rel": float(f"{diff.max() / scale:.3g}") if scale > 0 else float(diff.max()),
            "within_tolerance": within,
            "top1_agree": float(np.mean(np.argmax(ref, axis=axis) == np.argmax(cand, axis=axis))),
            "metric": name,
            "reference": round(metric(ref, labels, meta), 2),
            "candidate": round(metric(cand, labels, meta), 2),
        }))
        if a.require is not None:
            print("agree" if within >= a.require else "DISAGREE")
            sys.exit(0 if within >= a.require else 1)
        return
    steps = np.abs(ref.astype(np.float64) - cand.astype(np.float64)) / ref_meta["scale"]
    within = float(np.mean(steps <= 1.001))
    print(json.dumps({
        "name": a.name,
        "elements": int(ref.size),
        "within_one_step": within,
        "max_steps": float(np.round(steps.max(), 3)),
        "exact": float(np.mean(steps < 0.001)),
        "metric": name,
        "reference": round(metric(ref, labels, meta), 2),
        "candidate": round(metric(cand, labels, meta), 2),
    }))
    if a.require is not None or a.require_exact is not None:
        exact = float(np.mean(steps < 0.001))
        ok = (a.require is None or within >= a.require) and (a.require_exact is None or exact >= a.require_exact)
        print("agree" if ok else "DISAGREE")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
