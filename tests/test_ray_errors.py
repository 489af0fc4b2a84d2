"""The convention for user errors raised in code that Ray runs (onlyif.ray_errors), on a real local Ray."""

from __future__ import annotations

import pyarrow as pa
import pytest

from onlyif.errors import ConfigError, OnlyIfError
from onlyif.ray_errors import error_record, raise_first_in, raise_recorded, user_error


def test_a_ray_tasks_error_is_found_through_its_cause(ray_cluster):
    @ray_cluster.remote
    def refuse() -> None:
        raise ConfigError("budget: must be >= instructions")

    with pytest.raises(ConfigError) as raised:  # Ray's wrapper is also an instance of the original class ...
        ray_cluster.get(refuse.remote())
    assert "ray::refuse()" in str(raised.value).splitlines()[0]  # ... but its text is the remote traceback
    found = user_error(raised.value)
    assert type(found) is ConfigError and str(found) == "budget: must be >= instructions"
    plain = OnlyIfError("no such file")
    assert user_error(plain) is plain and user_error(ValueError("x")).args == ("x",)


def test_errors_handed_back_as_data_are_raised_with_their_class():
    with pytest.raises(ConfigError, match="^--out d: seed: bad$"):
        raise_recorded(error_record(ConfigError("seed: bad")), "--out d: ")
    raise_recorded({"rows": 3})  # no error: nothing raised
    column = pa.array([None, '{"error": "row 2: too long", "config_error": false}', None], pa.string())
    with pytest.raises(OnlyIfError, match="^train: row 2: too long$") as raised:
        raise_first_in(column, "train: ")
    assert type(raised.value) is OnlyIfError
    raise_first_in(pa.nulls(2, pa.string()))
