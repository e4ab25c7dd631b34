"""Personal data: a keyed hash of the phone number for the analysts' tables, keys from outside the repo.

``msisdn_hash`` = HMAC-SHA256(key, msisdn) as hex, computed with Spark column expressions (no Python per
row): the inner and outer pads are fixed bytes for a given key, so HMAC is two ``sha2`` calls.
The key comes from the environment (``CPC_HASH_KEY``, e.g. filled from an Airflow connection or a secrets
backend). On local and test environments only, a random key is made once in ``<root>/secrets/hash.key``
(outside git) so that `make run` works without setup; any other environment refuses to start without it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from jobs.platform.errors import ConfigError

BLOCK = 64  # SHA-256 block size


def hash_key(env: str, root: Path) -> bytes:
    key = os.environ.get("CPC_HASH_KEY")
    if key:
        return key.encode()
    if env not in ("local", "test"):
        raise ConfigError(f"CPC_HASH_KEY is not set: environment {env!r} needs the phone-number hashing key from its secrets")
    path = root / "secrets" / "hash.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def hmac_sha256(col, key: bytes):
    """Spark Column: hex HMAC-SHA256 of ``col`` (a string) under ``key``; null stays null."""
    from pyspark.sql import functions as F

    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(col, "UTF-8")), 256))
    return F.when(col.isNull(), F.lit(None).cast("string")).otherwise(F.sha2(F.concat(F.lit(opad), inner), 256))
