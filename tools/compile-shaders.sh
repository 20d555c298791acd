#!/usr/bin/env bash
# compile-shaders.sh <shaders-root> <out-dir>: compiles <shaders-root>/<family>/*.comp to SPIR-V
# (common/ holds only included code and is skipped).
# A shader declares its variants with lines '//! variant <name> [-DNAME=VALUE ...]' anywhere in the
# file; each becomes <out-dir>/<family>/<name>.spv compiled with those defines. A shader without such
# lines compiles once to <out-dir>/<family>/<basename>.spv.
# Flags: --target-env=vulkan1.3 -O -I <shaders-root>/common -I <shaders-root>/<family>.
# Incremental: a variant whose .spv is newer than its .comp, every file under common/ and the family's
# *.glsl is skipped. Stale .spv files (no longer a variant) are removed. Variants compile in parallel;
# any failure prints glslc's errors and fails the script. One summary line goes to stderr.
# Every module compiled is then checked with spirv-val (tools/spirv-tools.sh, Debian forky's
# SPIRV-Tools, fetched once like glslc): glslc has emitted invalid SPIR-V that lavapipe accepted and
# the H100's driver crashed on (bench/results/2026-12-07-h100-run114.txt). FASTWEIGHTS_SPIRV_VAL=0
# skips the check.
set -euo pipefail
shopt -s nullglob
[ $# = 2 ] || { echo "usage: compile-shaders.sh <shaders-root> <out-dir>" >&2; exit 2; }
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
glslc=$("$here/find-glslc.sh")

jobs=$(mktemp)
trap 'rm -f "$jobs"' EXIT
declare -A expected=()   # spv path -> the .comp that makes it
common_deps=()
[ -d "$src/common" ] && while IFS= read -r -d '' f; do common_deps+=("$f"); done < <(find "$src/common" -type f -print0)
total=0
for comp in "$src"/*/*.comp; do
  family=$(basename "$(dirname "$comp")")
  [ "$family" = common ] && continue
  deps=("$comp" "${common_deps[@]}" "$(dirname "$comp")"/*.glsl)
  variants=$(sed -n 's#^[[:space:]]*//![[:space:]]*variant[[:space:]]\{1,\}##p' "$comp")
  [ -z "$variants" ] && variants=$(basename "$comp" .comp)
  while IFS= read -r line; do
    read -r name defines <<<"$line" || true
    [ -n "$name" ] || continue
    spv="$out/$family/$name.spv"
    if [ -n "${expected[$spv]:-}" ]; then
      echo "compile-shaders: variant $family/$name is declared twice (${expected[$spv]#"$src"/} and ${comp#"$src"/})" >&2
      exit 1
    fi
    expected[$spv]=$comp
    total=$((total + 1))
    stale=0
    if [ ! -f "$spv" ]; then stale=1; else
      for d in "${deps[@]}"; do if [ "$d" -nt "$spv" ]; then stale=1; break; fi; done
    fi
    [ $stale = 1 ] && printf '%s\t%s\t%s\t%s\n' "$comp" "$spv" "$family" "$defines" >> "$jobs"
  done <<<"$variants"
done

# Remove outputs that no longer correspond to a variant (and leftovers of interrupted compiles).
removed=0
while IFS= read -r -d '' f; do
  if [ -z "${expected[$f]:-}" ]; then rm -f "$f"; removed=$((removed + 1)); fi
done < <(find "$out" -type f \( -name '*.spv' -o -name '*.spv.tmp' \) -print0)
find "$out" -mindepth 1 -type d -empty -delete

count=$(wc -l < "$jobs")
status=0
validate=${FASTWEIGHTS_SPIRV_VAL:-1}
if [ "$count" -gt 0 ] && [ "$validate" != 0 ]; then
  # fetch SPIRV-Tools once, before the parallel jobs use it
  "$here/spirv-tools.sh" spirv-val --version > /dev/null || { echo "compile-shaders: spirv-val is not available (FASTWEIGHTS_SPIRV_VAL=0 skips the check)" >&2; exit 1; }
fi
if [ "$count" -gt 0 ]; then
  export glslc src here validate
  # shellcheck disable=SC2016
  xargs -d '\n' -n 1 -P "$(nproc)" bash -c '
    IFS=$'"'"'\t'"'"' read -r comp spv family defines <<<"$1"
    mkdir -p "$(dirname "$spv")"
    # shellcheck disable=SC2086
    if "$glslc" --target-env=vulkan1.3 -O -I "$src/common" -I "$src/$family" $defines "$comp" -o "$spv.tmp"; then
      if [ "$validate" != 0 ] && ! "$here/spirv-tools.sh" spirv-val --target-env vulkan1.3 "$spv.tmp" >&2; then
        rm -f "$spv.tmp"
        echo "compile-shaders: INVALID SPIR-V ${spv##*/} from ${comp#"$src"/} ${defines} (spirv-val above)" >&2
        exit 1
      fi
      mv -f "$spv.tmp" "$spv"
    else
      rm -f "$spv.tmp"
      echo "compile-shaders: FAILED ${spv##*/} from ${comp#"$src"/} ${defines}" >&2
      exit 1
    fi
  ' compile < "$jobs" || status=1
fi
summary="compile-shaders: $count of $total variants compiled, $((total - count)) up to date"
[ $removed -gt 0 ] && summary+=", $removed stale removed"
[ $status = 0 ] || summary+=" - FAILED"
echo "$summary ($glslc)" >&2
exit $status
