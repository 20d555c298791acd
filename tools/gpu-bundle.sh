#!/usr/bin/env bash
# Builds what a bare Linux GPU host (no .NET, no internet) needs to run FastWeights:
#   .bundle/fastweights-gpu.tar.xz : the `fastweights` command (self-contained, trimmed) and the
#                                     Engine.Tests runner (self-contained), for linux-x64
#   .gl/*.deb                      : Debian's Vulkan loader and the GL dispatch libraries the NVIDIA
#                                     driver needs (libglvnd), unpacked there with dpkg -x
# Both folders are git-ignored. See docs/gpu.md for the commands to run on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bundle
rm -rf "$out/pub" && mkdir -p "$out/pub"
dotnet publish Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:SuppressTrimAnalysisWarnings=true \
  -p:TreatWarningsAsErrors=false -o "$out/pub/cli" -v q
dotnet publish tests/Engine.Tests -c Release -r linux-x64 --self-contained -o "$out/pub/tests" -v q
tar -C "$out" -cJf "$out/fastweights-gpu.tar.xz" pub
rm -rf "$out/pub"
gl_packages=(libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)
if ! ls .gl/libvulkan1_*.deb .gl/libglvnd0_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Dir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update >/dev/null
  (cd .gl && apt-get "${o[@]}" download "${gl_packages[@]}" >/dev/null 2>&1)
fi
ls -la "$out"/fastweights-gpu.tar.xz .gl/*.deb
