#!/usr/bin/env bash
# Prints (one line on stdout) the path of a glslc that compiles every shader of the project: it must
# know GL_KHR_cooperative_matrix and GL_EXT_bfloat16 (the bf16 tensor-core GEMM). In this order:
#   1. $GLSLC, if set (it must pass the probe; no fallback when it does not),
#   2. glslc on PATH, if it passes the probe,
#   3. a private copy in ${FASTWEIGHTS_TOOLS:-~/.cache/fastweights}/glslc, fetched when missing.
# The private copy is Debian's glslc from the 'forky' suite (shaderc 2026.x; trixie's 2025.2 and its
# glslang 15.1 lack GL_EXT_bfloat16), downloaded with a private sources list, lists directory and
# cache (nothing on the system changes), unpacked with dpkg -x, and run through its own dynamic
# loader and libraries, so it works on Debian 12 whose glibc is older. FASTWEIGHTS_GLSLC_SUITE picks
# other suites (space-separated, tried in order). Probe results are cached in stamp files keyed by
# the compiler's path, size, mtime and inode, so a warm call runs no compiler.
set -euo pipefail
tools=${FASTWEIGHTS_TOOLS:-$HOME/.cache/fastweights}
root=$tools/glslc
suites=${FASTWEIGHTS_GLSLC_SUITE:-forky sid}
probe_version=3  # bump when the probe shader changes

die() { echo "find-glslc: $*" >&2; exit 1; }

probe_shader() {
  cat <<'GLSL'
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
}

probe() {  # probe <glslc>: compiles the probe shader (errors shown when PROBE_VERBOSE=1)
  local dir ok=1
  dir=$(mktemp -d)
  probe_shader > "$dir/probe.comp"
  if [ "${PROBE_VERBOSE:-0}" = 1 ]; then
    "$1" --target-env=vulkan1.3 -o "$dir/probe.spv" "$dir/probe.comp" >&2 || ok=0
  else
    "$1" --target-env=vulkan1.3 -o "$dir/probe.spv" "$dir/probe.comp" >/dev/null 2>&1 || ok=0
  fi
  # a real compiler writes a SPIR-V module (magic 0x07230203), not just exit status 0
  [ $ok = 1 ] && [ "$(od -An -tx4 -N4 "$dir/probe.spv" 2>/dev/null | tr -d ' ')" = 07230203 ] || ok=0
  rm -rf "$dir"
  [ $ok = 1 ]
}

stamp_of() {  # stamp_of <resolved path>: the stamp file that records a passed probe
  local key
  key=$(stat -L -c '%n %s %Y %i' "$1" 2>/dev/null) || return 1
  echo "$tools/probed/$(printf '%s %s' "$probe_version" "$key" | cksum | tr ' ' _)"
}

probe_cached() {  # probe_cached <glslc>: the probe, remembered per compiler file
  local exe stamp
  exe=$(command -v "$1" 2>/dev/null) || return 1
  [ -x "$exe" ] || return 1
  stamp=$(stamp_of "$exe") || return 1
  [ -f "$stamp" ] && return 0
  probe "$exe" || return 1
  mkdir -p "$tools/probed" 2>/dev/null && : > "$stamp" 2>/dev/null || true
}

# 1. $GLSLC
if [ -n "${GLSLC:-}" ]; then
  if probe_cached "$GLSLC"; then echo "$GLSLC"; exit 0; fi
  echo "find-glslc: GLSLC=$GLSLC does not compile a GL_KHR_cooperative_matrix + GL_EXT_bfloat16 shader:" >&2
  PROBE_VERBOSE=1 probe "$GLSLC" || true
  exit 1
fi

# 2. glslc on PATH
if path_glslc=$(command -v glslc 2>/dev/null) && probe_cached "$path_glslc"; then
  echo "$path_glslc"; exit 0
fi

# 3. the private copy (its .probed file is written only after the probe passed)
if [ -x "$root/glslc" ] && [ -f "$root/.probed" ]; then echo "$root/glslc"; exit 0; fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null && command -v flock >/dev/null ||
  die "no glslc with GL_KHR_cooperative_matrix + GL_EXT_bfloat16 found (glslc on PATH: ${path_glslc:-none}); install shaderc 2026.1+ (Vulkan SDK 1.4.321+) or set GLSLC"
[ "$(uname -m)" = x86_64 ] || die "fetching glslc is implemented for x86-64 only; install shaderc 2026.1+ or set GLSLC"

