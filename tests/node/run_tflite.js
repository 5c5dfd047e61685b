// Runs a .tflite model on sample images with TFLite's own runtime (the WASM
// build in @tensorflow/tfjs-tflite), for comparison with bonsai's int8 runtime.
//
//   node tests/node/run_tflite.js --model M.tflite --images DIR --out OUT.f32
//   node tests/node/run_tflite.js --model M.tflite --images DIR --bench 50
//
// DIR comes from `bonsai export sample`: DIR/meta.json {count, shape [H, W, C]}
// and DIR/images.f32 (float32 NHWC). Each image runs alone (batch 1); the
// float outputs are written concatenated, NHWC, to OUT.f32. --bench N prints
// one JSON line {"runtime":"tflite","median_ms":...} over N batch-1 runs
// after a warm-up, instead of writing outputs.
//
// tfjs-tflite expects a browser; the preamble below (see
// ../shared/reference/runtimes.md §2) makes it load in Node: a `self` and
// `location` for the emscripten loader, importScripts, a fetch that reads
// the .wasm from disk, and no MessageChannel so the single-threaded build
// is chosen. numThreads is always 1.
'use strict';
const fs = require('fs'), path = require('path'), vm = require('vm');

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument '${argv[i]}'`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  if (!a.model || !a.images || (!a.out && !a.bench))
    throw new Error('usage: run_tflite.js --model M.tflite --images DIR (--out OUT.f32 | --bench N)');
  return a;
}

const WASM_DIR = path.join(path.dirname(require.resolve('@tensorflow/tfjs-tflite/package.json')), 'wasm') + '/';
globalThis.self = globalThis;
self.location = { origin: 'file://', href: 'file://' + WASM_DIR };
globalThis.importScripts = (u) => {
  const f = u.replace(/^file:\/\//, '');
  vm.runInThisContext(fs.readFileSync(f, 'utf8'), { filename: f });
};
const realFetch = globalThis.fetch;
globalThis.fetch = async (u, o) => {
  u = String(u);
  return u.startsWith('file://') || u.startsWith('/')
    ? new Response(fs.readFileSync(u.replace(/^file:\/\//, '')), { status: 200, headers: { 'Content-Type': 'application/wasm' } })
    : realFetch(u, o);
};
globalThis.MessageChannel = undefined;  // force the non-threaded build
require('@tensorflow/tfjs-backend-cpu');
const tf = require('@tensorflow/tfjs-core');
const tflite = require('@tensorflow/tfjs-tflite');
tflite.setWasmPath(WASM_DIR);  // an absolute path, not file://

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await tf.setBackend('cpu');
  const meta = JSON.parse(fs.readFileSync(path.join(args.images, 'meta.json'), 'utf8'));
  const [h, w, c] = meta.shape;
  const per = h * w * c;
  const raw = fs.readFileSync(path.join(args.images, 'images.f32'));
  const images = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  if (images.length !== meta.count * per) throw new Error(`images.f32 holds ${images.length} floats, meta says ${meta.count} x ${per}`);

  const bytes = fs.readFileSync(args.model);
  const model = await tflite.loadTFLiteModel(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), { numThreads: 1 });
  const run = (i) => tf.tidy(() => model.predict(tf.tensor(images.subarray(i * per, (i + 1) * per), [1, h, w, c], 'float32')).dataSync());

  if (args.bench) {
    const n = parseInt(args.bench, 10);
    for (let i = 0; i < Math.min(5, n); ++i) run(i % meta.count);
    const times = [];
    for (let i = 0; i < n; ++i) {
      const t0 = process.hrtime.bigint();
      run(i % meta.count);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const median = times.length % 2 ? times[(times.length - 1) / 2] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
    console.log(JSON.stringify({ runtime: 'tflite', median_ms: median, runs: n }));
    return;
  }

  const fd = fs.openSync(args.out + '.tmp', 'w');
  for (let i = 0; i < meta.count; ++i) {
    const y = run(i);
    fs.writeSync(fd, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
  fs.closeSync(fd);
  fs.renameSync(args.out + '.tmp', args.out);
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
