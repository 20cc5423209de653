"""`lawtune export`: merged HF folder, GGUF (llama.cpp / Ollama) and vLLM layouts of a run (docs/export.md)."""
