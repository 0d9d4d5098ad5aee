#!/bin/sh
# Rebuilds yang/wasm/libyang.{js,wasm} from Debian's own source packages of libyang2 and pcre2 with Debian's
# emscripten. Run from anywhere; works in <repo>/.build/wasm (git-ignored). The result is byte-for-byte
# reproducible: every input is pinned by version and sha256, and build paths are mapped out of the binary.
#   usage: yang/wasm/build.sh [--check]   (--check: build, then compare with the committed outputs, change nothing)
set -eu

LIBYANG_VERSION=2.1.30-2
PCRE2_VERSION=10.42-1
LIBYANG_ORIG_SHA256=761cfd959342b147f6a43a84c931c7fde68dd3a1ad540a0e5302288b204f073d
LIBYANG_DEBIAN_SHA256=175375dc12789415954c3d6bd940c6ea6c3c332a91a2c1728aeabb3f16fa1efc
PCRE2_ORIG_SHA256=c33b418e3b936ee3153de2c61cc638e7e4fe3156022a5c77d0711bcbb9d64f1f
PCRE2_DIFF_SHA256=8267c3acacb04e8a077235f676187393e295443fc16ff46ddbe5f6476879c8cb

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${TANDEM_WASM_BUILD_DIR:-$ROOT/.build/wasm}
JOBS=${JOBS:-$(nproc)}
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

# Debian's emscripten finds its JS dependencies (acorn, ...) only through NODE_PATH.
export NODE_PATH=/usr/share/nodejs
# Reproducibility: fixed timestamps for anything that honours it, stable locale and sort order.
export SOURCE_DATE_EPOCH=1700000000 LC_ALL=C TZ=UTC

