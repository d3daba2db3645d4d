#!/usr/bin/env bash
# Build the real programs the benchmarks profile, from Debian's source packages, to wasm32-wasi with a name
# section: zlib's minigzip (a compressor) and SQLite's speedtest1 (a database benchmark).
# Usage: build.sh OUT_DIR   (needs root for apt-get on a fresh machine)
set -euo pipefail
out=$(realpath -m "$1")
here=$(dirname "$(realpath "$0")")
work="$out/src"
mkdir -p "$out" "$work"

missing=()
for tool in clang-14 wasm-ld-14 tclsh dpkg-source; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -e /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing the wasm32-wasi toolchain (missing: ${missing[*]})" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 tcl dpkg-dev make >/dev/null
fi

[ -d "$work"/zlib-*/ ] && [ -d "$work"/sqlite3-*/ ] || "$here/fetch_sources.sh" "$work" zlib sqlite3
cc=(clang-14 --target=wasm32-wasi --sysroot=/usr -O2)

zlib=$(echo "$work"/zlib-*/)
(cd "$zlib" && "${cc[@]}" -DZ_HAVE_UNISTD_H -o "$out/minigzip.wasm" test/minigzip.c \
  adler32.c crc32.c deflate.c infback.c inffast.c inflate.c inftrees.c trees.c zutil.c \
  compress.c uncompr.c gzclose.c gzlib.c gzread.c gzwrite.c -I. 2>/dev/null)

sqlite=$(echo "$work"/sqlite3-*/)
if [ ! -f "$sqlite/sqlite3.c" ]; then
  (cd "$sqlite" && ./configure --disable-tcl >/dev/null && make sqlite3.c >/dev/null)
fi
(cd "$sqlite" && "${cc[@]}" -DSQLITE_OS_OTHER=1 -DSQLITE_THREADSAFE=0 -DSQLITE_TEMP_STORE=3 \
  -DSQLITE_OMIT_LOAD_EXTENSION -D_WASI_EMULATED_PROCESS_CLOCKS -I. -o "$out/speedtest1.wasm" \
  test/speedtest1.c sqlite3.c "$here/sqlite_memory_vfs.c" -lwasi-emulated-process-clocks 2>/dev/null)

ls -l "$out"/*.wasm
