"""Stage 3, corpus: public-domain sources -> token ids on disk, split and deduplicated.

`sources` lists what can be read (music21's corpus, folders of MIDI); `build` runs a
build with its settings from `config`: `encoding` encodes each piece (in worker
processes), `cache` keeps the encodings by content, `split` drops duplicates and splits,
`write` writes the corpus folder (`hf_dataset` does the same build with Hugging Face
`datasets`). `dataset` reads a corpus back as training windows, `stats` draws and counts it.
"""
