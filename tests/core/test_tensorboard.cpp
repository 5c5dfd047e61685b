#include <doctest/doctest.h>

#include <filesystem>
#include <cstring>
#include <fstream>

#include <unistd.h>

#include "core/check.h"
#include "core/io/tensorboard.h"

using namespace bonsai;
namespace fs = std::filesystem;

TEST_CASE("CRC32C known answer and TFRecord masking") {
  CHECK(io::crc32c("123456789", 9) == 0xE3069283u);
  uint32_t c = 0xE3069283u;
  CHECK(io::masked_crc32c("123456789", 9) == ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST_CASE("event files: scalars read back with tags, steps and values; corruption is detected") {
  fs::path dir = fs::temp_directory_path() / ("bonsai_tb_" + std::to_string(::getpid()));
  std::string path;
  {
    io::EventWriter w((dir / "train").string());
    path = w.path();
    for (int s = 0; s < 5; ++s) {
      w.scalar("loss", s * 10, 1.0f / (s + 1));
      w.scalar("learning_rate", s * 10, 0.1f);
    }
  }
  auto ev = io::read_scalar_events(path);
  REQUIRE(ev.size() == 10);
  CHECK(ev[0].tag == "loss");
  CHECK(ev[0].step == 0);
  CHECK(ev[0].value == 1.0f);
  CHECK(ev[9].tag == "learning_rate");
  CHECK(ev[9].step == 40);
  CHECK(ev[8].value == 0.2f);
  CHECK(ev[0].wall_time > 1.7e9);
  // Flip one payload byte: the data CRC must catch it, and the error names the file.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  bytes[bytes.size() - 10] ^= 0x20;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
  try {
    io::read_scalar_events(path);
    FAIL("corrupt event file must throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("CRC") != std::string::npos);
  }
  fs::remove_all(dir);
}

// Found reading the reader while writing fuzz/fuzz_tensorboard.cpp (docs/reliability.md): a record
// cut after its length and length CRC, with 0..3 bytes of the rest, made the
// size check wrap around and the reader look past the end of the file.
TEST_CASE("event files: a record cut inside its last 4 framing bytes is a truncated record") {
  fs::path dir = fs::temp_directory_path() / ("bonsai_tb_cut_" + std::to_string(::getpid()));
  std::string path;
  {
    io::EventWriter w((dir / "train").string());
    path = w.path();
    w.scalar("loss", 1, 0.5f);
  }
  std::string good;
  {
    std::ifstream f(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  for (uint64_t n = 0; n <= 3; ++n) {
    for (size_t tail = 0; tail < 4; ++tail) {
      std::string bytes = good;
      char len[8];
      std::memcpy(len, &n, 8);
      uint32_t lc = io::masked_crc32c(len, 8);
      bytes.append(len, 8);
      bytes.append(reinterpret_cast<const char*>(&lc), 4);
      bytes.append(tail, 'x');  // fewer than the n + 4 bytes the record needs
      std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
      try {
        io::read_scalar_events(path);
        FAIL("a cut record must throw");
      } catch (const Error& e) {
        CHECK_MESSAGE(std::string(e.what()).find("truncated record") != std::string::npos, e.what());
      }
    }
  }
  fs::remove_all(dir);
}
