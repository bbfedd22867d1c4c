"""scripts/benchmark.py's arithmetic: rounds of every method, ratios taken within a round."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "scripts", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_ratio_is_taken_within_each_round_and_the_median_round_is_reported():
    bench = _benchmark()
    # the machine slows down in round 2: every method takes longer, the ratio hardly moves
    runs = {"raw binary pipe": [{"seconds": 10.0, "tables": {"Posts": 10.0}},
                                {"seconds": 14.0, "tables": {"Posts": 14.0}},
                                {"seconds": 11.0, "tables": {"Posts": 11.0}}],
            "streaming, count only": [{"seconds": 12.0, "tables": {"Posts": 9.0}},
                                      {"seconds": 16.8, "tables": {"Posts": 13.0}},
                                      {"seconds": 14.3, "tables": {"Posts": 11.0}}]}
    methods = bench.rounds_summary(runs)
    count = methods["streaming, count only"]
    assert [round(r, 3) for r in count["ratios"]] == [1.2, 1.2, 1.3]
    assert round(count["ratio"], 3) == 1.2
    # the figures shown are one real round's (the median by seconds), not a mix of rounds
    assert count["seconds"] == 14.3 and count["tables"] == {"Posts": 11.0}
    assert count["rounds_seconds"] == [12.0, 16.8, 14.3]
    assert methods["raw binary pipe"]["ratio"] == 1.0 and methods["raw binary pipe"]["seconds"] == 11.0


def test_one_round_is_the_single_run_itself():
    bench = _benchmark()
    methods = bench.rounds_summary({"raw binary pipe": [{"seconds": 8.0}], "streaming, full verify": [{"seconds": 10.0}]})
    assert methods["streaming, full verify"]["ratio"] == 1.25
    assert methods["streaming, full verify"]["seconds"] == 10.0
