#!/usr/bin/env bash
# compile-shaders.sh <shaders-root> <out-dir>: compiles shaders/<family>/*.comp to SPIR-V.
# A shader declares its variants with lines '//! variant <name> [-DNAME=VALUE ...]'; each becomes
# <out-dir>/<family>/<name>.spv. A shader without such lines compiles once to <basename>.spv.
# Up-to-date variants (newer than the .comp, common/*.glsl and the family's *.glsl) are skipped;
# stale .spv files are removed; variants compile in parallel; any failure fails the script.
set -euo pipefail
src=$(cd "$1" && pwd)
out=$2
here=$(cd "$(dirname "$0")" && pwd)
glslc=$("$here/find-glslc.sh")
mkdir -p "$out"
jobs=$(mktemp)
trap 'rm -f "$jobs"' EXIT
expected=()
for comp in "$src"/*/*.comp; do
  family=$(basename "$(dirname "$comp")")
  [ "$family" = common ] && continue
  deps=("$comp" "$src"/common/*.glsl)
  for g in "$(dirname "$comp")"/*.glsl; do [ -e "$g" ] && deps+=("$g"); done
  variants=$(grep -E '^//! variant ' "$comp" | sed 's#^//! variant ##' || true)
  [ -z "$variants" ] && variants=$(basename "$comp" .comp)
  while IFS= read -r line; do
    read -r name defines <<<"$line"
    spv="$out/$family/$name.spv"
    expected+=("$spv")
    stale=0
    if [ ! -f "$spv" ]; then stale=1; else
      for d in "${deps[@]}"; do [ "$d" -nt "$spv" ] && stale=1 && break; done
    fi
    [ $stale = 1 ] && printf '%s\t%s\t%s\t%s\n' "$comp" "$spv" "$family" "$defines" >> "$jobs"
  done <<<"$variants"
done
# Remove outputs that no longer correspond to a variant.
find "$out" -name '*.spv' -print0 | while IFS= read -r -d '' f; do
  keep=0; for e in "${expected[@]}"; do [ "$f" = "$e" ] && keep=1 && break; done
  [ $keep = 1 ] || rm -f "$f"
done
count=$(wc -l < "$jobs")
if [ "$count" -gt 0 ]; then
  export glslc src
  # shellcheck disable=SC2016
  xargs -P "$(nproc)" -L 1 -d '\n' bash -c '
    IFS=$'"'"'\t'"'"' read -r comp spv family defines <<<"$0"
    mkdir -p "$(dirname "$spv")"
    # shellcheck disable=SC2086
    "$glslc" --target-env=vulkan1.3 -O -I "$src/common" -I "$src/$family" $defines "$comp" -o "$spv.tmp" && mv "$spv.tmp" "$spv"
  ' < "$jobs"
fi
echo "compile-shaders: $count of ${#expected[@]} variants compiled ($glslc)" >&2
