"""Stage 4, model: GPT-2 model folders (save_pretrained, safetensors, tokenizer and the
codec's config), loading and checking them, and the shipped default model
(`music_lm/models/default/`, which is data, not code). Imports torch.
"""
