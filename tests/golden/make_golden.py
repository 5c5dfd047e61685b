#!/usr/bin/python3
"""Golden forward/backward data from PyTorch for bonsai's ops (tests/core/test_golden.cpp).

Run with Debian's python3-torch (1.13), not a pyenv python:
    /usr/bin/python3 tests/golden/make_golden.py
It rewrites tests/golden/data/*.safetensors deterministically (fixed seed,
one generator per case, so adding a case does not change the others).

Every file holds one op applied once, in bonsai's layouts:
  activations NHWC      (PyTorch NCHW permuted with (0, 2, 3, 1))
  conv weights HWIO     [KH, KW, Cin/groups, Cout] (PyTorch OIHW permuted (2, 3, 1, 0))
  per-channel vectors   [C]
and the tensors
  inputs and params     "x", "w", "b" (conv), "gamma", "beta", "rmean", "rvar" (batch norm)
  forward output        "y"
  upstream gradient     "gy" (random)
  gradients             "gx", "gw", "gb", "ggamma", "gbeta" of loss = sum(y * gy)
  batch norm training   "rmean_out", "rvar_out": running statistics after the step
The op's parameters are in the file's __metadata__ as strings (stride_h,
pad_top, ..., see each case); the test builds the bonsai call from them.

Inputs are drawn in float32 and the reference is computed in float64, then
stored as F32: the golden values carry no float32 rounding of PyTorch's own,
so the test's 1e-4 tolerance measures bonsai's error alone.
Safetensors is written by hand (as /work/shared/peer/torchvision_reference.py
does), so no extra package is needed.
"""
import json, os, struct, zlib
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DT = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}


def save_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.float64:
            t = t.float()
        b = t.numpy().tobytes()
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def gen(name):
    # A generator seeded from the case name: each case is reproducible on its own.
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def randn(g, *shape):
    # float32 draw, then float64, so the stored f32 inputs are exactly what was used.
    return torch.randn(*shape, generator=g, dtype=torch.float32).double()


def nhwc(t):  # NCHW -> NHWC
    return t.permute(0, 2, 3, 1)


def hwio(w):  # OIHW -> HWIO
    return w.permute(2, 3, 1, 0)


def common_meta(op):
    return {"op": op, "torch": torch.__version__, "layout": "NHWC activations, HWIO conv weights",
            "loss": "sum(y * gy)", "generator": "tests/golden/make_golden.py"}


