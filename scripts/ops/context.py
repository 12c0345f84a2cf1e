"""What every `python -m scripts.ops` verb gets: the parsed arguments, the stack outputs and the AWS
session, each made when first needed (kept apart from cli.py so the verbs need not import it)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from .aws import Aws
from .common import out
from .outputs import StackOutputs


class Context:
    """Parsed arguments plus the stack outputs and the AWS session, made when first needed."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._outputs: StackOutputs | None = None
        self._aws: Aws | None = None

    @property
    def outputs(self) -> StackOutputs:
        if self._outputs is None:
            path = getattr(self.args, "stack_outputs", None)
            self._outputs = StackOutputs.load(path) if path else StackOutputs.empty()
        return self._outputs

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            region, source = self.outputs.region()
            self._aws = Aws(getattr(self.args, "profile", None), getattr(self.args, "region", None), region, source)
        return self._aws

    def use_region(self, region: str, source: str) -> None:
        """The session's default region when the outputs give none (e.g. the stack file's aws:region);
        --region still wins. Only before the session is first used."""
        if self._aws is None:
            self._aws = Aws(getattr(self.args, "profile", None), getattr(self.args, "region", None), region, source)

    @property
    def region(self) -> str | None:
        return self._aws.region if self._aws else getattr(self.args, "region", None)

    def emit(self, payload: dict[str, Any], lines: Sequence[str]) -> None:
        if getattr(self.args, "json", False):
            out(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        else:
            for line in lines:
                out(line)
