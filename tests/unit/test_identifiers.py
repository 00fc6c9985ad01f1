"""The one gate for identifiers: every kind accepts DSS's real forms and refuses what could steer a call."""
import pytest

from process_tracker import identifiers
from process_tracker.errors import ConfigError

VALID = [
    ("project_key", "CHURN"), ("project_key", "HR_ANALYTICS"),
    ("future_id", "sc7Hn2Qa"), ("job_id", "Build_churn_scored_2026-11-25T09-41-12.304"),
    ("session_id", "c1a7e0f2-0b6d-4b8e-9a41-1f3c2d5e6a01"), ("kernel_id", "11111111-1111-4111-8111-111111111111"),
    ("webapp_id", "Xb3k9Qa"), ("recipe_id", "compute_fraud_stream"), ("scenario_id", "NIGHTLY_REFRESH"),
    ("code_studio_id", "alice-jlab"), ("login", "alice"), ("login", "jane.doe@corp.example"),
    ("notebook_name", "Churn exploration"), ("notebook_name", "Q3 #1 (50% sample)?"),
]
HOSTILE = ["../admin/users/alice", "..", ".", "a/b", "%2e%2e/x", "x?y=1", "x#y", "a\nb", "a\x00b", "", " CHURN",
           "x" * 1000, "é\u202e", "a\\b"]


@pytest.mark.parametrize("kind,value", VALID)
def test_real_forms_pass(kind, value):
    assert identifiers.check(kind, value) == value


@pytest.mark.parametrize("kind", sorted(identifiers.KINDS))
@pytest.mark.parametrize("value", HOSTILE + [None, 3, ["CHURN"]])
def test_hostile_values_refused_with_the_parameter_named(kind, value):
    if kind == "notebook_name" and value in ("x#y", "x?y=1"):
        # free text in DSS: accepted, but only ever used as one quoted segment
        assert not set("/?#") & set(identifiers.segment(kind, value))
        return
    with pytest.raises(ConfigError) as e:
        identifiers.check(kind, value, param="id")
    assert str(e.value).startswith("id: ")
    assert "\n" not in str(e.value) and "\x00" not in str(e.value)


def test_segment_quotes_everything():
    assert identifiers.segment("notebook_name", "Q3 #1 (50% sample)?") == "Q3%20%231%20%2850%25%20sample%29%3F"


def test_check_list_splits_dedupes_and_names_the_param():
    assert identifiers.check_list("project_key", "CHURN, FRAUD CHURN", "projects") == ("CHURN", "FRAUD")
    with pytest.raises(ConfigError, match="^excludedProjects: not a valid project key: 'NOPE/../PROD'"):
        identifiers.check_list("project_key", ["CHURN", "NOPE/../PROD"], "excludedProjects")


def test_safe_text_escapes_terminal_control_and_cuts():
    assert identifiers.safe_text("report\r\x1b[2Kspared") == "report\\r\\x1b[2Kspared"
    assert identifiers.safe_text("a\u202eb") == "a\\u202eb"
    assert identifiers.safe_text("x" * 500, 10) == "xxxxxxx..."
    assert identifiers.safe_text(None) is None
