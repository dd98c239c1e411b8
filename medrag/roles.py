"""Who may change what when the app is served to a class: the educator, and learners.

A workstation is login-free: with no educator password configured everyone is the educator. With
``MEDRAG_EDUCATOR_PASSWORD_HASH`` set (a line from ``medrag auth hash-password``), a browser session is a
learner until the educator signs in with the password. Learners analyse, browse and take quizzes; they never
delete or edit the history, lesson sets or annotations, import into the library, or see other learners'
answers (:data:`EDUCATOR_ONLY` names each action, and its error says how to get the right).

Passwords are kept only as salted PBKDF2-HMAC-SHA256 hashes (Python's ``hashlib``), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal

from medrag.errors import ConfigError, PermissionDeniedError

Role = Literal["educator", "learner"]
#: PBKDF2 iterations for new hashes (OWASP's 2023 figure for SHA-256); stored in the hash, so old ones verify.
ITERATIONS = 600_000
_SCHEME = "pbkdf2_sha256"
#: The actions a learner may not take, as the error messages name them.
EDUCATOR_ONLY: tuple[str, ...] = (
    "delete an analysis", "edit an analysis' notes and tags", "create a lesson set", "rename a lesson set",
    "delete a lesson set", "change a lesson set's items", "import a lesson set", "draw or delete annotations",
    "import into the library", "rebuild the index", "see the quiz results",
)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64) for ``password``; what MEDRAG_EDUCATOR_PASSWORD_HASH holds."""
    if len(password) < 8:
        raise ConfigError("The educator password needs at least 8 characters; choose a longer one.")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join((_SCHEME, str(iterations), _b64(salt), _b64(digest)))


def check_hash(stored: str) -> str:
    """``stored`` when it is a hash :func:`hash_password` wrote; a ConfigError saying how to make one otherwise."""
    parts = stored.strip().split("$")
    try:
        ok = len(parts) == 4 and parts[0] == _SCHEME and int(parts[1]) >= 10_000
        ok = ok and len(_unb64(parts[2])) >= 8 and len(_unb64(parts[3])) == 32
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            "MEDRAG_EDUCATOR_PASSWORD_HASH is not a password hash MedRAG wrote; make one with "
            "`medrag auth hash-password` and paste the whole line (never the password itself)."
        )
    return stored.strip()


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash (constant-time comparison)."""
    _scheme, iterations, salt, digest = check_hash(stored).split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), _unb64(salt), int(iterations))
    return hmac.compare_digest(candidate, _unb64(digest))


def require(role: Role, action: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``role`` may take ``action`` (one of :data:`EDUCATOR_ONLY`)."""
    if role == "educator":
        return
    raise PermissionDeniedError(
        f"Only the educator can {action}. Learners can analyse, browse and take quizzes; the educator signs in "
        "with the class password in the sidebar."
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64") from exc


__all__ = ["EDUCATOR_ONLY", "ITERATIONS", "Role", "check_hash", "hash_password", "require", "verify_password"]
