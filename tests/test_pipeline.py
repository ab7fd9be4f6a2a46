"""``--set`` values (strings) are read into each config field's type."""

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.pipeline import build_config


def test_set_values_are_coerced_to_field_types():
    c = build_config("pgu", dataset="shapes", kind="random", seed=3,
                     overrides={"eps_layers": '{"features.0.0": 0.9}', "exclude": "head, features.0.0",
                                "epochs": "7", "lr_start": "0.2", "gap_val_guard": "false", "batch_size": "none"})
    assert c.eps_layers == {"features.0.0": 0.9} and c.exclude == ("head", "features.0.0")
    assert c.epochs == 7 and c.lr_start == 0.2 and c.gap_val_guard is False and c.batch_size is None
    assert c.seed == 3
    assert build_config("svd", dataset="digits", kind="class", seed=0, overrides={"grid_r": "10,30"}).grid_r == \
        (10.0, 30.0)
    assert build_config("unsir", dataset="digits", kind="class", seed=0,
                        overrides={"noise_clamp": "-1,1"}).noise_clamp == (-1.0, 1.0)


@pytest.mark.parametrize("method,field,value,match", [
    ("pgu", "eps_layers", "x", "JSON object"),
    ("pgu", "eps_layers", "[1, 2]", "JSON object"),
    ("pgu", "epochs", "many", "cannot read 'many'"),
    ("pgu", "nope", "1", "has no field 'nope'"),
])
def test_bad_set_values_fail_with_a_hint(method, field, value, match):
    with pytest.raises(ConfigError, match=match):
        build_config(method, dataset="shapes", kind="random", seed=0, overrides={field: value})
