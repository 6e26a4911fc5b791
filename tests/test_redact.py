"""The key never survives a provider's text: whole, cut, encoded, or inside other words."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from veobatch.provider.redact import MASK, Redactor

KEY = "sk-Zq8vR2mN7xK4pL9tW3yB6cD1"


@pytest.mark.parametrize(
    "text",
    [
        f"invalid token {KEY}",
        f"Bearer {KEY[:17]}",  # a relay (or a length limit) cut it
        f"token={quote(KEY, safe='')}&x=1",
        f"auth: {base64.b64encode(KEY.encode()).decode()}",
        f"{KEY[5:20]} is not a valid key",  # a piece from the middle
        f"无效的令牌 ({KEY})",
    ],
)
def test_no_piece_of_the_key_is_left(text: str) -> None:
    cleaned = Redactor(KEY)(text)
    assert MASK in cleaned
    for start in range(len(KEY) - 7):
        assert KEY[start : start + 8] not in cleaned


def test_text_without_the_key_is_left_alone() -> None:
    text = "余额不足 (insufficient_user_quota) for sk-other-key-entirely"
    assert Redactor(KEY)(text) == text
    assert Redactor("")(text) == text


def test_the_words_around_the_key_stay() -> None:
    assert Redactor(KEY)(f"key {KEY} refused") == f"key {MASK} refused"
