"""Domain errors of the users service."""

from __future__ import annotations

from paysys.kit.errors import AppError


class EmailTaken(AppError):
    status = 409
    code = "EMAIL_TAKEN"


class InvalidCredentials(AppError):
    status = 401
    code = "INVALID_CREDENTIALS"


class InvalidRefreshToken(AppError):
    status = 401
    code = "UNAUTHORIZED"


class UserNotFound(AppError):
    status = 404
    code = "USER_NOT_FOUND"
