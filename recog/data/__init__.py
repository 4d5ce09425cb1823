"""Corpus readers (TIMIT, manifests), the Utterance record, synthetic corpora."""
