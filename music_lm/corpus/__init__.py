"""Stage 3, corpus: public-domain sources -> token ids on disk, split and deduplicated.

`sources` lists what can be read (music21's corpus, folders of MIDI), `build` encodes
and writes a corpus folder (`hf_dataset` does the same with Hugging Face `datasets`),
`dataset` reads it back as training windows, `stats` draws and counts it.
"""
