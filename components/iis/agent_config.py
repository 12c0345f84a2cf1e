"""The Amazon CloudWatch agent's configuration for the beacon's IIS logs, as pure data.

Two files, two log groups, one stream per instance in each:

- IIS W3C logs: <log directory>\\W3SVC<site id>\\u_ex<date>.log (UTF-8, one request per line,
  `#Fields:` headers) to the stack's IIS log group, which `ops readiness` reads.
- The HTTP.sys error log: %SystemRoot%\\System32\\LogFiles\\HTTPERR\\httperr<n>.log, the errors
  HTTP.sys handles itself before IIS sees a request (reason phrases such as Timer_ConnectionIdle,
  BadRequest, Connection_Dropped), to a log group of its own. Not the IIS group:
  HTTPERR files carry their own `#Fields:` line (date time c-ip c-port s-ip s-port cs-version
  cs-method cs-uri [streamid] sc-status s-siteid s-reason s-queuename), and the readiness model
  would count each of their lines as a request without a certificate (no crt-* fields, no
  cs-uri-stem to filter scanners by), a phantom "no-certificate" device per client address.

Keys follow the agent's configuration file reference (Amazon CloudWatch User Guide: "Manually
create or edit the CloudWatch agent configuration file", logs / logs_collected / files /
collect_list) and the agent's own JSON schema (aws/amazon-cloudwatch-agent
translator/config/schema.json, vendored in tests/iis/fixtures/), which refuses unknown keys.
"""

from __future__ import annotations

import json
from typing import Any, Optional

IIS_LOG_DIRECTORY = "C:\\inetpub\\logs\\LogFiles"
# Every site's W3C files: the beacon's site id is whatever IIS gave it.
IIS_LOG_FILES = "W3SVC*\\u_ex*.log"

# HTTP.sys error log (Microsoft, "Error logging in HTTP APIs", KB 820729): the folder HTTPERR under
# ErrorLoggingDir (default %SystemRoot%\System32\LogFiles), files httperr + sequence number + .log,
# cycled at ErrorLogFileTruncateSize (default 1 MB). Without publish_multi_logs the agent tails the
# most recently modified file matching the pattern (plugins/inputs/logfile/logfile.go), which is the
# one HTTP.sys writes. Only Administrators and Local System may read the folder (same article); the
# agent's service runs as Local System (amazon-cloudwatch-agent-ctl.ps1 creates it with New-Service
# and no account).
HTTPERR_LOG_DIRECTORY = "C:\\Windows\\System32\\LogFiles\\HTTPERR"
HTTPERR_LOG_FILES = "httperr*.log"
# "Format of the HTTP Server API Error Logs": Date "YYYY-MM-DD" and Time "hh:mm:ss", both UTC, the
# first two fields of every record. The agent turns the strftime directives into a regex and a Go
# layout (internal/util/timestamp, translator .../collect_list/ruleTimestampFormat.go); timezone UTC
# parses them as UTC. Lines without a timestamp (the #Software, #Version and #Fields directives)
# take the last valid one (plugins/outputs/cloudwatchlogs/internal/pusher/convert.go).
HTTPERR_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
HTTPERR_TIMEZONE = "UTC"

INSTANCE_STREAM = "{instance_id}"


def httperr_log_group_name(iis_log_group_name: str) -> str:
    """/flexnet-beacon/<stack>/iis -> /flexnet-beacon/<stack>/httperr (a sibling of the IIS group)."""
    parent, _, _ = iis_log_group_name.rstrip("/").rpartition("/")
    return f"{parent}/httperr"


def agent_config(
    log_group_name: str,
    *,
    httperr_log_group: Optional[str] = None,
    log_directory: str = IIS_LOG_DIRECTORY,
) -> dict[str, Any]:
    httperr_group = httperr_log_group or httperr_log_group_name(log_group_name)
    if httperr_group == log_group_name:
        raise ValueError(f"the HTTP.sys error log needs its own log group, not the IIS group {log_group_name}: ops readiness would count its lines as devices")
    return {
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": f"{log_directory}\\{IIS_LOG_FILES}",
                            "log_group_name": log_group_name,
                            "log_stream_name": INSTANCE_STREAM,
                            "encoding": "utf-8",
                        },
                        {
                            "file_path": f"{HTTPERR_LOG_DIRECTORY}\\{HTTPERR_LOG_FILES}",
                            "log_group_name": httperr_group,
                            "log_stream_name": INSTANCE_STREAM,
                            "encoding": "utf-8",
                            "timestamp_format": HTTPERR_TIMESTAMP_FORMAT,
                            "timezone": HTTPERR_TIMEZONE,
                        },
                    ]
                }
            }
        }
    }


def agent_config_json(
    log_group_name: str,
    *,
    httperr_log_group: Optional[str] = None,
    log_directory: str = IIS_LOG_DIRECTORY,
) -> str:
    return json.dumps(agent_config(log_group_name, httperr_log_group=httperr_log_group, log_directory=log_directory), indent=1, sort_keys=True)