mkdir -p "$tools" || die "cannot create $tools"
exec 9>"$tools/.glslc.lock"
flock 9  # one fetch at a time; a second build waits here, then finds the copy below
if [ -x "$root/glslc" ] && [ -f "$root/.probed" ]; then echo "$root/glslc"; exit 0; fi

work=$(mktemp -d "$tools/.glslc-XXXXXX")
trap 'rm -rf "$work"' EXIT
apt_opts() {  # apt_opts <dir>: a private apt configuration in <dir>
  local d=$1
  o=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o Dir::Etc::Preferences=/dev/null
     -o Dir::Etc::PreferencesParts=/dev/null -o Acquire::Languages=none -o Debug::NoLocking=1)
  if [ "$(id -u)" = 0 ]; then o+=(-o APT::Sandbox::User=root); fi  # _apt cannot write into $HOME
}

fetch() {  # fetch <suite>: downloads and unpacks glslc from <suite> into $work/<suite>/pkg/glslc
  local suite=$1 d=$work/$1 pkgs p
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs" "$d/pkg/glslc/root"
  echo "deb http://deb.debian.org/debian $suite main" > "$d/sources.list"
  apt_opts "$d"
  echo "find-glslc: fetching glslc from Debian $suite into $root" >&2
  apt-get "${o[@]}" -qq update >&2 || { echo "find-glslc: apt-get update for $suite failed" >&2; return 1; }
  # glslc's own dependencies and theirs, one level down (libshaderc1 and the C/C++ runtime);
  # libc6 and libgcc-s1 are always needed since the binary runs through the fetched loader.
  pkgs=$( { echo glslc; echo libc6; echo libgcc-s1; echo libstdc++6
            for p in glslc $(apt-cache "${o[@]}" depends glslc 2>/dev/null | sed -n 's/^ *Depends: \([^ <]*\).*/\1/p'); do
              apt-cache "${o[@]}" depends "$p" 2>/dev/null | sed -n 's/^ *Depends: \([^ <]*\).*/\1/p'
            done; } | sed 's/:any$//' | sort -u | grep -Ev '^(debconf|debconf-2.0|perl-base|dpkg|base-files)$')
  (cd "$d/debs" && apt-get "${o[@]}" -qq download $(for p in $pkgs; do echo "$p/$suite"; done) >&2) ||
    { echo "find-glslc: apt-get download from $suite failed ($pkgs)" >&2; return 1; }
  for f in "$d"/debs/*.deb; do dpkg -x "$f" "$d/pkg/glslc/root"; done
  ls "$d"/debs/*.deb | sed 's#.*/##' > "$d/pkg/glslc/packages"
  [ -x "$d/pkg/glslc/root/usr/bin/glslc" ] && [ -e "$d/pkg/glslc/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] ||
    { echo "find-glslc: the $suite packages lack usr/bin/glslc or the loader" >&2; return 1; }
  cat > "$d/pkg/glslc/glslc" <<SH
#!/bin/sh
# Debian $suite's glslc run through its own loader and libraries (fetched by tools/find-glslc.sh).
here=\$(dirname "\$(readlink -f "\$0")")
lib=\$here/root/usr/lib/x86_64-linux-gnu
exec "\$lib/ld-linux-x86-64.so.2" --library-path "\$lib" "\$here/root/usr/bin/glslc" "\$@"
SH
  chmod +x "$d/pkg/glslc/glslc"
  if ! PROBE_VERBOSE=1 probe "$d/pkg/glslc/glslc"; then
    echo "find-glslc: the glslc from $suite ($("$d/pkg/glslc/glslc" --version 2>&1 | sed -n 1p)) fails the feature probe" >&2
    return 1
  fi
  "$d/pkg/glslc/glslc" --version 2>/dev/null | sed -n 1p > "$d/pkg/glslc/.probed"
}

for suite in $suites; do
  if fetch "$suite"; then
    # Atomic replacement: the new copy is complete before it takes the name.
    [ -e "$root" ] && mv "$root" "$work/old"
    mv "$work/$suite/pkg/glslc" "$root"
    echo "find-glslc: $(cat "$root/.probed") from Debian $suite ($(tr '\n' ' ' < "$root/packages"))" >&2
    echo "$root/glslc"
    exit 0
  fi
done
die "no glslc with GL_KHR_cooperative_matrix + GL_EXT_bfloat16 found or fetched (tried: \$GLSLC, glslc on PATH, Debian $suites); install shaderc 2026.1+ or set GLSLC"
