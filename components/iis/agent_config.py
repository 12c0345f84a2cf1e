"""The Amazon CloudWatch agent's configuration for the beacon's IIS logs, as pure data.

IIS writes W3C logs per site under <log directory>\\W3SVC<site id>\\u_ex<date>.log (UTF-8, one
request per line, `#Fields:` headers); the agent ships each line as one event to the stack's
IIS log group, one stream per instance. Keys follow the agent's configuration file reference
(Amazon CloudWatch User Guide: "Manually create or edit the CloudWatch agent configuration
file", section logs / logs_collected / files / collect_list).
"""

from __future__ import annotations

import json
from typing import Any

IIS_LOG_DIRECTORY = "C:\\inetpub\\logs\\LogFiles"
# Every site's W3C files: the beacon's site id is whatever IIS gave it.
IIS_LOG_FILES = "W3SVC*\\u_ex*.log"


def agent_config(log_group_name: str, log_directory: str = IIS_LOG_DIRECTORY) -> dict[str, Any]:
    return {
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": f"{log_directory}\\{IIS_LOG_FILES}",
                            "log_group_name": log_group_name,
                            "log_stream_name": "{instance_id}",
                            "encoding": "utf-8",
                        }
                    ]
                }
            }
        }
    }


def agent_config_json(log_group_name: str, log_directory: str = IIS_LOG_DIRECTORY) -> str:
    return json.dumps(agent_config(log_group_name, log_directory), indent=1, sort_keys=True)
