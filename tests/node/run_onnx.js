// Runs a bonsai ONNX export (export/onnx.h) in ONNX Runtime (onnxruntime-node,
// CPU execution provider) on a sample from `bonsai export sample`, for
// scripts/compare_outputs.py to compare with `bonsai export run`.
//
//   node run_onnx.js --model M.onnx --images DIR --out OUT.f32 [--opt all|extended|basic|disabled]
//                    [--threads 1] [--batch 64]
//   node run_onnx.js --model M.onnx --images DIR --bench N [--opt ...] [--threads 1]
//
// DIR/meta.json gives {count, shape [H, W, C], ...}; DIR/images.f32 holds the
// float32 images NHWC. They are transposed to NCHW (the graph's input),
// run in batches, and the float outputs written concatenated to OUT.f32 —
// 4-D outputs [N, K, h, w] transposed back to bonsai's [N, h, w, K].
// The default optimization level 'all' is the one where ORT fuses the QDQ
// graph into its int8 kernels (QLinearConv, ...); 'disabled' runs the
// graph as written (float ops between quantize / dequantize pairs).
// --bench N: one JSON line {"runtime", "opt", "threads", "runs", "median_ms"}
// over N batch-1 runs of the first image after 10 warm-up runs.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const a = { opt: 'all', threads: 1, batch: 64 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!['model', 'images', 'out', 'opt', 'threads', 'batch', 'bench'].includes(key) || i + 1 >= argv.length) {
      throw new Error(`run_onnx: bad argument '${argv[i]}'`);
    }
    a[key] = argv[i + 1];
  }
  if (!a.model || !a.images || (!a.out && !a.bench)) {
    throw new Error('usage: node run_onnx.js --model M.onnx --images DIR (--out OUT.f32 | --bench N) ' +
                    '[--opt all|extended|basic|disabled] [--threads 1] [--batch 64]');
  }
  a.threads = Number(a.threads);
  a.batch = Number(a.batch);
  return a;
}

// [n, h, w, c] → [n, c, h, w]
function nhwcToNchw(x, n, h, w, c) {
  const y = new Float32Array(x.length);
  for (let b = 0; b < n; ++b)
    for (let i = 0; i < h * w; ++i)
      for (let k = 0; k < c; ++k) y[(b * c + k) * h * w + i] = x[(b * h * w + i) * c + k];
  return y;
}

// [n, c, h, w] → [n, h, w, c]
function nchwToNhwc(x, n, c, h, w) {
  const y = new Float32Array(x.length);
  for (let b = 0; b < n; ++b)
    for (let k = 0; k < c; ++k)
      for (let i = 0; i < h * w; ++i) y[(b * h * w + i) * c + k] = x[(b * c + k) * h * w + i];
  return y;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const meta = JSON.parse(fs.readFileSync(path.join(a.images, 'meta.json'), 'utf8'));
  const [h, w, c] = meta.shape;
  const per = h * w * c;
  const raw = fs.readFileSync(path.join(a.images, 'images.f32'));
  const images = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  if (images.length !== meta.count * per) {
    throw new Error(`run_onnx: ${a.images}/images.f32 has ${images.length} floats, meta.json says ${meta.count} × ${per}`);
  }
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: a.opt,
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
  });
  const input = session.inputNames[0], output = session.outputNames[0];

  if (a.bench) {
    const x = new ort.Tensor('float32', nhwcToNchw(images.subarray(0, per), 1, h, w, c), [1, c, h, w]);
    for (let i = 0; i < 10; ++i) await session.run({ [input]: x });
    const times = [];
    for (let i = 0; i < Number(a.bench); ++i) {
      const t0 = process.hrtime.bigint();
      await session.run({ [input]: x });
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((p, q) => p - q);
    const median = times.length % 2 ? times[(times.length - 1) / 2]
                                    : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
    console.log(JSON.stringify({ runtime: 'onnxruntime', opt: a.opt, threads: a.threads, runs: times.length,
                                 median_ms: Number(median.toFixed(4)) }));
    return;
  }

  const fd = fs.openSync(a.out + '.tmp', 'w');
  let dims = null;
  for (let start = 0; start < meta.count; start += a.batch) {
    const n = Math.min(a.batch, meta.count - start);
    const x = nhwcToNchw(images.subarray(start * per, (start + n) * per), n, h, w, c);
    const result = await session.run({ [input]: new ort.Tensor('float32', x, [n, c, h, w]) });
    const y = result[output];
    if (y.type !== 'float32') throw new Error(`run_onnx: output '${output}' is ${y.type}, expected float32`);
    dims = y.dims;
    const values = y.dims.length === 4 ? nchwToNhwc(y.data, y.dims[0], y.dims[1], y.dims[2], y.dims[3]) : y.data;
    fs.writeSync(fd, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  }
  fs.closeSync(fd);
  fs.renameSync(a.out + '.tmp', a.out);
  console.error(`run_onnx: ${meta.count} images, output [${meta.count}, ${dims.slice(1)}] (ONNX layout), ` +
                `opt ${a.opt} → ${a.out}`);
}

main().catch((e) => { console.error(String(e && e.stack ? e.stack : e)); process.exit(1); });
