// The bonsai command line: thin subcommands over the apps library.
#include <cstdio>
#include <cstring>
#include <string>

#include "apps/lib/args.h"
#include "apps/lib/bench_op.h"
#include "apps/lib/fashion_demo.h"
#include "core/check.h"

namespace {

const char* kUsage = R"(bonsai — train, quantize and prune convolutional vision models

usage:
  bonsai demo [--epochs 3] [--batch 64] [--lr 0.05] [--threads 0] [--seed 0]
              [--data /usr/share/datasets/fashion-mnist] [--train_limit 0]
      Train SmallCNN on Fashion-MNIST and print test accuracy.
  bonsai bench op conv [--n 8 --h 56 --w 56 --c 64 --k 64 --kernel 3 --stride 1 --groups 1]
                       [--threads 0 --iters 20 --warmup 3]
  bonsai bench op batchnorm [--n 8 --h 56 --w 56 --c 64] [--threads 0 --iters 20]
  bonsai bench op sgemm [--m 2048] [--threads 0 --iters 10]
      Print one JSON line: median forward/backward ms and GFLOP/s.
  bonsai help
)";

using bonsai::apps::Args;

int cmd_demo(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"epochs", "3"}, {"batch", "64"}, {"lr", "0.05"}, {"threads", "0"}, {"seed", "0"},
          {"data", "/usr/share/datasets/fashion-mnist"}, {"train_limit", "0"}});
  bonsai::apps::FashionDemoOptions o;
  o.epochs = a.get_int("epochs");
  o.batch = a.get_int("batch");
  o.learning_rate = a.get_float("lr");
  o.threads = a.get_int("threads");
  o.seed = static_cast<uint32_t>(a.get_int("seed"));
  o.data_dir = a.get("data");
  o.train_limit = a.get_int("train_limit");
  BONSAI_CHECK(o.epochs > 0 && o.batch > 0, "--epochs and --batch must be positive");
  auto r = bonsai::apps::run_fashion_demo(o);
  std::printf("test accuracy %.2f%%  (final loss %.4f, %.1f s training, %.0f images/s)\n",
              100.0 * r.test_accuracy, r.final_loss, r.train_seconds, r.images_per_second);
  return 0;
}

int cmd_bench(int argc, char** argv) {
  BONSAI_CHECK(argc >= 4 && std::strcmp(argv[2], "op") == 0,
               "usage: bonsai bench op conv|batchnorm|sgemm [flags]");
  bonsai::apps::OpBenchSpec s;
  s.op = argv[3];
  Args a(argc, argv, 4,
         {{"n", "8"}, {"h", "56"}, {"w", "56"}, {"c", "64"}, {"k", "64"}, {"kernel", "3"},
          {"stride", "1"}, {"groups", "1"}, {"m", "2048"}, {"threads", "0"}, {"iters", "20"},
          {"warmup", "3"}});
  s.n = a.get_int("n"); s.h = a.get_int("h"); s.w = a.get_int("w"); s.c = a.get_int("c");
  s.k = a.get_int("k"); s.kernel = a.get_int("kernel"); s.stride = a.get_int("stride");
  s.groups = a.get_int("groups"); s.m = a.get_int("m"); s.threads = a.get_int("threads");
  s.iters = a.get_int("iters"); s.warmup = a.get_int("warmup");
  std::printf("%s\n", bonsai::apps::bench_op(s).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "help";
  try {
    if (cmd == "demo") return cmd_demo(argc, argv);
    if (cmd == "bench") return cmd_bench(argc, argv);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "bonsai: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bonsai: error: %s\n", e.what());
    return 1;
  }
}
