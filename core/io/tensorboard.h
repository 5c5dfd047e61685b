// TensorBoard event files: scalars written as a TFRecord stream of
// tensorflow.Event protobufs, encoded by hand (no TensorFlow, no protobuf
// library), so `tensorboard --logdir D` shows bonsai's training curves.
//
//   io::EventWriter w("runs/exp1/train");        // creates the directory
//   w.scalar("loss", step, 0.42f);
//   w.scalar("learning_rate", step, 0.1f);
//
// Format: each record is u64 length (LE) · masked CRC32C of the length ·
// payload · masked CRC32C of the payload; the first event carries
// file_version "brain.Event:2". Event fields: wall_time (1, double), step
// (2, int64), file_version (3, string), summary (5) → Summary.value (1) →
// Value{tag (1, string), simple_value (2, float)}.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace bonsai::io {

// CRC32C (Castagnoli) and TFRecord's masking of it.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class EventWriter {
 public:
  // Creates `dir` if needed and a new events.out.tfevents.<time>.<host>.bonsai file in it.
  // An empty `dir` makes a writer that discards everything (the ranks of a
  // distributed run other than rank 0, which alone writes).
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void scalar(const std::string& tag, int64_t step, float value);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::FILE* f_ = nullptr;
};

// A scalar read back from an event file (for tests and `bonsai` tools).
struct ScalarEvent {
  std::string tag;
  int64_t step = 0;
  float value = 0.f;
  double wall_time = 0.0;
};

// Reads every scalar of an event file, checking framing and both CRCs;
// errors name the file and the record offset.
std::vector<ScalarEvent> read_scalar_events(const std::string& path);

}  // namespace bonsai::io
