#include <doctest/doctest.h>

#include <filesystem>
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
