#!/usr/bin/env bash
# Runs a current SPIRV-Tools program (spirv-val, spirv-opt, spirv-dis, ...): Debian 12's is too old for
# the cooperative-matrix and bf16 shaders, so this fetches Debian forky's spirv-tools package with the
# C and C++ runtime it needs into ~/.cache/fastweights/spirv-tools (once) and runs the program through
# that runtime's loader. A developer tool (checking shaders by hand); the build does not need it.
#   tools/spirv-tools.sh spirv-val --target-env vulkan1.3 some.spv
set -euo pipefail
root="${FW_SPIRV_TOOLS:-$HOME/.cache/fastweights/spirv-tools}"
tree="$root/root"
if [ ! -x "$tree/usr/bin/spirv-val" ]; then
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/debs" "$tree"
  echo "deb http://deb.debian.org/debian forky main" > "$root/sources.list"
  apt_options=(-o "Dir::Etc::SourceList=$root/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$root/lists" -o "Dir::Cache=$root/cache" -o "APT::Get::List-Cleanup=0")
  apt-get "${apt_options[@]}" update >&2
  (cd "$root/debs" && apt-get "${apt_options[@]}" download spirv-tools libc6 libstdc++6 libgcc-s1 >&2)
  for deb in "$root"/debs/*.deb; do dpkg-deb -x "$deb" "$tree"; done
fi
program="$1"; shift
libs="$tree/usr/lib/x86_64-linux-gnu"
exec "$libs/ld-linux-x86-64.so.2" --library-path "$libs" "$tree/usr/bin/$program" "$@"
