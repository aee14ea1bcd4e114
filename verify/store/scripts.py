"""The Lua scripts (``lua/<name>.lua``): their sources, with the libraries they include, loaded once per store.

A script's first line may include libraries (``-- include: _quota _send``): their text goes in front of its own,
since Redis runs one self-contained source per script. Every script runs on Redis 6.2 and later, in one Redis
Cluster slot (its keys share a hash tag).
"""

from __future__ import annotations

import re
from importlib import resources

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

INCLUDE = re.compile(r"^-- include: (.+)$", re.MULTILINE)


class Scripts:
    """The Lua scripts, loaded once per store (``lua/<name>.lua``, with the libraries they include)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self._client = client

        def load(name: str) -> Script:
            return client.register_script(source(name))

        self.start = load("start")
        self.begin_send = load("begin_send")
        self.end_send = load("end_send")
        self.complete = load("complete")
        self.cancel = load("cancel")
        self.find = load("find")
        self.phone_verifications = load("phone_verifications")
        self.set_delivery = load("set_delivery")
        self.take = load("take")
        self.give = load("give")
        self.pump = load("pump")
        self.breaker_failure = load("breaker_failure")
        self.idempotency = load("idempotency")
        self.claim_due = load("claim_due")
        self.enqueue = load("enqueue")
        self.delivered = load("delivered")
        self.unhint = load("unhint")

    def load(self) -> None:
        """Load every script into Redis: in one round trip, or into every primary of a cluster."""
        scripts = [script for script in vars(self).values() if isinstance(script, Script)]
        if isinstance(self._client, RedisCluster):
            for script in scripts:
                self._client.script_load(script.script)  # SCRIPT LOAD goes to every primary
            return
        pipe = self._client.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.script)
        pipe.execute()


def source(name: str) -> str:
    """A script's source, with the libraries (``_<name>.lua``) its first line includes put in front."""
    text = resources.files("verify.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    include = INCLUDE.match(text)
    libraries = [source(lib) for lib in include.group(1).split()] if include else []
    return "\n".join([*libraries, text])
