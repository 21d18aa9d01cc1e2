"""Stage 2, tokens: the token text. A score <-> words, exactly at the musical grid.

`vocab` is the vocabulary written once as data; `rules` the grammar's phases and one rule
per token family, derived from it; `grammar` the automaton (the validator, the parser and
the constrained sampler's masks all step it); `validate` text checked against it; `codec`
score <-> text; `encoded` a MIDI file on its way to text; `report` the round-trip check;
`tokenizer` the Hugging Face tokenizer of the words (text <-> ids; the one module here
that loads transformers, and with it torch: the codec never imports it).
"""
