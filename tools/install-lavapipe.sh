#!/usr/bin/env bash
# Installs the Vulkan loader and Mesa's lavapipe (a Vulkan driver that runs on the CPU), which the
# Vulkan tests use on machines without a GPU. Prefers bookworm-backports' Mesa (25.x) over
# bookworm's 22.3. Idempotent: does nothing when lavapipe is already installed.
set -euo pipefail
if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p | grep -q libvulkan.so.1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-lavapipe: not root; install libvulkan1 and mesa-vulkan-drivers (bookworm-backports) yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
suite=${VERSION_CODENAME:-bookworm}
if [ "$suite" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/fastweights-backports.list
fi
apt-get update -qq >/dev/null
if [ "$suite" = bookworm ]; then
  # Mesa's own libraries must come from backports too, or apt refuses the mixed versions.
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 vulkan-tools >/dev/null
else
  apt-get install -y -qq mesa-vulkan-drivers libvulkan1 vulkan-tools >/dev/null
fi
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null
echo "install-lavapipe: $(dpkg-query -W -f='${Package} ${Version}' mesa-vulkan-drivers)" >&2
