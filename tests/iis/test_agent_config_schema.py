"""The CloudWatch agent configuration against the agent's own JSON schema.

The agent's config-translator validates every configuration with gojsonschema against
translator/config/schema.json (aws/amazon-cloudwatch-agent translator/cmdutil/translatorutil.go,
checkSchema) and stops on an invalid one, so AmazonCloudWatch-ManageAgent's configure fails and
nothing is shipped. The schema (draft-04) is vendored byte for byte in
tests/iis/fixtures/cloudwatch-agent-schema.json; its source (repository, path, commit, digest) is
tests/iis/fixtures/cloudwatch-agent-schema.source.json. Validated here with the jsonschema package
(installed with check-jsonschema, requirements-dev.txt).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from components.iis.agent_config import agent_config
from conftest import Planned

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCHEMA_FILE = FIXTURES / "cloudwatch-agent-schema.json"
SOURCE_FILE = FIXTURES / "cloudwatch-agent-schema.source.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert loaded["$schema"] == "http://json-schema.org/draft-04/schema#"
    jsonschema.Draft4Validator.check_schema(loaded)
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(schema)


def problems(validator: jsonschema.Draft4Validator, config: dict[str, Any]) -> list[str]:
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in validator.iter_errors(config))


def test_the_vendored_schema_is_the_recorded_one() -> None:
    source = json.loads(SOURCE_FILE.read_text(encoding="utf-8"))
    assert (source["repository"], source["path"]) == ("https://github.com/aws/amazon-cloudwatch-agent", "translator/config/schema.json")
    assert len(source["commit"]) == 40 and len(source["gitBlob"]) == 40
    data = SCHEMA_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == source["sha256"], "the fixture differs from the recorded copy: refresh both together"
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == source["gitBlob"], "git's object id of the file at the recorded commit"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_deployed_configuration_is_valid(
    stack: str, schema: dict[str, Any], validator: jsonschema.Draft4Validator, request: pytest.FixtureRequest
) -> None:
    """What the parameter holds, as the program plans it for each stack."""
    p: Planned = request.getfixturevalue(stack)
    config = json.loads(p.one("ssm/parameter:Parameter", "iis-logs-agent-config").inputs["insecureValue"])
    assert problems(validator, config) == []
    # The schema lets unknown top-level sections through (additionalProperties true there): ours are its own.
    assert set(config) <= set(schema["properties"])
    assert len(config["logs"]["logs_collected"]["files"]["collect_list"]) == 2


def test_every_level_we_write_refuses_unknown_keys(schema: dict[str, Any]) -> None:
    """So the mutations below test the schema, not luck: additionalProperties false at logs,
    logs_collected, files and each collect_list entry."""
    logs = schema["definitions"]["logsDefinition"]
    files = logs["definitions"]["logsFilesDefinition"]
    assert logs["additionalProperties"] is False
    assert logs["properties"]["logs_collected"]["additionalProperties"] is False
    assert files["additionalProperties"] is False
    assert files["properties"]["collect_list"]["items"]["additionalProperties"] is False


def _entry(config: dict[str, Any], index: int) -> dict[str, Any]:
    return config["logs"]["logs_collected"]["files"]["collect_list"][index]


def _set(fn: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(config: dict[str, Any]) -> None:
        fn(config)[key] = value
    return mutate


# name: (mutation, (where, the schema keyword that refuses it, what the message names))
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, str, str]]] = {
    "misspelt key in the W3C entry": (_set(lambda c: _entry(c, 0), "log_group", "/x"), ("logs/logs_collected/files/collect_list/0", "additionalProperties", "'log_group'")),
    "misspelt key in the HTTPERR entry": (_set(lambda c: _entry(c, 1), "timestamp_fromat", "%Y"), ("logs/logs_collected/files/collect_list/1", "additionalProperties", "'timestamp_fromat'")),
    "unknown key in files": (_set(lambda c: c["logs"]["logs_collected"]["files"], "exclude_list", []), ("logs/logs_collected/files", "additionalProperties", "'exclude_list'")),
    "unknown key in logs_collected": (_set(lambda c: c["logs"]["logs_collected"], "file", {}), ("logs/logs_collected", "additionalProperties", "'file'")),
    "unknown key in logs": (_set(lambda c: c["logs"], "flush_interval", 5), ("logs", "additionalProperties", "'flush_interval'")),
    "timezone outside its enum": (_set(lambda c: _entry(c, 1), "timezone", "utc"), ("logs/logs_collected/files/collect_list/1/timezone", "enum", "'utc'")),
    "file_path removed": (lambda c: _entry(c, 0).pop("file_path") and None, ("logs/logs_collected/files/collect_list/0", "required", "'file_path'")),
    "empty log group name": (_set(lambda c: _entry(c, 1), "log_group_name", ""), ("logs/logs_collected/files/collect_list/1/log_group_name", "minLength", "''")),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_mutated_configuration_is_refused(name: str, validator: jsonschema.Draft4Validator) -> None:
    mutate, (where, keyword, named) = MUTATIONS[name]
    config = copy.deepcopy(agent_config("/flexnet-beacon/dev/iis"))
    assert problems(validator, config) == []
    mutate(config)
    (error,) = validator.iter_errors(config)
    assert ("/".join(str(p) for p in error.absolute_path), error.validator) == (where, keyword), error.message
    assert named in error.message
