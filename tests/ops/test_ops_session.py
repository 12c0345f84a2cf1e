"""scripts.ops.aws.new_session: one botocore data loader per data path for the whole process."""

from __future__ import annotations

from pathlib import Path

import botocore.exceptions as bce
import pytest

from scripts.ops import aws as ops_aws


def loader_of(session):  # boto3 keeps its botocore session private; the component is public botocore
    return session._session.get_component("data_loader")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_sessions_share_one_loader_and_read_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_aws, "_LOADERS", {})  # as in a fresh process: no model read yet
    first, second = ops_aws.new_session(None, "us-east-1"), ops_aws.new_session(None, "eu-west-1")
    assert loader_of(first) is loader_of(second)
    read: list[str] = []
    file_loader = type(loader_of(first).file_loader)
    original = file_loader.load_file

    def counting(self, file_path):  # what the loader parses from disk (its cache sits above this)
        read.append(Path(file_path).name)
        return original(self, file_path)

    monkeypatch.setattr(file_loader, "load_file", counting)
    first.client("logs", aws_access_key_id="a", aws_secret_access_key="b")
    assert read, "the first client reads its model"
    read.clear()
    third = ops_aws.new_session(None, "ap-northeast-1")
    client = third.client("logs", aws_access_key_id="a", aws_secret_access_key="b")
    assert read == [], f"a later session parsed again: {read}"
    assert client.meta.region_name == "ap-northeast-1" and third.region_name == "ap-northeast-1"


def test_search_paths_do_not_grow_with_sessions() -> None:
    sessions = [ops_aws.new_session(None, "us-east-1") for _ in range(5)]
    paths = loader_of(sessions[-1]).search_paths
    assert len(paths) == len(set(paths)) and any(p.endswith("boto3/data") for p in paths), paths


def test_another_data_path_gets_its_own_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = loader_of(ops_aws.new_session(None, "us-east-1"))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    custom = loader_of(ops_aws.new_session(None, "us-east-1"))
    assert custom is not default and custom.search_paths[0] == str(tmp_path / "models")


def test_a_missing_profile_is_still_refused() -> None:
    with pytest.raises(bce.ProfileNotFound):
        ops_aws.new_session("no-such-profile", "us-east-1")
    with pytest.raises(ops_aws.InputError, match="profile 'no-such-profile' is not in the AWS config"):
        ops_aws.Aws("no-such-profile", "us-east-1")
