"""CA keys encrypted at rest: `init-ca --encrypt-key` / `init-server-ca --encrypt-key` write
ca.key (root.key, private/server-ca.key) as encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY" PEM);
every verb that signs reads the password from PKI_CA_PASSWORD.

The encoding is PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 with KDF_ROUNDS iterations and a random
16-byte salt, AES-256-CBC with a random IV. It is assembled here because cryptography's
BestAvailableEncryption fixes PBKDF2 at 2,048 iterations for PKCS#8, far too few for the key
that vouches for every device (OWASP's 2023 figure for PBKDF2-HMAC-SHA256 is 600,000). Reading
goes through cryptography (OpenSSL), which takes any iteration count; `openssl pkey` reads the
file too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from components.safe_files import KEY_FILE_LIMIT, read_regular

from .build import pem_armor

CA_PASSWORD_ENV = "PKI_CA_PASSWORD"
MIN_CA_PASSWORD = 12  # the same floor as a PFX password: the file can be attacked offline
KDF_ROUNDS = 600_000  # about 0.15 s per load on one core: paid once per command
ENCRYPTED_LABEL = (b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----")

# DER of the fixed object identifiers (RFC 8018 appendix C, NIST AES).
_PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")  # 1.2.840.113549.1.5.12
_HMAC_SHA256 = bytes.fromhex("06082a864886f70d02090500")  # 1.2.840.113549.2.9, NULL
_AES256_CBC = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42


class PasswordProblem(ValueError):
    """PKI_CA_PASSWORD is missing, unusable or wrong (the caller turns it into one line)."""


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes((size,))
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes((0x80 | len(raw),)) + raw
    return bytes((tag,)) + length + content


def _integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def is_blank(password: str) -> bool:
    """Nothing but whitespace: no protection at all, and what an unquoted or mistyped variable
    gives. A new key or PFX refuses it (PKI_CA_PASSWORD, PKI_PASSWORD); opening an existing one
    takes whatever it was made with."""
    return not password.strip()


def ca_password(what: str, new: bool = False) -> bytes:
    """The password in PKI_CA_PASSWORD. ``what`` names the key (for the message); ``new``: a key
    about to be encrypted, which needs at least MIN_CA_PASSWORD characters."""
    text = os.environ.get(CA_PASSWORD_ENV)
    if text is None:
        raise PasswordProblem(f"{what} is encrypted: set {CA_PASSWORD_ENV} to its password" if not new
                              else f"--encrypt-key: set {CA_PASSWORD_ENV} to the password for {what} (at least {MIN_CA_PASSWORD} characters)")
    if new and text and is_blank(text):
        raise PasswordProblem(f"{CA_PASSWORD_ENV}: only whitespace ({len(text)} characters); expected a password (it protects the CA key against offline guessing)")
    if new and len(text) < MIN_CA_PASSWORD:
        raise PasswordProblem(f"{CA_PASSWORD_ENV}: {len(text)} characters; expected at least {MIN_CA_PASSWORD} (it protects the CA key against offline guessing)")
    if not text:
        raise PasswordProblem(f"{CA_PASSWORD_ENV} is set but empty; expected the password of {what}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise PasswordProblem(f"{CA_PASSWORD_ENV}: not valid UTF-8 text (not shown); expected a UTF-8 password") from None


def encrypted_pem(key: Any, password: bytes, rounds: int = KDF_ROUNDS) -> bytes:
    """The key as PEM "ENCRYPTED PRIVATE KEY": PBES2, PBKDF2-HMAC-SHA256 (``rounds``), AES-256-CBC."""
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, iv = os.urandom(16), os.urandom(16)
    secret = hashlib.pbkdf2_hmac("sha256", password, salt, rounds, 32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    kdf = _der(0x30, _PBKDF2 + _der(0x30, _der(0x04, salt) + _integer(rounds) + _integer(32) + _der(0x30, _HMAC_SHA256)))
    scheme = _der(0x30, _AES256_CBC + _der(0x04, iv))
    algorithm = _der(0x30, _PBES2 + _der(0x30, kdf + scheme))
    return pem_armor(_der(0x30, algorithm + _der(0x04, sealed)), "ENCRYPTED PRIVATE KEY")


def is_encrypted(data: bytes) -> bool:
    return ENCRYPTED_LABEL in data


def file_is_encrypted(path: Path) -> bool:
    """Whether a key file is encrypted (read, not decrypted); False when unreadable."""
    try:
        return is_encrypted(read_regular(path, KEY_FILE_LIMIT))
    except (OSError, ValueError):
        return False


def load_encrypted(data: bytes, what: str) -> Any:
    """The key of an "ENCRYPTED PRIVATE KEY" PEM, with the password from PKI_CA_PASSWORD."""
    password = ca_password(what)
    try:
        return serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise PasswordProblem(f"{what}: {CA_PASSWORD_ENV} does not decrypt it (wrong password, or a damaged file)") from None
