"""The recipe stages as library functions on a typed ``Config``, one module each:
``prepare`` (read a corpus, write its splits), ``features`` (caches and datasets),
``train``, ``finetune``, ``decode`` (decode, score, report) and ``lm`` (n-grams, lexicon,
tuning); ``corpora`` names what each ``corpus.name`` reads. ``recog.pipeline`` gathers
the stage functions in one namespace."""
