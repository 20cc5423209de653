#!/usr/bin/env bash
# Refresh src/lawtune/export/llama_cpp/ — llama.cpp's own HF → GGUF converters — from the llama-cpp-python
# sdist of the version pyproject.toml pins (the converter then matches the llama.cpp that loads its output).
#   scripts/vendor_llama_cpp.sh 0.3.36
set -euo pipefail
version="${1:?usage: $0 LLAMA_CPP_PYTHON_VERSION}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/src/lawtune/export/llama_cpp"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" -q
tar xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
rm -rf "$dest.new" && mkdir -p "$dest.new/gguf-py"
cp "$src/LICENSE" "$src/convert_hf_to_gguf.py" "$src/convert_lora_to_gguf.py" "$dest.new/"
cp -r "$src/conversion" "$dest.new/conversion"
cp -r "$src/gguf-py/gguf" "$dest.new/gguf-py/gguf"
cp "$src/gguf-py/LICENSE" "$dest.new/gguf-py/LICENSE"
rm -rf "$dest.new/gguf-py/gguf/scripts"   # gguf-dump & co.: not used by the converters
find "$dest.new" -name __pycache__ -prune -exec rm -rf {} +
[ -f "$dest/SOURCE.md" ] && cp "$dest/SOURCE.md" "$dest.new/SOURCE.md"
rm -rf "$dest" && mv "$dest.new" "$dest"
echo "$version" > "$dest/VERSION"
echo "vendored llama.cpp converters of llama-cpp-python $version into $dest (update SOURCE.md if the version changed)"
