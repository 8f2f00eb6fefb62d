"""Text at the edge: what PostgreSQL can store and a person could have typed."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    # NUL cannot be stored in PostgreSQL text at all, and other C0 controls have no
    # business in a name or description: refuse them as a 422 instead of a 500.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


SafeText = Annotated[str, AfterValidator(_no_control_characters)]
