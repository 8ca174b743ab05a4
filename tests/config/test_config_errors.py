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


def line_of(path: Path, start: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(start))


def test_an_alias_bomb_in_a_policy_is_one_line(root):
    """The finding: nine levels of nested anchors in a policy grew `scenario` to 4.5 GB until killed."""
    levels = [f"  a0: &a0 [{', '.join(['lol'] * 9)}]"]
    levels += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    policy = root / "config" / "policies" / "bomb.yaml"
    policy.write_text("name: bomb\ntitle: t\nrubric: r\ncategories: {x: y}\nextra:\n" + "\n".join(levels) + "\n")
    err = run_bad(root, str(root / "scenarios"))
    assert f"{policy}:10: YAML alias '*a3' makes the file more than 20,000 values once expanded" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["scenario", "chat", "serve"])
def test_deep_nesting_is_one_line_in_every_command(root, command):
    """The finding: 5,000 nested `[` gave a RecursionError traceback (exit 1) in scenario, chat and serve."""
    policy = root / "config" / "policies" / "deep.yaml"
    policy.write_text("name: deep\ntitle: t\nrubric: r\ncategories: {x: y}\nallowances: " + "[" * 5000 + "\n")
    proc = run_cli("--project", str(root), command, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{policy}:5: nested more than 32 levels deep" in proc.stderr


def test_a_duplicate_key_names_file_line_and_key(root):
    """The finding: `max_revisions: 2` then `max_revisions: 7` was accepted and the last one won."""
    settings = root / "config" / "settings.yaml"
    first = line_of(settings, "max_revisions:")
    settings.write_text(settings.read_text() + "max_revisions: 7\n")
    last = len(settings.read_text().splitlines())
    err = run_bad(root, str(root / "scenarios"))
    assert f"{settings}:{last}: max_revisions: duplicate key 'max_revisions' (first given on line {first};" in err


def test_a_critique_prompt_without_the_policy_is_refused(root):
    """The finding: a reviewer prompt without {policy} was accepted. The critique prompt is the one that
    then loses the deployment's rules (the decision prompts get the rubric appended: see the next test)."""
    agent = root / "agents" / "moral_reviewer.yaml"
    data = yaml.safe_load(agent.read_text())
    data["critique_prompt"] = "Say what is wrong with the draft.\nCategories:\n{categories}\n"
    agent.write_text(yaml.safe_dump(data, sort_keys=False))
    err = run_bad(root, str(root / "scenarios"))
    line = line_of(agent, "critique_prompt:")
    assert f"{agent}:{line}: critique_prompt: Value error, critique_prompt has no {{policy}} placeholder" in err


def test_decision_prompts_without_the_placeholder_still_carry_the_policy(root):
    """Why only the critique prompt is refused: engine/reviewer_prompt.py appends the rubric to a decision
    prompt (system_prompt, refusal_check.prompt) that does not say where it goes."""
    from chaperone.config.project import load_project
    from chaperone.engine.reviewer_prompt import system_prompt

    agent = root / "agents" / "moral_reviewer.yaml"
    data = yaml.safe_load(agent.read_text())
    data["system_prompt"] = "Decide if the draft is OK to send."
    data["refusal_check"]["prompt"] = "Decide if declining was right."
    agent.write_text(yaml.safe_dump(data, sort_keys=False))
    project = load_project(root)
    reviewer, policy = project.agents["moral_reviewer"], project.policies["public"]
    for prompt in (reviewer.system_prompt, reviewer.refusal_check.prompt):
        assert "{policy}" not in prompt and policy.rubric.strip() in system_prompt(prompt, policy)


def test_a_blank_rubric_is_refused(root):
    policy = root / "config" / "policies" / "blank.yaml"
    policy.write_text("name: blank\ntitle: t\nrubric: '   '\ncategories: {x: y}\n")
    err = run_bad(root, str(root / "scenarios"))
    assert f"{policy}:3: rubric: Value error, rubric is blank" in err


def test_revision_bounds_with_min_over_max_are_refused(root):
    """The finding: `revisions: {min: 3, max: 1}` was accepted, an expectation no turn can meet."""
    path = scenario(root, "name: x\nturns:\n  - user: hi\n    expect:\n      revisions: {min: 3, max: 1}\n")
    err = run_bad(root, str(path))
    assert f"{path}:5: turns.0.expect.revisions: Value error, min (3) is more than max (1)" in err


def test_expecting_more_revisions_than_the_scenario_allows_is_refused(root):
    path = scenario(
        root, "name: x\nmax_revisions: 1\nturns:\n  - user: hi\n  - user: again\n    expect: {revisions: 2}\n"
    )
    err = run_bad(root, str(path))
    assert f"{path}:3: turns: Value error, turns.1.expect.revisions: min (2) is more than this scenario's" in err


def scripted_models(root: Path, rules: str, role: str = "reviewer") -> Path:
    """A models.yaml whose reviewer is a scripted one with these rules (YAML, indented under `rules:`)."""
    models = root / "config" / "models.yaml"
    models.write_text(
        "default: assistant-script\nmodels:\n  assistant-script: {kind: replay, replies: [x]}\n"
        f"  reviewer-script:\n    kind: scripted\n    role: {role}\n    rules:\n{rules}"
    )
    return models


def test_a_scripted_model_with_a_bad_regular_expression_is_refused(root):
    """The rules are configuration: a pattern that does not compile is named with its file, line and field."""
    models = scripted_models(root, "      - match: '(poison'\n        categories: [violence]\n        critique: No.\n")
    err = run_bad(root, str(root / "scenarios"))
    assert f"{models}:8: models.reviewer-script.rules.0.match: Value error, not a valid regular expression" in err


def test_a_scripted_pattern_is_bounded_and_must_not_match_everything(root):
    models = scripted_models(root, f"      - match: '{'a' * 301}'\n        categories: [x]\n        critique: No.\n")
    err = run_bad(root, str(root / "scenarios"))
    assert f"{models}:8: models.reviewer-script.rules.0.match" in err and "at most 300 characters" in err
    scripted_models(root, "      - match: 'bomb|'\n        categories: [x]\n        critique: No.\n")
    assert "matches empty text, so it would match every text" in run_bad(root, str(root / "scenarios"))


def test_a_scripted_rule_must_fit_its_role(root):
    scripted_models(root, "      - match: [bomb]\n        reply: Sure.\n")
    err = run_bad(root, str(root / "scenarios"))
    assert "models.reviewer-script" in err and "rules.0: reply and revision are for an assistant's rule" in err
    scripted_models(root, "      - match: [bomb]\n        reply: Sure.\n", role="assistant")
    err = run_bad(root, str(root / "scenarios"))
    assert "otherwise: an assistant needs a reply for requests no rule matches" in err


def test_expecting_more_revisions_than_the_settings_allow_is_refused(root):
    """The finding: with no max_revisions of its own a scenario runs under settings.yaml's (2 here), and
    `revisions: {min: 3}` can never be met; it was accepted and failed at every run."""
    path = scenario(root, "name: x\nturns:\n  - user: hi\n  - user: again\n    expect:\n      revisions: {min: 3}\n")
    err = run_bad(root, str(path))
    assert (
        f"{path}:6: turns.1.expect.revisions: min (3) is more than max_revisions (2, from config/settings.yaml: "
        "this scenario sets none), so no turn could meet it" in err
    )
    assert len(err.strip().splitlines()) == 1
    # With its own cap the same expectation is a scenario that can run (its expectation may still fail).
    path.write_text("name: x\nmax_revisions: 3\nturns:\n  - user: hi\n    expect: {revisions: {min: 3}}\n")
    proc = run_cli("--project", str(root), "scenario", str(path))
    assert proc.returncode == 1 and "expected revisions 3.., got 0" in proc.stdout, proc.stdout + proc.stderr
