#!/usr/bin/env python3
"""Float64 gradients for a torchvision peer run.

Reads what tests/peer/torchvision_reference.py wrote into DIR (its weights,
input batch and labels), rebuilds the same torchvision model in float64 and
writes DIR/expected64.safetensors: the train-mode loss and every parameter's
gradient computed in float64 (stored as float32), with the same loss and
settings as the peer (mean cross-entropy, batch statistics, dropout off).

It measures how well float32 can do at all: the parity tests compare both
bonsai's and PyTorch's float32 gradients with these.

  /usr/bin/python3 tests/peer/torchvision_grad64.py --model resnet50 --dir D
"""
import argparse
import json
import os
import struct

import torch
import torchvision

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    weights = read_safetensors(os.path.join(a.dir, "weights.safetensors"))
    inputs = read_safetensors(os.path.join(a.dir, "input.safetensors"))
    head = next(k for k in ("fc.weight", "classifier.3.weight", "classifier.1.weight") if k in weights)
    classes = weights[head].shape[0]
    m = getattr(torchvision.models, a.model)(num_classes=classes)
    m.load_state_dict(weights, strict=False)  # num_batches_tracked is not in the peer's file
    m = m.to(torch.float64).train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    loss = torch.nn.functional.cross_entropy(m(inputs["input"].to(torch.float64)), inputs["labels"])
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for n, prm in m.named_parameters():
        out["grad." + n] = prm.grad
    write_safetensors(os.path.join(a.dir, "expected64.safetensors"), out)
    print("wrote", os.path.join(a.dir, "expected64.safetensors"))


if __name__ == "__main__":
    main()
