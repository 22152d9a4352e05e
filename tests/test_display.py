"""How values are shown (audiosweep.display): short floats in what is printed, full precision in records."""

import pytest

from audiosweep.display import short_number


@pytest.mark.parametrize("value, shown", [
    (0.004130399570052626, "0.00413"), (0.2860757465489678, "0.2861"), (1e-05, "1e-05"), (0.1, "0.1"),
    (44100.0, "44100"), (123456.789, "123457"), (308.0, "308"), (0.0, "0"), (float("nan"), "nan"),
    (2205, "2205"), (True, "True"), ("resnet18", "resnet18"), (None, "None")])
def test_short_number(value, shown):
    assert short_number(value) == shown
