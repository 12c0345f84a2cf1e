"""`crl --publish BUCKET`: upload the CRLs just written to S3, where the CDP URLs point.

Object keys (``s3://BUCKET/KEY``):

- the issuing CA's CRL (crl.der) goes to the path of each CDP URL of the issued certificates
  (``init-ca --crl-url``): ``http://host/pki/devices.crl`` -> ``pki/devices.crl``; the root's
  CRL (root-crl.der, with an intermediate) to the path of each of the intermediate's CDP URLs;
- ``--prefix P`` replaces the directory part of those paths: ``P`` + ``devices.crl``;
- without CDP URLs: ``P`` + ``crl.der`` / ``P`` + ``root-crl.der`` (``P`` defaults to nothing).

Content-Type ``application/pkix-crl`` (RFC 2585), ``Cache-Control: max-age=300`` by default so
that a re-signed CRL reaches the beacons within minutes when a CDN or proxy sits in between.
boto3 reads its usual configuration: AWS_PROFILE / ``--profile``, AWS_REGION / ``--region``,
AWS_ENDPOINT_URL (e.g. a local S3), credentials from the environment, files, SSO or a role.

Errors are one line. Exit 2 (fix the input or the setup; nothing uploaded): no credentials, an
unknown profile, an invalid or missing bucket. Exit 1 (the CRL files were written here, the
upload failed): access denied, endpoint unreachable, any other S3 error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from .store import PkiError

CONTENT_TYPE = "application/pkix-crl"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_HOST = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$")
_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccountProblem"}


class PublishError(PkiError):
    """The CRL was written locally but could not be uploaded: exit 1."""

    exit_code = 1


@dataclass
class Target:
    bucket: str
    prefix: str | None
    region: str | None
    profile: str | None
    max_age: int
    _client: Any = field(default=None, repr=False)

    @classmethod
    def from_args(cls, bucket: str, prefix: str | None, region: str | None, profile: str | None, max_age: int = 300) -> "Target":
        """Checks what can be checked before a CRL is signed: the bucket name, the profile and
        that credentials exist (so a setup problem changes nothing here)."""
        if bucket.startswith("s3://"):
            bucket = bucket[5:].rstrip("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise PkiError(f"--publish: got {bucket!r}; expected an S3 bucket name (3-63 lower-case letters, digits, '.' and '-')")
        if prefix is not None and (prefix.startswith("/") or any(ord(ch) < 32 for ch in prefix)):
            raise PkiError(f"--prefix: got {prefix!r}; expected a key prefix like pki/ (no leading '/', no control characters)")
        target = cls(bucket, prefix, region, profile, max_age)
        target.client()
        return target

    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3.session
                from botocore.exceptions import BotoCoreError, ProfileNotFound
            except ImportError:
                raise PkiError("crl --publish needs boto3 (pip install -r requirements.txt)") from None
            try:
                session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
                credentials = session.get_credentials()
            except ProfileNotFound as exc:
                raise PkiError(f"--profile: {exc}") from None
            except BotoCoreError as exc:
                raise PkiError(f"AWS configuration: {exc}") from None
            if credentials is None:
                raise PkiError(
                    "no AWS credentials found: set AWS_PROFILE (or --profile), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                    "or run where a role provides them; nothing was uploaded"
                )
            try:
                self._client = session.client("s3")
            except BotoCoreError as exc:
                raise PkiError(f"AWS configuration: {exc}") from None
        return self._client


@dataclass
class Upload:
    source: Path
    body: bytes
    key: str
    url: str  # s3://bucket/key
    cdp: str | None  # the CDP URL the key was derived from
    warnings: list[str] = field(default_factory=list)


def object_keys(urls: Sequence[str], prefix: str | None, default_name: str) -> list[tuple[str, str | None]]:
    """(key, CDP URL or None) for one CRL: from the CDP URL paths, else prefix + default_name."""
    keys: list[tuple[str, str | None]] = []
    for url in urls:
        path = unquote(urlsplit(url).path).lstrip("/")
        if not path or path.endswith("/"):
            continue  # no file name in this URL
        key = prefix + path.rsplit("/", 1)[-1] if prefix is not None else path
        if key not in [k for k, _ in keys]:
            keys.append((key, url))
    return keys or [((prefix or "") + default_name, None)]


def plan(target: Target, files: Sequence[Any]) -> list[Upload]:
    """One upload per (CRL file, object key). ``files``: revocation.CrlFile items."""
    uploads = []
    for item in files:
        for key, cdp in object_keys(item.urls, target.prefix, item.der_path.name):
            upload = Upload(item.der_path, item.der, key, f"s3://{target.bucket}/{key}", cdp)
            if not key.endswith(".crl"):
                upload.warnings.append(f"{upload.url}: the key does not end in .crl; a crlHosting s3 bucket of this project serves only *.crl objects")
            host = urlsplit(cdp).hostname if cdp else None
            match = _S3_HOST.match(host or "")
            if match and match.group("bucket") != target.bucket:
                upload.warnings.append(f"{cdp} is served by bucket {match.group('bucket')!r}, not {target.bucket!r}")
            uploads.append(upload)
    return uploads


def upload(target: Target, item: Upload) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    try:
        target.client().put_object(
            Bucket=target.bucket,
            Key=item.key,
            Body=item.body,
            ContentType=CONTENT_TYPE,
            CacheControl=f"max-age={target.max_age}",
        )
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise PkiError(f"no usable AWS credentials ({exc}); nothing was uploaded") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        message = error.get("Message") or code
        if code == "NoSuchBucket":
            raise PkiError(f"--publish: bucket {target.bucket!r} does not exist (NoSuchBucket); nothing was uploaded") from None
        if code in _DENIED or code == "403":
            raise PublishError(
                f"{item.url}: access denied ({code}: {message}); the credentials need s3:PutObject on "
                f"arn:aws:s3:::{target.bucket}/{item.key}. {item.source.name} was written here, not published"
            ) from None
        raise PublishError(f"{item.url}: S3 refused the upload ({code}: {message}); {item.source.name} was written here, not published") from None
    except BotoCoreError as exc:
        raise PublishError(f"{item.url}: upload failed ({exc}); {item.source.name} was written here, not published") from None
