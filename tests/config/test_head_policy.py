"""A policy's decisions for a reviewer head: per category, block or allow, at a threshold; a flag band.
Bad values name the file and the field."""

from pathlib import Path

import pytest
import yaml

from chaperone.config import yaml_files
from chaperone.config.project import load_project
from chaperone.config.schema import HEAD_CATEGORIES, PolicySpec
from chaperone.errors import ConfigError
from tests.support.projects import REPO


def test_a_head_scores_every_category_of_the_products_taxonomy():
    # The public policy's categories are the taxonomy; the lab policy's own "drugs" has no head output yet.
    assert set(load_project(REPO).policy("public").categories) <= set(HEAD_CATEGORIES)


def test_public_blocks_hazardous_chemistry_and_lab_allows_it():
    project = load_project(REPO)
    public, lab = project.policy("public").head, project.policy("lab").head
    assert public.categories["hazardous_chemistry"].block is True
    assert lab.categories["hazardous_chemistry"].block is False
    assert public.flag_band[1] == public.not_ok_threshold and 0 < public.flag_band[0] < public.not_ok_threshold


def test_the_shipped_policies_use_the_threshold_chosen_on_dev_for_the_shipped_head():
    """The policy's threshold is the one the head's card says was chosen on dev (rounded to 3 places), and the
    per-category thresholds are the card's proposals where the head scores that category."""
    import json

    project = load_project(REPO)
    named = project.agent(project.settings.agents.reviewer, role="reviewer").head  # the head the reviewer uses
    card = json.loads((REPO / named).with_suffix(".json").read_text())
    chosen = card.get("stack") or card["alone"]  # with the prompted score combined, or the head alone
    for name in ("public", "lab"):
        head = project.policy(name).head
        assert head.not_ok_threshold == pytest.approx(chosen["threshold"]["value"], abs=5e-4)
        proposed = chosen["proposed_category_thresholds"]
        for category, rule in head.categories.items():
            if category in proposed:
                assert rule.threshold == proposed[category]["threshold"], (name, category)


def write(tmp_path: Path, head: dict) -> Path:
    data = yaml.safe_load((REPO / "config/policies/public.yaml").read_text())
    data["head"] = head
    path = tmp_path / "public.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("head", "field", "words"),
    [
        ({"not_ok_threshold": 1.0}, "head.not_ok_threshold", "less than 1"),
        ({"categories": {"violence": {"threshold": 0}}}, "head.categories.violence.threshold", "greater than 0"),
        ({"categories": {"drugs": {"block": True}}}, "head", "must be one of this policy's categories"),
        ({"categories": {"nonsense": {"block": False}}}, "head", "nor one a head scores"),
        ({"flag_band": [0.5, 0.35]}, "head.flag_band", "must be below its high end"),
        ({"flag_band": [0.2, 1.5]}, "head.flag_band", "must be probabilities"),
        ({"categories": {"violence": {"blocks": True}}}, "head.categories.violence", "blocks"),
    ],
)
def test_bad_head_rules_name_the_file_and_the_field(tmp_path, head, field, words):
    path = write(tmp_path, head)
    with pytest.raises(ConfigError) as exc:
        yaml_files.load(PolicySpec, path)
    message = str(exc.value)
    assert "public.yaml" in message and words in message
    if field != "head":
        assert field in message


def test_an_allowed_category_may_be_one_the_policy_does_not_list(tmp_path):
    path = write(tmp_path, {"categories": {"unqualified_advice": {"block": False, "threshold": 0.6}}})
    assert yaml_files.load(PolicySpec, path).head.categories["unqualified_advice"].threshold == 0.6
