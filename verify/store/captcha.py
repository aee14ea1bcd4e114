"""The builtin captcha's challenges: the HMAC of each answer (and its plain text in sandbox mode), answered once."""

from __future__ import annotations

from verify.store.batch import BatchEngine, Op, ignore


class CaptchaCommands(BatchEngine):
    """The captcha's commands, a part of :class:`~verify.store.Batch`."""

    def captcha_put(self, challenge_id: str, digest: str, ttl_ms: int, plain: str | None) -> Op[None]:
        """Keep a challenge's answer digest for ``ttl_ms``; the plain answer too in sandbox mode."""
        key = self._store.captcha_key(challenge_id)
        if plain is not None:
            self._command(ignore, "SET", key + ":plain", plain, "PX", ttl_ms)
        return self._command(ignore, "SET", key, digest, "PX", ttl_ms)

    def captcha_take(self, challenge_id: str) -> Op[str | None]:
        """Take a challenge's digest: a challenge is answered once, right or wrong."""
        key = self._store.captcha_key(challenge_id)
        op: Op[str | None] = self._command(lambda d: d, "GETDEL", key)
        self._command(ignore, "DEL", key + ":plain")
        return op

    def captcha_answer(self, challenge_id: str) -> Op[str | None]:
        """The plain answer kept in sandbox mode."""
        return self._command(lambda d: d, "GET", self._store.captcha_key(challenge_id) + ":plain")
