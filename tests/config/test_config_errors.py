"""Bad input gives one clear line naming file, line or field, exit code 2, and no traceback."""

from pathlib import Path

import pytest
import yaml

from tests.support.projects import APPROVE, replay, run_cli


@pytest.fixture
def root(project_factory):
    return project_factory({"assistant-script": replay("a"), "reviewer-script": replay(APPROVE)})


def scenario(root: Path, text: str) -> Path:
    path = root / "scenarios" / "bad.yaml"
    path.write_text(text)
    return path


def run_bad(root, *args):
    proc = run_cli("--project", str(root), "scenario", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    return proc.stderr


def test_yaml_syntax_error_names_file_and_line(root):
    path = scenario(root, "name: x\nturns:\n  - user: hi\n    expect: {outcome: approved\n")
    err = run_bad(root, str(path))
    assert "bad.yaml:" in err and "YAML syntax error" in err


def test_unknown_field_suggests_the_right_one(root):
    path = scenario(root, "name: x\nturns:\n  - user: hi\n    expect:\n      outcom: approved\n")
    err = run_bad(root, str(path))
    assert "bad.yaml:5" in err and "unknown field 'outcom'" in err and "did you mean 'outcome'" in err


def test_wrong_type_names_the_field(root):
    path = scenario(root, "name: x\nmax_revisions: lots\nturns:\n  - user: hi\n")
    err = run_bad(root, str(path))
    assert "bad.yaml:2" in err and "max_revisions" in err


def test_wrong_outcome_value(root):
    path = scenario(root, "name: x\nturns:\n  - user: hi\n    expect: {outcome: delivered}\n")
    err = run_bad(root, str(path))
    assert "turns.0.expect.outcome" in err


def test_missing_model_reference_names_agent_file(root):
    agent = root / "agents" / "unaligned_assistant.yaml"
    data = yaml.safe_load(agent.read_text())
    data["model"] = "no-such-model"
    agent.write_text(yaml.safe_dump(data))
    err = run_bad(root, str(root / "scenarios"))
    assert "unaligned_assistant.yaml" in err and "model 'no-such-model' is not defined" in err


def test_unknown_policy_and_category_in_scenario(root):
    path = scenario(root, "name: x\npolicy: casino\nturns:\n  - user: hi\n")
    assert "no policy named 'casino'" in run_bad(root, str(path))
    path = scenario(root, "name: x\nturns:\n  - user: hi\n    expect: {categories: [aliens]}\n")
    err = run_bad(root, str(path))
    assert "category 'aliens' is not in policy 'public'" in err and "bad.yaml:4" in err


def test_empty_and_binary_files(root):
    assert "empty" in run_bad(root, str(scenario(root, "")))
    path = root / "scenarios" / "bad.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert "not UTF-8" in run_bad(root, str(path)) or "NUL" in run_bad(root, str(path))


def test_missing_path_and_missing_turns(root):
    assert "no such file or folder" in run_bad(root, str(root / "nope.yaml"))
    err = run_bad(root, str(scenario(root, "name: x\n")))
    assert "turns" in err and "required field is missing" in err


def test_bad_models_file(root):
    models = root / "config" / "models.yaml"
    models.write_text("default: a\nmodels:\n  a:\n    kind: openai\n    base_url: ftp://x\n    model: m\n")
    err = run_bad(root, str(root / "scenarios"))
    assert "models.yaml:5" in err and "base_url" in err


def test_unset_api_key_variable_is_a_clear_error(root, monkeypatch):
    models = root / "config" / "models.yaml"
    models.write_text(
        "default: a\nmodels:\n  a:\n    kind: openai\n    model: m\n    api_key_env: CHAPERONE_TEST_UNSET_KEY\n"
        "  assistant-script: {kind: replay, replies: [x]}\n  reviewer-script: {kind: replay, replies: [x]}\n"
    )
    for name in ("unaligned_assistant", "moral_reviewer"):
        agent = root / "agents" / f"{name}.yaml"
        data = yaml.safe_load(agent.read_text())
        data["model"] = "a"
        agent.write_text(yaml.safe_dump(data))
    scenario(root, "name: x\nturns:\n  - user: hi\n")
    # A first scenario on scripted models would run fine: the check happens before anything runs.
    (root / "scenarios" / "a_first.yaml").write_text(
        "name: first\nmodels: {assistant: assistant-script, reviewer: reviewer-script}\nturns:\n  - user: hi\n"
    )
    err = run_bad(root, str(root / "scenarios"))
    assert "CHAPERONE_TEST_UNSET_KEY is not set" in err and "models.a.api_key_env" in err
    transcripts = root.parent / "transcripts"
    assert not transcripts.exists() or not any(transcripts.iterdir())
