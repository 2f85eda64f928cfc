"""Search evaluation (being written)."""


def evaluate_search(**kwargs):
    raise NotImplementedError
