"""boto3 session, region and the translation of botocore errors into one line each.

boto3's standard configuration applies unchanged: --profile or AWS_PROFILE, the shared config
and credentials files, SSO, environment credentials, AWS_ENDPOINT_URL (a local emulator), retry
settings. This module only adds: a region check before any call, a credentials check before any
call, and readable errors.
"""

from __future__ import annotations

import os
import re
from typing import Any

import boto3
import boto3.session
import botocore.exceptions as bce
import botocore.loaders
import botocore.session
from botocore.config import Config

from .common import InputError, OpsError, note

_REGION_FORMAT = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
USER_AGENT = "flexnet-beacon-ops"

CREDENTIAL_HELP = (
    "pass --profile NAME or set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(for IAM Identity Center: aws sso login --profile NAME)"
)


_LOADERS: dict[tuple[str, ...], botocore.loaders.Loader] = {}


def new_session(profile: str | None, region: str | None) -> boto3.session.Session:
    """A boto3 session (tests wrap this to register botocore event handlers).

    Every session of this process with the same data path shares one botocore data loader: the
    loader keeps the JSON it has read (endpoints, service models: tens of milliseconds each to
    parse), and a fresh session would read them all again (a command that switches to the stack's
    region makes two sessions)."""
    core = botocore.session.get_session()
    if profile is not None:
        core.set_config_variable("profile", profile)
    loader = core.get_component("data_loader")  # its search paths follow the profile's data_path (ProfileNotFound here)
    shared = _LOADERS.setdefault(tuple(loader.search_paths), loader)
    core.register_component("data_loader", shared)
    session = boto3.session.Session(botocore_session=core, region_name=region)
    shared.search_paths[:] = dict.fromkeys(shared.search_paths)  # boto3 appends its own data path once per session
    return session


_known_regions: set[str] = set()


def known_regions(session: boto3.session.Session) -> set[str]:
    """Regions of every partition in botocore's endpoint data (static: read once per process)."""
    if not _known_regions:
        for partition in session.get_available_partitions():
            _known_regions.update(session.get_available_regions("ssm", partition_name=partition))
    return _known_regions


def check_region(region: str, session: boto3.session.Session, source: str) -> str:
    if not _REGION_FORMAT.match(region or ""):
        raise InputError(f"{source}: got {region!r}; expected an AWS region name like us-east-1")
    known = known_regions(session)
    if known and region not in known:
        close = sorted(r for r in known if r.split("-")[0] == region.split("-")[0])[:6]
        hint = f" (known regions like it: {', '.join(close)})" if close else ""
        raise InputError(
            f"{source}: {region!r} is not an AWS region this boto3 knows{hint}; check the spelling "
            "(a region launched after this boto3 release needs a newer boto3)"
        )
    return region


class Aws:
    """One session and its clients, created after the region and credentials are known good."""

    def __init__(self, profile: str | None, region: str | None, stack_region: str | None = None, stack_region_source: str = ""):
        try:
            session = new_session(profile, region)
        except bce.ProfileNotFound:
            raise InputError(f"--profile/AWS_PROFILE: profile {profile or '(from AWS_PROFILE)'!r} is not in the AWS config or credentials file") from None
        # AWS_REGION as the AWS CLI v2 reads it (before AWS_DEFAULT_REGION); botocore reads only the latter.
        chosen = region or os.environ.get("AWS_REGION") or session.region_name
        if region:
            source = "--region"
        elif os.environ.get("AWS_REGION"):
            source = "AWS_REGION"
        elif chosen:
            source = "the AWS configuration (AWS_DEFAULT_REGION or the profile)"
        else:
            source = ""
        if stack_region:
            if region and region != stack_region:
                raise InputError(f"--region {region} but the stack's resources are in {stack_region} ({stack_region_source}): use --region {stack_region}")
            if chosen and chosen != stack_region:
                note(f"using the stack's region {stack_region} ({stack_region_source}), not {chosen} from {source}")
            if chosen != stack_region:
                session = new_session(profile, stack_region)
                chosen, source = stack_region, stack_region_source
        if not chosen:
            raise InputError("no AWS region: pass --region REGION, set AWS_REGION (or AWS_DEFAULT_REGION), or give --stack-outputs (the region is read from its ARNs)")
        check_region(chosen, session, source)
        try:
            credentials = session.get_credentials()
        except (bce.ProfileNotFound, bce.PartialCredentialsError, bce.CredentialRetrievalError, bce.SSOError) as exc:
            raise translate(exc) from None
        if credentials is None:
            raise InputError(f"no AWS credentials found: {CREDENTIAL_HELP}")
        self.session = session
        self.region = chosen
        self.profile = profile
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(user_agent_extra=USER_AGENT, connect_timeout=10, read_timeout=60)
            self._clients[service] = self.session.client(service, region_name=self.region, config=config)
        return self._clients[service]


def error_code(exc: BaseException) -> str:
    if isinstance(exc, bce.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, bce.ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")).strip()
    return str(exc)


_CREDENTIALS_REJECTED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "IncompleteSignature",
    "MissingAuthenticationToken",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotAuthorized"}


def translate(exc: BaseException, region: str | None = None) -> OpsError:
    """A botocore exception as one operator-readable line (InputError: exit 2, OpsError: exit 1)."""
    where = f" in {region}" if region else ""
    if isinstance(exc, bce.NoCredentialsError):
        return InputError(f"no AWS credentials found: {CREDENTIAL_HELP}")
    if isinstance(exc, bce.PartialCredentialsError):
        return InputError(f"incomplete AWS credentials ({exc}): {CREDENTIAL_HELP}")
    if isinstance(exc, bce.ProfileNotFound):
        return InputError(f"AWS profile not found: {exc}")
    if isinstance(exc, (bce.SSOTokenLoadError, bce.UnauthorizedSSOTokenError, bce.SSOError)):
        return InputError(f"the SSO session is missing or expired: run aws sso login (then retry) [{exc}]")
    if isinstance(exc, bce.CredentialRetrievalError):
        return InputError(f"AWS credentials could not be loaded: {exc}")
    if isinstance(exc, bce.NoRegionError):
        return InputError("no AWS region: pass --region REGION or set AWS_REGION (or AWS_DEFAULT_REGION)")
    if isinstance(exc, bce.EndpointConnectionError):
        return OpsError(f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url', '')}: no network, a proxy/firewall, a wrong region or a wrong AWS_ENDPOINT_URL")
    if isinstance(exc, (bce.ConnectTimeoutError, bce.ReadTimeoutError)):
        return OpsError(f"the AWS endpoint did not answer in time ({exc})")
    if isinstance(exc, bce.ClientError):
        code, message = error_code(exc), error_message(exc)
        operation = getattr(exc, "operation_name", "") or "the call"
        if code in _CREDENTIALS_REJECTED:
            return InputError(
                f"AWS rejected the credentials{where} ({code}: {message or 'no message'}): wrong or revoked keys, "
                "or a region not enabled for this account"
            )
        if code in _EXPIRED:
            return InputError(f"the AWS credentials have expired ({code}): refresh them (aws sso login, or new session keys)")
        if code in _DENIED:
            return OpsError(f"access denied for {operation}{where}: {message or code} (the caller's IAM policy must allow it)")
        return OpsError(f"AWS {operation} failed{where} ({code}): {message or 'no message'}")
    if isinstance(exc, bce.ParamValidationError):
        return InputError(f"invalid request parameters: {exc}")
    if isinstance(exc, bce.BotoCoreError):
        return OpsError(f"AWS SDK error: {exc}")
    return OpsError(str(exc))
