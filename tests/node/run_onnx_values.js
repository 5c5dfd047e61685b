// Every int8 value of a bonsai ONNX export as ONNX Runtime computes it, for
// finding the first layer where ORT and bonsai's int8 runtime part
// (scripts/compare_values.py adds each QuantizeLinear output to the graph's
// outputs, then runs this).
//
//   node run_onnx_values.js --model M.onnx --images DIR --out VDIR [--count 16]
//
// Runs the first --count images of DIR (as run_onnx.js reads them) in one
// batch with ORT's default optimization ('all': its QLinear kernels) and
// writes every int8/uint8 output as VDIR/<k>.s8 — int8 codes (uint8 shifted
// by -128), 4-D tensors in bonsai's NHWC order — with VDIR/outputs.json
// listing {name, file, shape}.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

async function main() {
  const a = { count: 16 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!['model', 'images', 'out', 'count'].includes(key) || i + 1 >= argv.length)
      throw new Error(`run_onnx_values: bad argument '${argv[i]}'`);
    a[key] = argv[i + 1];
  }
  if (!a.model || !a.images || !a.out)
    throw new Error('usage: node run_onnx_values.js --model M.onnx --images DIR --out VDIR [--count 16]');
  const meta = JSON.parse(fs.readFileSync(path.join(a.images, 'meta.json'), 'utf8'));
  const [h, w, c] = meta.shape;
  const n = Math.min(Number(a.count), meta.count);
  const raw = fs.readFileSync(path.join(a.images, 'images.f32'));
  const images = new Float32Array(raw.buffer, raw.byteOffset, n * h * w * c);
  const x = new Float32Array(images.length);  // NHWC → NCHW
  for (let b = 0; b < n; ++b)
    for (let i = 0; i < h * w; ++i)
      for (let k = 0; k < c; ++k) x[(b * c + k) * h * w + i] = images[(b * h * w + i) * c + k];
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1, interOpNumThreads: 1,
  });
  const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [n, c, h, w]) });
  fs.mkdirSync(a.out, { recursive: true });
  const index = [];
  session.outputNames.forEach((name, k) => {
    const t = result[name];
    if (t.type !== 'int8' && t.type !== 'uint8') return;
    const d = t.dims;
    const codes = new Int8Array(t.data.length);
    const shift = t.type === 'uint8' ? 128 : 0;
    if (d.length === 4) {  // [n, c, h, w] → [n, h, w, c]
      const [bn, bc, bh, bw] = d;
      for (let b = 0; b < bn; ++b)
        for (let ch = 0; ch < bc; ++ch)
          for (let i = 0; i < bh * bw; ++i) codes[(b * bh * bw + i) * bc + ch] = t.data[(b * bc + ch) * bh * bw + i] - shift;
    } else {
      for (let i = 0; i < codes.length; ++i) codes[i] = t.data[i] - shift;
    }
    const file = `${k}.s8`;
    fs.writeFileSync(path.join(a.out, file), Buffer.from(codes.buffer));
    index.push({ name, file, shape: d.length === 4 ? [d[0], d[2], d[3], d[1]] : Array.from(d) });
  });
  fs.writeFileSync(path.join(a.out, 'outputs.json'), JSON.stringify(index));
  console.error(`run_onnx_values: ${n} images, ${index.length} int8 values → ${a.out}`);
}

main().catch((e) => { console.error(String(e && e.stack ? e.stack : e)); process.exit(1); });
