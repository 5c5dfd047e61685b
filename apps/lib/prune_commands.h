// The pruning subcommands: `bonsai prune strip` (a training checkpoint of a
// pruning run → a plain model checkpoint, masks and optimiser state dropped,
// the zeros stored sparsely) and `bonsai prune info` (per-weight sparsity of
// any checkpoint).
#pragma once

namespace bonsai::apps {

extern const char* kPruneUsage;

int prune_command(int argc, char** argv);

}  // namespace bonsai::apps
