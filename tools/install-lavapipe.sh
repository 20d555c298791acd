#!/usr/bin/env bash
# Installs the Vulkan loader (libvulkan1) and Mesa's lavapipe (a Vulkan driver that runs on the CPU),
# which the Vulkan tests use on machines without a GPU, plus vulkan-tools (vulkaninfo). On Debian 12
# it prefers bookworm-backports' Mesa (25.x) over bookworm's 22.3 (adds the backports suite as
# /etc/apt/sources.list.d/fastweights-backports.list when no source lists it). Idempotent: returns at
# once when lavapipe and the loader are already installed. Runs apt only as root; otherwise it prints
# what to install and fails.
set -euo pipefail
have_lavapipe() {
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'
}
if have_lavapipe; then exit 0; fi

. /etc/os-release
suite=${VERSION_CODENAME:-}
if [ "$(id -u)" != 0 ]; then
  if [ "$suite" = bookworm ]; then
    echo "install-lavapipe: not root; as root run: echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/fastweights-backports.list && apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1 vulkan-tools" >&2
  else
    echo "install-lavapipe: not root; install libvulkan1, mesa-vulkan-drivers and vulkan-tools (Mesa's lavapipe driver and the Vulkan loader)" >&2
  fi
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-lavapipe: no apt-get; install the Vulkan loader and Mesa's lavapipe driver yourself" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
target=()
if [ "$suite" = bookworm ]; then
  if ! grep -qs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/fastweights-backports.list
  fi
  # -t makes backports the preferred source for the whole resolution, so Mesa's own libraries
  # (mesa-libgallium, libdrm, ...) come from backports too; packages backports lacks (libvulkan1,
  # vulkan-tools) come from bookworm.
  target=(-t bookworm-backports)
fi
echo "install-lavapipe: installing mesa-vulkan-drivers libvulkan1 vulkan-tools ${target[*]}" >&2
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${target[@]}" mesa-vulkan-drivers libvulkan1 vulkan-tools >/dev/null

have_lavapipe || { echo "install-lavapipe: lavapipe's ICD file or libvulkan.so.1 is still missing" >&2; exit 1; }
echo "install-lavapipe: $(dpkg-query -W -f='${Package} ${Version}' mesa-vulkan-drivers), $(dpkg-query -W -f='${Package} ${Version}' libvulkan1)" >&2
if command -v vulkaninfo >/dev/null; then
  if vulkaninfo --summary 2>/dev/null | grep -q llvmpipe; then
    echo "install-lavapipe: vulkaninfo lists $(vulkaninfo --summary 2>/dev/null | sed -n 's/^[[:space:]]*deviceName[[:space:]]*=[[:space:]]*\(llvmpipe.*\)/\1/p' | sed -n 1p)" >&2
  else
    echo "install-lavapipe: vulkaninfo --summary does not list llvmpipe" >&2
    exit 1
  fi
fi
