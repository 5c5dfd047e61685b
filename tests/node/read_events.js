// Independent reader for bonsai's TensorBoard event files: the npm `tfrecord`
// package checks the record framing and both masked CRC32Cs, and protobufjs
// decodes each record as a tensorflow.Event from the field numbers of
// TensorFlow's event.proto / summary.proto. Prints one JSON line per scalar:
// {"file", "tag", "step", "value"}. Usage: node read_events.js FILE...
const { RecordReader } = require('tfrecord/lib/record_reader');
const protobuf = require('protobufjs');

const root = protobuf.parse(`
syntax = "proto3";
package tensorflow;
message Value { string tag = 1; float simple_value = 2; }
message Summary { repeated Value value = 1; }
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what { string file_version = 3; Summary summary = 5; }
}`).root;
const Event = root.lookupType('tensorflow.Event');

(async () => {
  for (const file of process.argv.slice(2)) {
    const reader = await RecordReader.create(file);
    let first = true;
    for (;;) {
      const rec = await reader.readRecord();
      if (rec === null) break;
      const ev = Event.decode(rec);
      if (first) {
        if (ev.fileVersion !== 'brain.Event:2') throw new Error(`${file}: first event is not file_version brain.Event:2`);
        first = false;
        continue;
      }
      for (const v of (ev.summary ? ev.summary.value : [])) {
        console.log(JSON.stringify({ file, tag: v.tag, step: Number(ev.step), value: v.simpleValue }));
      }
    }
  }
})().catch((e) => { console.error(String(e)); process.exit(1); });
