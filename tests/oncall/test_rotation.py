"""Rotations, layers, restrictions and overrides as pure computation (zoneinfo, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from codeblue.oncall.config import build_layers
from codeblue.oncall.rotation import Override, final_schedule, on_call

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def who(layers: list[dict[str, object]], t: float, tz: ZoneInfo, overrides: list[Override] | None = None) -> str | None:
    hit = on_call(build_layers(layers), overrides or [], t, tz)
    return hit.handle if hit else None


WEEKLY_NY = {"name": "primary", "rotation": "weekly", "handoff": "09:00", "start": "2026-03-02",
             "members": ["al", "bea", "cy"]}


def test_weekly_rotation_hands_off_at_local_time_across_spring_forward() -> None:
    # New York springs forward on Sunday 2026-03-08. The Monday 09:00 hand-off on 2026-03-09 is 13:00 UTC
    # (EDT), not 14:00 UTC as a fixed 7×24 h rotation would have it.
    assert who([WEEKLY_NY], utc(2026, 3, 2, 14, 0), NY) == "al"
    assert who([WEEKLY_NY], utc(2026, 3, 2, 13, 59), NY) is None  # before the first hand-off
    assert who([WEEKLY_NY], utc(2026, 3, 9, 12, 59), NY) == "al"
    assert who([WEEKLY_NY], utc(2026, 3, 9, 13, 0), NY) == "bea"
    assert who([WEEKLY_NY], utc(2026, 3, 9, 13, 30), NY) == "bea"
    assert who([WEEKLY_NY], utc(2026, 3, 16, 13, 0), NY) == "cy"
    assert who([WEEKLY_NY], utc(2026, 3, 23, 13, 0), NY) == "al"
    hit = on_call(build_layers([WEEKLY_NY]), [], utc(2026, 3, 5), NY)
    assert hit is not None
    # The week containing the change is one hour short.
    assert hit.shift_end - hit.shift_start == 7 * 86400 - 3600


def test_weekly_rotation_across_fall_back() -> None:
    # New York falls back on Sunday 2026-11-01; hand-offs stay at 09:00 local: 13:00 UTC before, 14:00 UTC after.
    layer = {**WEEKLY_NY, "start": "2026-10-26", "members": ["al", "bea"]}
    assert who([layer], utc(2026, 10, 26, 13, 0), NY) == "al"
    assert who([layer], utc(2026, 11, 2, 13, 30), NY) == "al"  # 08:30 EST: still al's week
    assert who([layer], utc(2026, 11, 2, 14, 0), NY) == "bea"
    hit = on_call(build_layers([layer]), [], utc(2026, 10, 30), NY)
    assert hit is not None and hit.shift_end - hit.shift_start == 7 * 86400 + 3600


def test_daily_rotation_in_berlin_across_dst() -> None:
    # Berlin springs forward on 2026-03-29 at 02:00; a 08:00 hand-off is 07:00 UTC before and 06:00 UTC after.
    layer = {"rotation": "daily", "handoff": "08:00", "start": "2026-03-27", "members": ["a", "b", "c"]}
    assert who([layer], utc(2026, 3, 27, 7, 0), BERLIN) == "a"
    assert who([layer], utc(2026, 3, 28, 7, 0), BERLIN) == "b"
    assert who([layer], utc(2026, 3, 29, 5, 59), BERLIN) == "b"  # 07:59 CEST
    assert who([layer], utc(2026, 3, 29, 6, 0), BERLIN) == "c"  # 08:00 CEST
    assert who([layer], utc(2026, 3, 29, 6, 30), BERLIN) == "c"  # a fixed 24 h rotation would still say b


def test_custom_rotation_whole_days_and_hours() -> None:
    three_days = {"rotation": "custom", "length": "3d", "handoff": "09:00", "start": "2026-03-06", "members": ["x", "y"]}
    # x holds 2026-03-06 09:00 EST .. 2026-03-09 09:00 EDT; the DST change is inside the shift.
    assert who([three_days], utc(2026, 3, 9, 12, 59), NY) == "x"
    assert who([three_days], utc(2026, 3, 9, 13, 0), NY) == "y"
    twelve_hours = {"rotation": "custom", "length": "12h", "handoff": "08:00", "start": "2026-03-07",
                    "members": ["day", "night"]}
    # Elapsed-time rotations run in real hours: after the lost hour the hand-offs land at 09:00/21:00 local.
    assert who([twelve_hours], utc(2026, 3, 7, 13, 0), NY) == "day"
    assert who([twelve_hours], utc(2026, 3, 8, 0, 59), NY) == "day"
    assert who([twelve_hours], utc(2026, 3, 8, 1, 0), NY) == "night"
    assert who([twelve_hours], utc(2026, 3, 8, 13, 0), NY) == "day"


def test_higher_layer_overrides_lower_only_where_it_has_someone() -> None:
    base = {"name": "base", "rotation": "weekly", "handoff": "09:00", "start": "2026-03-02", "members": ["al", "bea"]}
    business = {"name": "business hours", "rotation": "daily", "handoff": "09:00", "start": "2026-03-02",
                "members": ["dee", "eve"], "restrict": [{"days": ["mon", "tue", "wed", "thu", "fri"],
                                                          "start": "09:00", "end": "17:00"}]}
    layers = [base, business]
    assert who(layers, utc(2026, 3, 3, 15, 0), NY) == "eve"  # Tue 10:00 EST: the business-hours layer
    assert who(layers, utc(2026, 3, 3, 23, 0), NY) == "al"  # Tue 18:00: falls through to the base
    assert who(layers, utc(2026, 3, 7, 15, 0), NY) == "al"  # Saturday: base
    hit = on_call(build_layers(layers), [], utc(2026, 3, 3, 15, 0), NY)
    assert hit is not None and hit.layer == "business hours"


def test_overnight_restriction() -> None:
    nights = {"rotation": "weekly", "handoff": "09:00", "start": "2026-03-02", "members": ["owl"],
              "restrict": [{"days": ["fri"], "start": "22:00", "end": "06:00"}]}
    assert who([nights], utc(2026, 3, 7, 4, 0), NY) == "owl"  # Fri 23:00 EST
    assert who([nights], utc(2026, 3, 7, 10, 0), NY) == "owl"  # Sat 05:00 EST
    assert who([nights], utc(2026, 3, 7, 12, 0), NY) is None  # Sat 07:00
    assert who([nights], utc(2026, 3, 6, 4, 0), NY) is None  # Thu 23:00


def test_override_takes_precedence_and_latest_override_wins() -> None:
    t = utc(2026, 3, 10, 15, 0)
    assert who([WEEKLY_NY], t, NY) == "bea"
    swap = Override(1, "zed", utc(2026, 3, 10, 0, 0), utc(2026, 3, 11, 0, 0))
    assert who([WEEKLY_NY], t, NY, [swap]) == "zed"
    later = Override(2, "yan", utc(2026, 3, 10, 12, 0), utc(2026, 3, 10, 18, 0))
    assert who([WEEKLY_NY], t, NY, [swap, later]) == "yan"
    assert who([WEEKLY_NY], utc(2026, 3, 11, 0, 0), NY, [swap, later]) == "bea"  # the end is exclusive


def test_final_schedule_segments_merge_layers_and_overrides() -> None:
    layers = build_layers([WEEKLY_NY])
    swap = Override(7, "zed", utc(2026, 3, 10, 0, 0), utc(2026, 3, 11, 0, 0))
    segs = final_schedule(layers, [swap], utc(2026, 3, 8), utc(2026, 3, 17), NY)
    assert [(s["handle"], s["source"]) for s in segs] == [
        ("al", "primary"), ("bea", "primary"), ("zed", "override"), ("bea", "primary"), ("cy", "primary"),
    ]
    assert segs[1]["start"] == utc(2026, 3, 9, 13, 0)
    assert segs[-1]["start"] == utc(2026, 3, 16, 13, 0)
    assert segs[-1]["end"] == utc(2026, 3, 17)


def test_layer_until_ends_it() -> None:
    temp = {"name": "cover", "rotation": "daily", "handoff": "00:00", "start": "2026-03-02", "members": ["tmp"],
            "until": "2026-03-05T00:00:00-05:00"}
    layers = [WEEKLY_NY, temp]
    assert who(layers, utc(2026, 3, 4, 12, 0), NY) == "tmp"
    assert who(layers, utc(2026, 3, 5, 12, 0), NY) == "al"
    # the model types survive the round trip
    built = build_layers([temp])[0]
    assert built.start == date(2026, 3, 2) and built.handoff == time(0, 0)
