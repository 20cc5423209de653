#!/usr/bin/env bash
# Refresh src/lawtune/vendor/llama_cpp/ — llama.cpp's own HF → GGUF converters — from a llama-cpp-python sdist, so
# the converter matches the llama.cpp that loads its output (the release pyproject.toml's `export` extra pins).
#   scripts/refresh-vendored-llama-cpp.sh                      # the release in vendor/llama_cpp/VERSION, from PyPI
#   scripts/refresh-vendored-llama-cpp.sh 0.3.37               # another release, from PyPI (then bump the pins)
#   scripts/refresh-vendored-llama-cpp.sh llama_cpp_python-0.3.36.tar.gz   # an sdist already on disk (pip's cache)
# The installed llama-cpp-python wheel holds only the C library and its bindings, not the converters: they are in
# the sdist's vendor/llama.cpp/ tree. The files are copied unchanged; only gguf-py's scripts/ (gguf-dump & co.) and
# __pycache__ are left out. README.md (what this is and why) is kept; VERSION is rewritten.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/src/lawtune/vendor/llama_cpp"
arg="${1:-$(cat "$dest/VERSION")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -f "$arg" ]; then
    sdist="$arg"
else
    python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$arg" -d "$work" -q
    sdist="$(ls "$work"/llama_cpp_python-*.tar.gz)"
fi
tar xzf "$sdist" -C "$work"
top="$(ls -d "$work"/llama_cpp_python-*/)"
version="$(basename "$top")"; version="${version#llama_cpp_python-}"
src="$top/vendor/llama.cpp"
rm -rf "$dest.new" && mkdir -p "$dest.new/gguf-py"
cp "$src/LICENSE" "$src/convert_hf_to_gguf.py" "$src/convert_lora_to_gguf.py" "$dest.new/"
cp -r "$src/conversion" "$dest.new/conversion"
cp -r "$src/gguf-py/gguf" "$dest.new/gguf-py/gguf"
cp "$src/gguf-py/LICENSE" "$dest.new/gguf-py/LICENSE"
rm -rf "$dest.new/gguf-py/gguf/scripts"   # gguf-dump & co.: not used by the converters
find "$dest.new" -name __pycache__ -prune -exec rm -rf {} +
cp "$dest/README.md" "$dest.new/README.md"
rm -rf "$dest" && mv "$dest.new" "$dest"
echo "$version" > "$dest/VERSION"
echo "vendored llama.cpp's converters of llama-cpp-python $version into $dest"
echo "next: pin llama-cpp-python==$version in pyproject.toml (export, dev, bench) and run tests/export"
