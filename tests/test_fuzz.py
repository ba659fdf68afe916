"""Schemathesis against our OpenAPI spec: no 5xx, no answer that breaks its schema.

Every operation of the spec gets a bounded number of generated requests
(valid and invalid), sent to the real app in-process (ASGI) over a database
holding the sample grid, on both backends. Tokens are off here: the role
matrix has its own test, and the fuzzer should reach the code behind them.
(Schemathesis's own pytest plugin does not run under pytest 9, so the test
walks the operations itself, with Hypothesis.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.engine import Engine

from netbroker.api import create_app
from netbroker.common.config import Settings

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
EXAMPLES = 8


def test_no_server_error_and_answers_match_the_schema(grid_engine: Engine) -> None:
    app = create_app(Settings.model_validate({"service": {"auth": "off"}}), grid_engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    walked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error,
                                                     response_schema_conformance])

        fuzz()
        walked.append(operation.label)
    assert len(walked) >= 40, walked
