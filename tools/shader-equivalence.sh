#!/usr/bin/env bash
# Whether a shader refactor left a specialisation unchanged, for kernels the CI machine cannot run
# (the tensor-core ones): each variant of the given shaders is compiled from git revision REV and from
# the work tree, specialised with the given constants (spirv-opt --set-spec-const-default-value, then
# --freeze-spec-const -O), and the two instruction histograms are compared, leaving out names,
# declarations and constants. "same" is strong evidence that the specialisation computes what REV
# computed; "DIFF" prints what changed. A developer tool; it needs tools/spirv-tools.sh.
#   tools/shader-equivalence.sh e9ce81a "0:false 3:false" shaders/delta_rule/chunk_grad_qk_fragments.comp ...
# Constants a variant does not declare are ignored by spirv-opt. Declarations (shared-memory sizes among
# them) are not compared, only instructions.
set -euo pipefail
rev=$1 spec=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
glslc="${GLSLC:-$HOME/.cache/fastweights/glslc/glslc}"
tools="$here/tools/spirv-tools.sh"
work=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$here" worktree add -f --detach "$work/old" "$rev" >/dev/null 2>&1

histogram() {   # tree shader defines -> instruction histogram on stdout
  local tree=$1 shader=$2 defines=$3 family
  family=$(dirname "$shader")
  # shellcheck disable=SC2086
  "$glslc" --target-env=vulkan1.3 -fshader-stage=compute -I "$tree/shaders/common" -I "$tree/$family" $defines -O0 "$tree/$shader" -o "$work/k.spv"
  "$tools" spirv-opt --set-spec-const-default-value "$spec" "$work/k.spv" -o "$work/k1.spv"
  "$tools" spirv-opt --freeze-spec-const --fold-spec-const-op-composite -O "$work/k1.spv" -o "$work/k2.spv"
  "$tools" spirv-dis --no-header "$work/k2.spv" | grep -o 'Op[A-Za-z0-9]*' \
    | grep -Ev '^Op(Name|MemberName|Decorate|MemberDecorate|Variable|Type[A-Za-z]*|Constant[A-Za-z]*|Undef|String|Line|Source[A-Za-z]*)$' | sort | uniq -c
}

status=0
for shader in "$@"; do
  shader=${shader#"$here/"}
  variants=$(sed -n 's#^[[:space:]]*//![[:space:]]*variant[[:space:]]\{1,\}##p' "$here/$shader")
  [ -z "$variants" ] && variants=$(basename "$shader" .comp)
  while read -r name rest; do
    defines=$(echo "$rest" | grep -o -- '-D[^ ]*' | tr '\n' ' ' || true)
    if [ ! -f "$work/old/$shader" ]; then echo "new   $name (not in $rev)"; continue; fi
    histogram "$work/old" "$shader" "$defines" > "$work/old.txt" 2>/dev/null || { echo "new   $name (does not build at $rev)"; continue; }
    histogram "$here" "$shader" "$defines" > "$work/new.txt"
    if diff -q "$work/old.txt" "$work/new.txt" >/dev/null; then echo "same  $name [$spec]"
    else echo "DIFF  $name [$spec]"; { diff "$work/old.txt" "$work/new.txt" || true; } | sed 's/^/      /' | head -${FW_DIFF_LINES:-12}; status=1; fi
  done <<< "$variants"
done
exit $status
