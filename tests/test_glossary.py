"""The app's words: every observation feature has a plain-language label."""

from __future__ import annotations

from core.agents.observations import FEATURES
from core.evaluation.glossary import FEATURE_WORDS


def test_every_feature_has_plain_words_and_no_label_is_orphaned() -> None:
    names = {name for role in FEATURES.values() for name in role}
    assert names == set(FEATURE_WORDS)
    for name, words in FEATURE_WORDS.items():
        assert words and "_" not in words, name  # words, not a snake_case name


def test_no_two_features_read_the_same() -> None:
    assert len(set(FEATURE_WORDS.values())) == len(FEATURE_WORDS)
