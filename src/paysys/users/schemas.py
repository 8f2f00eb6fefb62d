"""Request and response models of the users service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from paysys.kit.text import Input, SafeText

Password = Annotated[str, Field(min_length=8, max_length=128)]
FullName = Annotated[
    SafeText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


class RegisterIn(Input):
    email: EmailStr = Field(max_length=320)
    password: Password
    full_name: FullName
    account_type: Literal["personal", "merchant"] = "personal"


def login_email(value: str) -> str:
    """The address as registration normalised it (EmailStr: IDNA to Unicode, NFC), so
    that it finds the account under any spelling that registered. Anything that is not
    an address stays as typed and simply matches no account."""
    try:
        return validate_email(value)[1]
    except PydanticCustomError:
        return value


class LoginIn(Input):
    email: Annotated[SafeText, Field(min_length=1, max_length=320), AfterValidator(login_email)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class RefreshIn(Input):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    account_type: Literal["personal", "merchant"]
    created_at: datetime


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut
