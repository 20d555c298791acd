#!/usr/bin/env bash
# Prints the path of a glslc that compiles every shader of the project (GL_KHR_cooperative_matrix
# and GL_EXT_bfloat16): $GLSLC if set and working, else a glslc on PATH that passes the probe, else
# a private copy fetched once into ${FASTWEIGHTS_TOOLS:-~/.cache/fastweights}/glslc.
# The private copy: Debian's glslc from the 'forky' suite (shaderc 2026.x; trixie's 2025.2 lacks
# GL_EXT_bfloat16), downloaded with a private sources list and lists directory (nothing on the
# system changes), unpacked with dpkg -x, and run through its own dynamic loader and libraries,
# so it works on Debian 12 whose glibc is older.
set -euo pipefail
tools=${FASTWEIGHTS_TOOLS:-$HOME/.cache/fastweights}
root=$tools/glslc
suite=${FASTWEIGHTS_GLSLC_SUITE:-forky}

probe() {  # probe <glslc>: compiles a shader using both extensions
  local dir; dir=$(mktemp -d)
  cat > "$dir/probe.comp" <<'GLSL'
#version 460
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_bfloat16 : require
layout(local_size_x = 32) in;
shared uvec4 tile[64];
void main() {
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> a;
  coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> b;
  coopMatLoad(a, tile, 0, 2, gl_CooperativeMatrixLayoutRowMajor);
  coopMatLoad(b, tile, 0, 2, gl_CooperativeMatrixLayoutRowMajor);
}
GLSL
  local ok=1
  "$1" --target-env=vulkan1.3 -o "$dir/probe.spv" "$dir/probe.comp" >/dev/null 2>&1 || ok=0
  rm -rf "$dir"
  [ $ok = 1 ]
}

if [ -n "${GLSLC:-}" ]; then
  if probe "$GLSLC"; then echo "$GLSLC"; exit 0; fi
  echo "find-glslc: GLSLC=$GLSLC does not compile GL_KHR_cooperative_matrix + GL_EXT_bfloat16 shaders" >&2
  exit 1
fi
if [ -x "$root/glslc" ] && [ -f "$root/.probed" ]; then echo "$root/glslc"; exit 0; fi
if command -v glslc >/dev/null 2>&1 && probe "$(command -v glslc)"; then command -v glslc; exit 0; fi

mkdir -p "$tools"
exec 9>"$tools/.glslc.lock"
flock 9
if [ -x "$root/glslc" ] && [ -f "$root/.probed" ]; then echo "$root/glslc"; exit 0; fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "find-glslc: no suitable glslc found; install shaderc 2025.3+ (Vulkan SDK, or your distribution's glslc) or set GLSLC" >&2
  exit 1
fi
echo "find-glslc: fetching glslc from Debian $suite into $root" >&2
work=$(mktemp -d "$tools/.glslc-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
echo "deb http://deb.debian.org/debian $suite main" > "$work/sources.list"
o=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists"
   -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${o[@]}" update >/dev/null
(cd "$work/debs" && apt-get "${o[@]}" download "glslc/$suite" "libshaderc1/$suite" "libc6/$suite" "libstdc++6/$suite" "libgcc-s1/$suite" >/dev/null)
for f in "$work"/debs/*.deb; do dpkg -x "$f" "$work/root"; done
rm -rf "$root.new" && mkdir -p "$root.new"
mv "$work/root" "$root.new/root"
cat > "$root.new/glslc" <<SH
#!/bin/sh
# Debian $suite's glslc run through its own loader and libraries (fetched by tools/find-glslc.sh).
here=\$(dirname "\$0")
lib=\$here/root/usr/lib/x86_64-linux-gnu
exec "\$lib/ld-linux-x86-64.so.2" --library-path "\$lib" "\$here/root/usr/bin/glslc" "\$@"
SH
chmod +x "$root.new/glslc"
if ! probe "$root.new/glslc"; then
  echo "find-glslc: the fetched glslc ($suite) failed the feature probe" >&2
  exit 1
fi
"$root.new/glslc" --version | head -1 > "$root.new/.probed"
rm -rf "$root" && mv "$root.new" "$root"
echo "find-glslc: $(cat "$root/.probed")" >&2
echo "$root/glslc"
