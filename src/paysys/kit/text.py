"""Text at the edge: what PostgreSQL can store and a person could have typed."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    # NUL cannot be stored in PostgreSQL text at all, and other C0 controls have no
    # business in a name or description: refuse them as a 422 instead of a 500.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


SafeText = Annotated[str, AfterValidator(_no_control_characters)]


def _unicode_text(value: Any) -> None:
    # JSON may carry a lone UTF-16 surrogate ("\ud800"): Python decodes it to a str that
    # no encoder, cipher, hash or database driver accepts (a 500 deep inside). It is not
    # text: refused at the edge, for every string of a body alike, keys included.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode_text(key)
            _unicode_text(item)
    elif isinstance(value, list):
        for item in value:
            _unicode_text(item)


class Input(BaseModel):
    """The base of every request body: unknown fields refused, and every string in it
    valid Unicode text (checked on the raw body, nested objects included)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text_is_unicode(cls, value: Any) -> Any:
        _unicode_text(value)
        return value
