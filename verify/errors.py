"""The exception tree: one class per meaning, each with its typed context. Pure: nothing here renders a response
(that is ``verify/web/problems.py``), so every layer may raise these without pulling in the web stack.

Each client-visible error names its problem as class data (``status``, ``slug``, ``title``: the problem type it
is); :meth:`VerifyError.context` gives the fields its problem carries beyond the standard ones.
:class:`ConfigError` is deliberately *not* a :class:`VerifyError`: a broken configuration must stop the start,
and no handler may turn it into a response.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConfigError(Exception):
    """A setting is missing or wrong. The message names the environment variable to fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class VerifyError(Exception):
    """Base of every error a client can see. Subclasses set ``status``, ``slug`` and ``title``."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.retry_after = retry_after

    def context(self) -> dict[str, Any]:
        """What the problem carries beyond type, title, status, detail and ``retry_after``."""
        return {}


class _FieldError(VerifyError):
    """An error about one input field, which the problem names (``field``)."""

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(detail)
        self.field = field

    def context(self) -> dict[str, Any]:
        return {"field": self.field}


class InvalidRequest(_FieldError):
    status, slug, title = 400, "invalid-request", "Invalid request"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field)


class InvalidPhone(_FieldError):
    status, slug, title = 400, "invalid-phone", "Invalid phone number"

    def __init__(self, detail: str, field: str = "phone") -> None:
        super().__init__(detail, field)


class InvalidToken(VerifyError):
    status, slug, title = 400, "invalid-token", "Invalid token"


class Unauthorized(VerifyError):
    status, slug, title = 401, "unauthorized", "Missing or wrong API key"


class WebhookRejected(VerifyError):
    """A gateway's callback that is forged, altered, unsigned, stale or replayed: it changes nothing."""

    status, slug, title = 403, "webhook-rejected", "Webhook signature, age or nonce rejected"


class NotFound(VerifyError):
    status, slug, title = 404, "not-found", "Not found"


class Forbidden(VerifyError):
    status, slug, title = 403, "forbidden", "Not allowed with this key or from this origin"


class NotPending(VerifyError):
    status, slug, title = 409, "not-pending", "Verification is not pending"

    def __init__(self, detail: str, *, verification_status: str) -> None:
        super().__init__(detail)
        self.verification_status = verification_status

    def context(self) -> dict[str, Any]:
        return {"verification_status": self.verification_status}


class WrongChannel(VerifyError):
    status, slug, title = 409, "wrong-channel", "Verification is not confirmed by a code"


class StartInProgress(VerifyError):
    status, slug, title = 409, "start-in-progress", "A start for this phone is still being sent"


class IdempotencyInProgress(VerifyError):
    status, slug, title = 409, "idempotency-in-progress", "A request with this Idempotency-Key is in progress"


class TokenExpired(InvalidToken):
    """A proof token whose signature holds but whose age is past ``VERIFY_TOKEN_TTL`` (as itsdangerous's
    ``SignatureExpired`` is a ``BadSignature``): whoever refuses invalid tokens refuses it too."""

    status, slug, title = 410, "token-expired", "Token expired"


class _AttemptsError(VerifyError):
    """A check that did not approve, with the attempts the verification has left (``attempts_left``)."""

    def __init__(self, detail: str, *, attempts_left: int) -> None:
        super().__init__(detail)
        self.attempts_left = attempts_left

    def context(self) -> dict[str, Any]:
        return {"attempts_left": self.attempts_left}


class InvalidCode(_AttemptsError):
    status, slug, title = 422, "invalid-code", "Wrong code"


class IdempotencyMismatch(VerifyError):
    status, slug, title = 422, "idempotency-mismatch", "Idempotency-Key reused with a different request"


class MaxAttempts(_AttemptsError):
    status, slug, title = 429, "max-attempts", "Too many wrong codes"


class ResendCooldown(VerifyError):
    status, slug, title = 429, "resend-cooldown", "Too early to send another code"


class MaxSends(VerifyError):
    status, slug, title = 429, "max-sends", "No sends left for this verification"


class CaptchaRequired(VerifyError):
    status, slug, title = 428, "captcha-required", "Captcha required"

    def __init__(self, detail: str, *, captcha: dict[str, Any] | None) -> None:
        super().__init__(detail)
        self.captcha = captcha  # the challenge to solve (its id and image, or the widget's site key)

    def context(self) -> dict[str, Any]:
        return {"captcha": self.captcha}


class RateLimited(VerifyError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, limit: str, value: str, retry_after: int) -> None:
        super().__init__(f"the {limit} limit ({value}) is used up; retry later", retry_after=retry_after)
        self.limit = limit

    def context(self) -> dict[str, Any]:
        return {"limit": self.limit}


class PhoneNotAllowed(_FieldError):
    status, slug, title = 400, "phone-not-allowed", "This phone number is not accepted"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "phone")


class StoreUnavailable(VerifyError):
    status, slug, title = 503, "store-unavailable", "Storage is unavailable"


class ReplicasUnconfirmed(StoreUnavailable):
    """The Redis master ran a write, but fewer replicas than required confirmed it in time (``WAIT``): the change may
    have been applied, and a failover now could lose it. The client retries, and its retry meets either the change
    or the state before it."""

    def __init__(self, required: int, confirmed: int) -> None:
        super().__init__(
            f"Redis could not copy the change to {required} replica(s) in time ({confirmed} confirmed it): "
            "it may have been applied; retry"
        )
        self.required = required
        self.confirmed = confirmed


class DeliveryFailed(VerifyError):
    status, slug, title = 503, "delivery-failed", "No gateway could deliver the message"