def conv_case(name, n, h, w, cin, cout, k, stride=1, pad=(0, 0, 0, 0), dilation=1, groups=1, bias=True):
    """pad = (top, left, bottom, right), applied with F.pad so asymmetric (TF SAME) works."""
    g = gen(name)
    x = randn(g, n, cin, h, w).requires_grad_()
    wt = (randn(g, cout, cin // groups, k, k) * (1.0 / (k * k * cin / groups) ** 0.5)).requires_grad_()
    b = (randn(g, cout) * 0.1).requires_grad_() if bias else None
    top, left, bottom, right = pad
    xp = F.pad(x, (left, right, top, bottom))
    y = F.conv2d(xp, wt, b, stride=stride, dilation=dilation, groups=groups)
    gy = randn(g, *y.shape)
    (y * gy).sum().backward()
    t = {"x": nhwc(x), "w": hwio(wt), "y": nhwc(y), "gy": nhwc(gy), "gx": nhwc(x.grad), "gw": hwio(wt.grad)}
    if bias:
        t["b"] = b
        t["gb"] = b.grad
    meta = common_meta("conv2d")
    meta.update(stride_h=stride, stride_w=stride, dilation_h=dilation, dilation_w=dilation,
                pad_top=top, pad_left=left, pad_bottom=bottom, pad_right=right,
                groups=groups, bias=int(bias))
    save(name, t, meta)


def batchnorm_case(name, n, h, w, c, training):
    g = gen(name)
    x = (randn(g, n, c, h, w) * 2.0 + 0.5).requires_grad_()
    gamma = (torch.rand(c, generator=g, dtype=torch.float32).double() + 0.5).requires_grad_()
    beta = (randn(g, c) * 0.2).requires_grad_()
    rmean = randn(g, c) * 0.2
    rvar = torch.rand(c, generator=g, dtype=torch.float32).double() + 0.5
    rmean_in, rvar_in = rmean.clone(), rvar.clone()
    # torch momentum 0.01 == Keras momentum 0.99: running = running*0.99 + batch*0.01,
    # with the unbiased batch variance.
    y = F.batch_norm(x, rmean, rvar, gamma, beta, training=training, momentum=0.01, eps=1e-3)
    gy = randn(g, *y.shape)
    (y * gy).sum().backward()
    t = {"x": nhwc(x), "gamma": gamma, "beta": beta, "rmean": rmean_in, "rvar": rvar_in,
         "y": nhwc(y), "gy": nhwc(gy), "gx": nhwc(x.grad), "ggamma": gamma.grad, "gbeta": beta.grad}
    if training:
        t["rmean_out"] = rmean
        t["rvar_out"] = rvar
    meta = common_meta("batch_norm")
    meta.update(training=int(training), momentum="0.99 (Keras convention; torch momentum 0.01)",
                epsilon="1e-3")
    save(name, t, meta)


def pool_case(name, kind, n, h, w, c, k, stride, pad, count_include_pad=False):
    g = gen(name)
    x = randn(g, n, c, h, w).requires_grad_()
    if kind == "max":
        y = F.max_pool2d(x, k, stride, pad)  # pads with -inf
    else:
        y = F.avg_pool2d(x, k, stride, pad, count_include_pad=count_include_pad)
    gy = randn(g, *y.shape)
    (y * gy).sum().backward()
    meta = common_meta(kind + "_pool2d")
    meta.update(kernel_h=k, kernel_w=k, stride_h=stride, stride_w=stride,
                pad_top=pad, pad_left=pad, pad_bottom=pad, pad_right=pad,
                exclude_padding=int(not count_include_pad))
    save(name, {"x": nhwc(x), "y": nhwc(y), "gy": nhwc(gy), "gx": nhwc(x.grad)}, meta)


def resize_case(name, n, h, w, c, oh, ow):
    g = gen(name)
    x = randn(g, n, c, h, w).requires_grad_()
    y = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)  # antialias off
    gy = randn(g, *y.shape)
    (y * gy).sum().backward()
    meta = common_meta("resize_bilinear")
    meta.update(out_h=oh, out_w=ow, align_corners=0, antialias=0)
    save(name, {"x": nhwc(x), "y": nhwc(y), "gy": nhwc(gy), "gx": nhwc(x.grad)}, meta)


written = []


def save(name, tensors, meta):
    path = os.path.join(OUT, name + ".safetensors")
    save_safetensors(path, tensors, meta)
    written.append((name, os.path.getsize(path)))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)

    #         name                 n  h   w cin cout k
    conv_case("conv_1x1",          2, 7,  9, 4, 6,   1)
    conv_case("conv_1x1_nobias",   2, 6,  5, 5, 3,   1, bias=False)
    conv_case("conv_3x3_s1_p1",    2, 9,  8, 3, 5,   3, pad=(1, 1, 1, 1))
    # TF SAME, stride 2, even input: the one padding pixel goes bottom/right.
    conv_case("conv_3x3_s2_same",  2, 10, 8, 4, 6,   3, stride=2, pad=(0, 0, 1, 1))
    conv_case("conv_5x5_s2_p2",    2, 11, 9, 3, 4,   5, stride=2, pad=(2, 2, 2, 2), bias=False)
    conv_case("conv_7x7_s2_p3",    2, 11, 10, 3, 4,  7, stride=2, pad=(3, 3, 3, 3))
    conv_case("conv_3x3_d2_p2",    2, 9,  9, 4, 4,   3, pad=(2, 2, 2, 2), dilation=2, bias=False)
    conv_case("conv_dw3x3_s1",     2, 8,  7, 6, 6,   3, pad=(1, 1, 1, 1), groups=6)
    # MobileNet's stride-2 depthwise: TF SAME on an even input, no bias (BN follows).
    conv_case("conv_dw3x3_s2_same", 2, 10, 10, 6, 6, 3, stride=2, pad=(0, 0, 1, 1), groups=6, bias=False)
    conv_case("conv_dw3x3_mult2",  2, 7,  7, 4, 8,   3, pad=(1, 1, 1, 1), groups=4)
    conv_case("conv_grouped_g2",   2, 8,  8, 4, 6,   3, pad=(1, 1, 1, 1), groups=2)

    batchnorm_case("batchnorm_train", 2, 6, 7, 5, training=True)
    batchnorm_case("batchnorm_eval",  2, 5, 6, 4, training=False)

    #         name                    kind   n  h   w  c  k  s  pad
    pool_case("maxpool_3x3_s2_p1",    "max", 2, 9,  9, 4, 3, 2, 1)
    pool_case("maxpool_2x2_s2",       "max", 2, 8, 10, 3, 2, 2, 0)
    pool_case("avgpool_3x3_s1_p1_excl", "avg", 2, 7, 6, 3, 3, 1, 1, count_include_pad=False)
    pool_case("avgpool_3x3_s1_p1_incl", "avg", 2, 7, 6, 3, 3, 1, 1, count_include_pad=True)
    pool_case("avgpool_2x2_s2",       "avg", 2, 8,  6, 3, 2, 2, 0)

    resize_case("resize_up_5x7_to_11x13",   2, 5, 7, 3, 11, 13)
    resize_case("resize_down_12x10_to_5x4", 2, 12, 10, 3, 5, 4)

    total = 0
    for name, size in written:
        print(f"{size:8d}  {name}.safetensors")
        total += size
    print(f"{total:8d}  total, {len(written)} files in {OUT}")


if __name__ == "__main__":
    main()
