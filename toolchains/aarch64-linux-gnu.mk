# 64-bit ARM (ARMv8-A, NEON always present) with Debian's gcc cross compiler.
# Libraries come from Debian's arm64 multiarch packages (toolchains/install-deps.sh).
CROSS_COMPILE ?= aarch64-linux-gnu-
RUNNER ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
