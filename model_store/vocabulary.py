"""The shared vocabulary: decision actions and the pattern of every identifier, defined once.

Imported by the policy (actions), the decision engine, the HTTP schemas, the batch file reader, the
outcomes and audit query parsers: one spelling of ``approve/refer/decline`` and one pattern per id.
Each pattern is given twice, as the JSON-Schema ``pattern`` the OpenAPI document publishes and as the
compiled check the code runs (anchored with ``\\Z``: Python's ``$`` also matches before a final newline).
"""

from __future__ import annotations

import re
from typing import Literal

Action = Literal["approve", "refer", "decline"]
#: Decision actions, least to most severe: the index is the severity.
ACTIONS: tuple[Action, ...] = ("approve", "refer", "decline")
SEVERITY: dict[str, int] = {action: rank for rank, action in enumerate(ACTIONS)}

#: The caller's reference for an application (no personal data).
APPLICATION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
APPLICATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
APPLICATION_ID_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ : -"

#: A decision id as the service issues them (uuid4 hex) or a caller may look one up.
DECISION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
DECISION_ID_RULE = "1 to 64 characters of A-Z a-z 0-9 _ -"

#: A client's idempotency key: 1 to 200 visible ASCII characters.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}\Z")
IDEMPOTENCY_KEY_RULE = "1 to 200 visible ASCII characters"

#: Filter tokens of the audit search: risk bands, reason codes, model versions.
TOKEN_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # noqa: S105 (a filter token, not a secret)
TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")

#: A model name as the model store accepts it.
MODEL_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
MODEL_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}\Z")

#: A model version: v1, v2, ...
MODEL_VERSION_PATTERN = r"^v[1-9][0-9]{0,8}$"
MODEL_VERSION = re.compile(r"v[1-9][0-9]{0,8}\Z")

#: A policy version (also the folder name of a stored candidate policy).
POLICY_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
POLICY_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
