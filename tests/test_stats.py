"""The `!stats` note's numbers, formatted exactly as the original's Go prints them.

The expected strings come from Go 1.19 itself: `fmt.Sprintf("%.3g", f)` for
the rate (a float64), `time.Duration(ns).String()` for the time to the
headers, and the original's `"\\n\\n!note %.3g tok/s, %d toks, %v"` for the
whole line.
"""

import math

import pytest

from illume.stats import go_duration, go_general, note


@pytest.mark.parametrize("number, expected", [
    (0.0, "0"),
    (0.5, "0.5"),
    (1.0, "1"),
    (7.0, "7"),
    (12.3456, "12.3"),
    (40.0, "40"),
    (99.95, "100"),
    (99.94, "99.9"),
    (999.5, "1e+03"),
    (1000.0, "1e+03"),
    (1234.5, "1.23e+03"),
    (12345678.0, "1.23e+07"),
    (0.0001, "0.0001"),
    (0.00012345, "0.000123"),
    (0.00001234, "1.23e-05"),
    (1e21, "1e+21"),
    (1.125, "1.12"),  # exactly halfway: to even
    (1.135, "1.14"),  # the float is just above halfway
    (2.675, "2.67"),  # and this one just below
    (123.45, "123"),
    (9.995, "9.99"),
    (0.1 + 0.2, "0.3"),
    (1 / 3, "0.333"),
    (2 / 3, "0.667"),
    (65.4321, "65.4"),
    (math.inf, "+Inf"),
    (math.nan, "NaN"),
])
def test_rate_as_go_prints_a_float64_with_3g(number, expected):
    assert go_general(number) == expected


@pytest.mark.parametrize("ns, expected", [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1000, "1µs"),
    (1001, "1.001µs"),
    (1500, "1.5µs"),
    (350200, "350.2µs"),
    (999999, "999.999µs"),
    (1000000, "1ms"),
    (1500000, "1.5ms"),
    (12345678, "12.345678ms"),
    (123456789, "123.456789ms"),
    (999999999, "999.999999ms"),
    (1000000000, "1s"),
    (2250000000, "2.25s"),
    (59999999999, "59.999999999s"),
    (60000000000, "1m0s"),
    (63000000000, "1m3s"),
    (3600000000000, "1h0m0s"),
    (3661500000000, "1h1m1.5s"),
    (360000000000000, "100h0m0s"),
    (-1500000, "-1.5ms"),
    (-63000000000, "-1m3s"),
    (-1, "-1ns"),
])
def test_time_as_go_prints_a_duration(ns, expected):
    assert go_duration(ns / 1e9) == expected


@pytest.mark.parametrize("events, expected", [
    (100, "\n\n!note 40 tok/s, 100 toks, 12.345678ms"),
    (0, "\n\n!note 0 tok/s, 0 toks, 12.345678ms"),
    (1, "\n\n!note 0.4 tok/s, 1 toks, 12.345678ms"),
    (7, "\n\n!note 2.8 tok/s, 7 toks, 12.345678ms"),
])
def test_the_whole_line(events, expected):
    assert note(events, 0.012345678, 2.5) == expected


@pytest.mark.parametrize("events, expected", [(3, "+Inf"), (0, "NaN")])
def test_no_time_streaming_divides_as_go_does(events, expected):
    # float64(n) / 0 in Go: +Inf, or NaN for 0 / 0.
    assert note(events, 0.001, 0.0) == f"\n\n!note {expected} tok/s, {events} toks, 1ms"
