"""Claims as pre-registered hypotheses: the spec keys that state their conditions, validated."""

from __future__ import annotations

import pytest

from dcgan.config import ConfigError
from dcgan.specs import load_spec

SPEC = """
question = "?"
base_recipe = "cpu_default"
baseline = "a"
{top}

[[claims]]
source = "004"
kind = "{kind}"
arm = "b"
vs = "a"
text = "b beats a"
{claim}

[arms.a]
g_activation = "relu"

[arms.b]
g_activation = "selu"
"""


def _spec(tmp_path, claim: str = "", kind: str = "better", top: str = ""):
    path = tmp_path / "claims.toml"
    path.write_text(SPEC.format(claim=claim, kind=kind, top=top))
    return load_spec(path)


def test_conditions_are_parsed_and_the_spec_margin_is_the_default(tmp_path):
    spec = _spec(
        tmp_path,
        'measure = "fid"\nrecipe = "pokemon"\ndata = "pokemon 64x64"\nbudget = "1000 epochs"\n'
        'scope = "out: other data"',
        top="equivalence_margin = 0.05",
    )
    claim = spec.claims[0]
    assert spec.equivalence_margin == 0.05
    assert (claim.measure, claim.recipe, claim.data, claim.budget) == (
        "fid", "pokemon", "pokemon 64x64", "1000 epochs",
    )  # fmt: skip
    assert claim.margin == 0.05 and not claim.in_scope
    assert claim.out_of_scope_reason == "other data"


def test_defaults(tmp_path):
    spec = _spec(tmp_path)
    claim = spec.claims[0]
    assert spec.equivalence_margin is None and claim.margin is None
    assert (claim.measure, claim.scope, claim.criterion) == ("fid", "in", {})


def test_divergence_criterion(tmp_path):
    spec = _spec(tmp_path, "criterion = { g_loss_above = 20.0, d_loss_below = 0.01 }", "diverges")
    assert spec.claims[0].criterion == {"g_loss_above": 20.0, "d_loss_below": 0.01}
    assert spec.claims[0].measure == "failure"


@pytest.mark.parametrize(
    ("claim", "kind", "top", "message"),
    [
        ('scope = "out"', "better", "", "must be 'in' or 'out: <why>'"),
        ('scope = "maybe"', "better", "", "must be 'in' or 'out: <why>'"),
        ("margin = 1.5", "better", "", "margin: 1.5 must be between 0 and 1"),
        ('margin = "10%"', "better", "", "must be a number"),
        ("", "better", "equivalence_margin = 0", "equivalence_margin: 0 must be between 0 and 1"),
        ('measure = "kid"', "better", "", "measure: 'kid' is not valid"),
        ('recipe = "pokemonn"', "better", "", "unknown recipe 'pokemonn'"),
        ("criterion = { g_loss_above = 20.0 }", "better", "", "only a 'diverges' claim"),
        ("criterion = { g_los_above = 20.0 }", "diverges", "", "unknown key"),
        ("budget = 40", "better", "", "must be a string"),
        ("margn = 0.1", "better", "", "did you mean 'margin'"),
    ],
)
def test_bad_conditions_are_rejected_with_the_key(tmp_path, claim, kind, top, message):
    with pytest.raises(ConfigError, match="claims") as err:
        _spec(tmp_path, claim, kind, top)
    assert message in str(err.value)


def test_every_shipped_spec_loads_and_004s_activation_claims_are_out_of_scope():
    spec = load_spec("activation")
    original = [c for c in spec.claims if c.source == "004"]
    assert original and all(not c.in_scope for c in original)
    assert "Pokemon" in original[0].out_of_scope_reason
    tested = [c for c in spec.claims if c.in_scope]
    assert {c.kind for c in tested} == {"better", "diverges"}
    assert all(c.data == "mnist" and c.recipe == "cpu_default" for c in tested)
    for name in ("upsample", "init", "recipes"):
        assert any(c.in_scope and c.kind == "not_better" for c in load_spec(name).claims)
