"""Comms configuration and secret sealing: errors name the key path; sealed secrets detect tampering."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeblue.comms.config import load_config, parse_config
from codeblue.comms.crypto import seal, unseal
from codeblue.errors import Invalid


def test_config_defaults_follow_the_seed() -> None:
    cfg = parse_config({})
    items = {i.audience: i for i in cfg.items_for("SEV2")}
    assert (items["internal"].after, items["internal"].every, items["internal"].within) == ("opened", 600, 600)
    assert items["status_page"].after == "impact_confirmed"
    assert items["support"].after == "mitigation_chosen"
    assert items["executive"].after == "scope_and_eta"


def test_config_overrides_per_severity_and_errors_name_the_path(tmp_path: Path) -> None:
    cfg = parse_config({"cadence": {"default": {"internal": {"every": "15m"}}, "SEV1": {"internal": {"every": "5m"},
                                                                                        "executive": "off"}}})
    assert {i.audience: i.every for i in cfg.items_for("SEV1")}["internal"] == 300
    assert "executive" not in {i.audience for i in cfg.items_for("SEV1")}
    assert {i.audience: i.within for i in cfg.items_for("SEV3")}["internal"] == 900
    with pytest.raises(Invalid) as e:
        parse_config({"cadence": {"SEV9": {}}})
    assert e.value.field == "comms.cadence.SEV9"
    with pytest.raises(Invalid) as e:
        parse_config({"cadence": {"default": {"internal": {"every": "soon"}}}})
    assert e.value.field == "comms.cadence.default.internal.every"
    with pytest.raises(Invalid) as e:
        parse_config({"audiences": {"press": ["slack"]}})
    assert e.value.field == "comms.audiences.press"
    bad = tmp_path / "comms.yaml"
    bad.write_text("channels:\n  - name: slack\n    url: [unclosed\n")
    with pytest.raises(Invalid) as e:
        load_config(bad)
    assert "line" in e.value.detail


def test_sealed_secrets_round_trip_and_detect_tampering() -> None:
    key = b"k" * 32
    sealed = seal(key, b"hunter2")
    assert "hunter2" not in sealed and unseal(key, sealed) == b"hunter2"
    assert seal(key, b"hunter2") != sealed  # fresh nonce each time
    with pytest.raises(ValueError):
        unseal(b"other-key", sealed)
    prefix, payload = sealed.split(":")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(ValueError):
        unseal(key, f"{prefix}:{flipped}")
