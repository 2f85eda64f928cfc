"""Rechecked: a per-process copy of a small read, loaded again at most every few seconds."""

from backbone.recheck import Rechecked


def test_a_value_is_loaded_once_per_interval_per_key_and_forget_loads_it_again():
    loads = []
    value = Rechecked(lambda key: loads.append(key) or f"row {key} #{len(loads)}", seconds=60.0)

    assert [value.get(1), value.get(1), value.get(2)] == ["row 1 #1", "row 1 #1", "row 2 #2"]
    value.forget(1)
    assert [value.get(1), value.get(2)] == ["row 1 #3", "row 2 #2"]
    value.forget()
    assert value.get(2) == "row 2 #4"
    value.seconds = 0.0
    assert value.get(2) == "row 2 #5" and loads == [1, 2, 1, 2, 2]
