# Shared by scripts/test, scripts/demo and scripts/bench: install missing
# Debian packages, then configure and build with meson + ninja.

BONSAI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Everything bonsai needs from Debian to build, test and run the demo.
# Open MPI (libopenmpi-dev, openmpi-bin: mpirun) is optional for a build,
# which then trains single-process; with it, training runs data-parallel
# under mpirun and scripts/test checks that (docs/distributed.md).
BONSAI_PACKAGES=(g++ pkg-config cmake meson ninja-build libdnnl-dev libopenblas-dev libstb-dev
                 libjpeg-dev nlohmann-json3-dev doctest-dev zlib1g-dev dataset-fashion-mnist
                 libflatbuffers-dev libopenmpi-dev openmpi-bin
                 ocl-icd-opencl-dev)  # dnnl-config.cmake requires OpenCL (a Recommends of libdnnl-dev)
# The PyTorch peer, used by tests that compare whole models with torchvision.
# Arm NN (python3-pyarmnn + its CpuRef backend) is a third TFLite runtime.
BONSAI_TEST_PACKAGES=(python3-torch python3-torchvision python3-numpy python3-onnx python3-pyarmnn
                      libarmnn-cpuref-backend22)

bonsai_install_deps() {
  local missing=()
  for p in "${BONSAI_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bonsai needs these Debian packages: ${missing[*]}"
    echo "Install them as root, then run this again:"
    echo "  sudo sh -c '$cmd'"
    exit 1
  fi
  echo "installing: ${missing[*]}"
  sh -c "$cmd" >/tmp/bonsai-apt.log 2>&1 || { tail -20 /tmp/bonsai-apt.log; echo "apt-get failed"; exit 1; }
  apt-get clean  # the downloaded .deb files (hundreds of MB with torch and clang) are not needed again
}

# The newest ckpt-<step>.safetensors in a model dir (by step, not by name).
bonsai_last_checkpoint() {
  ls "$1"/ckpt-*.safetensors | sed 's/.*ckpt-\([0-9]*\)\.safetensors$/\1 &/' | sort -n | tail -1 | cut -d' ' -f2
}

# The study scripts' knobs (scripts/reproduce --quick sets them): RUNS is
# where runs go; STUDY_OVERRIDE is added to every --params_override.
RUNS=${RUNS:-runs}
# "$(bonsai_override "a=1,b=2")": the given overrides plus STUDY_OVERRIDE.
bonsai_override() {
  local base="${1:-}"
  if [ -n "${STUDY_OVERRIDE:-}" ]; then base="${base:+$base,}$STUDY_OVERRIDE"; fi
  echo "$base"
}

bonsai_build() {
  cd "$BONSAI_ROOT"
  if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=release >/tmp/bonsai-meson.log 2>&1 \
      || { cat /tmp/bonsai-meson.log; echo "meson setup failed"; exit 1; }
  fi
  ninja -C build >/tmp/bonsai-ninja.log 2>&1 \
    || { grep -E -A5 'error|FAILED' /tmp/bonsai-ninja.log | head -60; echo "build failed"; exit 1; }
}