step() { echo "[build.sh $(date -u +%H:%M:%S)] $*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "missing tool: $1 ($2)" >&2; exit 1; }; }
need emcc "apt-get install emscripten"
need emcmake "apt-get install emscripten"
need cmake "apt-get install cmake"
need dpkg-source "apt-get install dpkg-dev"

verify() { # file sha256
  echo "$2  $1" | sha256sum -c --quiet - || { echo "sha256 mismatch for $1" >&2; exit 1; }
}

mkdir -p "$WORK/src"
cd "$WORK/src"
if [ ! -f "libyang2_${LIBYANG_VERSION}.dsc" ] || [ ! -f "pcre2_${PCRE2_VERSION}.dsc" ]; then
  step "fetching Debian source packages (needs a deb-src entry)"
  apt-get source --download-only "libyang2=${LIBYANG_VERSION}" "pcre2=${PCRE2_VERSION}"
fi
verify "libyang2_${LIBYANG_VERSION%-*}.orig.tar.gz" "$LIBYANG_ORIG_SHA256"
verify "libyang2_${LIBYANG_VERSION}.debian.tar.xz" "$LIBYANG_DEBIAN_SHA256"
verify "pcre2_${PCRE2_VERSION%-*}.orig.tar.gz" "$PCRE2_ORIG_SHA256"
verify "pcre2_${PCRE2_VERSION}.diff.gz" "$PCRE2_DIFF_SHA256"

# Fresh trees every time: nothing from an earlier build leaks into this one. (TANDEM_WASM_RELINK=1 reuses
# the built libraries and only relinks the shim: for working on shim.c, never for a release build.)
T=$WORK/tree
PREFIX=$T/prefix
# Map every build path to a fixed name so the binary does not depend on where it was built.
MAP="-ffile-prefix-map=$T=/tandem-build -fmacro-prefix-map=$T=/tandem-build -fdebug-prefix-map=$T=/tandem-build"
CFLAGS_COMMON="-O2 -g0 $MAP"
if [ "${TANDEM_WASM_RELINK:-0}" = 1 ] && [ -f "$PREFIX/lib/libpcre2-8.a" ] && [ -f "$T/libyang-build/libyang.a" ]; then
  step "relinking only (TANDEM_WASM_RELINK=1)"
else
cd "$WORK"
rm -rf tree && mkdir tree && cd tree
step "unpacking sources (dpkg-source applies Debian's patches)"
dpkg-source --no-check -x "$WORK/src/libyang2_${LIBYANG_VERSION}.dsc" libyang >/dev/null
dpkg-source --no-check -x "$WORK/src/pcre2_${PCRE2_VERSION}.dsc" pcre2 >/dev/null

step "building PCRE2 (static, 8-bit, Unicode, no JIT)"
mkdir -p "$T/pcre2-build" && cd "$T/pcre2-build"
emcmake cmake "$T/pcre2" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_C_FLAGS="$CFLAGS_COMMON" -DBUILD_SHARED_LIBS=OFF -DBUILD_STATIC_LIBS=ON \
  -DPCRE2_BUILD_PCRE2_8=ON -DPCRE2_BUILD_PCRE2_16=OFF -DPCRE2_BUILD_PCRE2_32=OFF \
  -DPCRE2_SUPPORT_JIT=OFF -DPCRE2_SUPPORT_UNICODE=ON -DPCRE2_BUILD_PCRE2GREP=OFF -DPCRE2_BUILD_TESTS=OFF \
  -DPCRE2_SUPPORT_LIBZ=OFF -DPCRE2_SUPPORT_LIBBZ2=OFF -DPCRE2_SUPPORT_LIBEDIT=OFF -DPCRE2_SUPPORT_LIBREADLINE=OFF \
  >cmake.log 2>&1 || { tail -30 cmake.log; exit 1; }
emmake make -j"$JOBS" install >make.log 2>&1 || { tail -30 make.log; exit 1; }

step "building libyang (static: plugins built in, no dlopen)"
mkdir -p "$T/libyang-build" && cd "$T/libyang-build"
emcmake cmake "$T/libyang" -DCMAKE_BUILD_TYPE=Release -DENABLE_STATIC=ON -DENABLE_TESTS=OFF \
  -DENABLE_VALGRIND_TESTS=OFF -DENABLE_BUILD_TESTS=OFF -DENABLE_COVERAGE=OFF \
  -DCMAKE_FIND_ROOT_PATH="$PREFIX" -DCMAKE_C_FLAGS="$CFLAGS_COMMON -DPCRE2_STATIC" \
  >cmake.log 2>&1 || { tail -30 cmake.log; exit 1; }
emmake make -j"$JOBS" yang >make.log 2>&1 || { tail -30 make.log; exit 1; }
fi
LIBYANG_A=$(find "$T/libyang-build" -name 'libyang.a' | head -1)
[ -n "$LIBYANG_A" ] || { echo "libyang.a not produced" >&2; exit 1; }

step "linking libyang.js + libyang.wasm with the shim"
mkdir -p "$T/out"
cp "$HERE/shim.c" "$T/shim.c"
EXPORTS=$(sed -n 's/^TDM_EXPORT[^(]* \**\(tdm_[a-z0-9_]*\)(.*/_\1/p' "$T/shim.c" | sort -u | tr '\n' ',' )
EXPORTS="[${EXPORTS}_malloc,_free]"
# shellcheck disable=SC2086
emcc $CFLAGS_COMMON -DPCRE2_STATIC -I"$T/libyang-build/src" -I"$T/libyang/src" -I"$T/libyang/src/plugins_exts" -I"$PREFIX/include" \
  "$T/shim.c" "$LIBYANG_A" "$PREFIX/lib/libpcre2-8.a" -o "$T/out/libyang.js" \
  -sMODULARIZE=1 -sEXPORT_NAME=createLibyangModule -sENVIRONMENT=node -sNODERAWFS=1 \
  -sALLOW_MEMORY_GROWTH=1 \
  -sNODEJS_CATCH_EXIT=0 -sNODEJS_CATCH_REJECTION=0 -sEXIT_RUNTIME=0 -sFILESYSTEM=1 \
  -sEXPORTED_FUNCTIONS="$EXPORTS" \
  -sEXPORTED_RUNTIME_METHODS='["UTF8ToString","stringToUTF8","lengthBytesUTF8","getValue","setValue"]' \
  >link.log 2>&1 || { tail -30 link.log; exit 1; }

cd "$T/out"
sha256sum libyang.js libyang.wasm
if [ "$CHECK" = 1 ]; then
  step "comparing with the committed outputs"
  cmp libyang.js "$HERE/libyang.js" && cmp libyang.wasm "$HERE/libyang.wasm" && step "identical" || { echo "outputs differ" >&2; exit 1; }
else
  cp libyang.js libyang.wasm "$HERE/"
  step "wrote $HERE/libyang.js and $HERE/libyang.wasm ($(wc -c <libyang.wasm) bytes)"
fi
