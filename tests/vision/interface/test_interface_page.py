"""The written page: schema and shapes of the embedded data, offline-only HTML, atomic writing (runs without a
browser)."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from xrl.vision.interface import read_page_data, validate_page_data, write_page
from xrl.vision.interface.page import SCHEMA, render_html



def test_schema_and_shapes(tiny_page, tiny_data, tiny):
    path, timing = tiny_page
    validate_page_data(tiny_data, folder=path.parent)
    d = tiny_data
    assert d["schema"] == SCHEMA
    assert d["agent"]["env_id"] == "breakout" and d["agent"]["obs_shape"] == [4, 10, 10]
    assert d["agent"]["action_names"] == ["NOOP", "LEFT", "RIGHT"]
    assert [layer["name"] for layer in d["layers"]] == tiny["layers"]
    assert d["default_layer"] == "embedder.block2"                    # the middle of the two (index len // 2)
    assert [layer["activation_shape"] for layer in d["layers"]] == [[16, 5, 5], [32, 3, 3]]
    assert len(d["trajectories"]) == tiny["trajectories"]
    for tr in d["trajectories"]:
        assert tr["length"] == tiny["steps"] and tr["firsts"][0] is True
        assert np.allclose(np.sum(tr["probs"], 1), 1, atol=1e-5)
    for layer in d["layers"]:
        assert len(layer["features"]) == tiny["features"]
        assert all(f["thumbnail"] in d["images"] and f["dataset"] in d["images"] and f["fv"] in d["images"]
                   for f in layer["features"])
        n = layer["smoothing"]
        assert n % 2 == 1 and np.shape(layer["filter"]) == (n, n)
    marks = d["bookmarks"]["high"] + d["bookmarks"]["low"]
    assert 1 <= len(d["bookmarks"]["high"]) <= 16 and len(marks) <= 32
    for b in d["bookmarks"]["high"]:                                   # a local maximum of the advantage
        adv = d["trajectories"][b["trajectory"]]["advantages"]
        assert b["advantage"] == pytest.approx(adv[b["frame"]], rel=1e-6) and b["advantage"] > 0
    assert set(timing) >= {"rollouts", "nmf", "attribution", "dataset_examples", "feature_visualization", "writing",
                           "nmf_per_layer", "output_bytes", "total"}
    assert timing["output_bytes"] == sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())


def test_bookmarks_one_per_episode_and_sorted():
    from xrl.vision.interface.page import bookmarks

    adv = np.array([[0.1, 3.0, -1.0, 2.0, 0.5, -4.0], [1.0, -0.5, 0.2, 0.3, -0.1, 0.0]])
    dones = np.array([[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool)   # episodes [0..2], [3..5]; [0..5]
    got = bookmarks(adv, dones)
    assert [(b["trajectory"], b["frame"]) for b in got["high"]] == [(0, 1), (0, 3), (1, 0)]
    assert [(b["trajectory"], b["frame"]) for b in got["low"]] == [(0, 5), (0, 2), (1, 1)]
    assert got["low"][0]["advantage"] == -4.0


def test_html_is_offline_only(tiny_page):
    html = tiny_page[0].read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    policy = csp.group(1).replace("&#x27;", "'")
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy
    assert "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy
    code = re.sub(r'<script type="application/json".*?</script>', "", html, flags=re.S)   # the page, not its data
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", code)
    assert "@import" not in code and not re.search(r"url\(\s*['\"]?https?:", code)
    assert "fetch(" not in code and "XMLHttpRequest" not in code
    assert html.count("<script") == 2                                    # the data block and the app, both inline


def test_validation_names_the_problem(tiny_data):
    bad = copy.deepcopy(tiny_data)
    bad["trajectories"][1]["values"] = bad["trajectories"][1]["values"][:-3]
    bad["attribution"]["items"]["embedder.block1"][0]["value"]["shape"][1] = 7
    del bad["images"][bad["trajectories"][0]["frames"]]
    with pytest.raises(ValueError) as err:
        validate_page_data(bad)
    text = str(err.value)
    assert "trajectories[1].values: expected 48 entries" in text
    assert "attribution embedder.block1/0/value.shape" in text
    assert "frame images missing" in text
    with pytest.raises(ValueError, match="schema"):
        validate_page_data({"schema": "something else"})


def test_page_data_roundtrip_and_no_script_breakout(tiny_data, tmp_path):
    """Text that looks like HTML inside the data cannot end the data block."""
    data = copy.deepcopy(tiny_data)
    images = {k: b"" for k in data.pop("images")}
    data["agent"]["action_names"] = ["</script><script>alert(1)</script>", "LEFT", "RIGHT"]
    html = render_html({**data, "images": {k: "data:image/png;base64," for k in images}})
    assert html.count("</script>") == 2
    (tmp_path / "index.html").write_text(html, encoding="utf-8")
    assert read_page_data(tmp_path)["agent"]["action_names"][0] == "</script><script>alert(1)</script>"


def test_existing_folder_needs_overwrite_and_failed_writes_leave_nothing(tiny_data, tmp_path, monkeypatch):
    from xrl.vision.interface import page as page_module

    data = copy.deepcopy(tiny_data)
    refs = data.pop("images")
    images = {k: b"\x89PNG fake" for k in refs}
    out = tmp_path / "page"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already exists and is not empty; pass overwrite=True \(--overwrite\)"):
        write_page(out, data, images)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # an error while writing: the folder keeps its previous content, no temporary folder is left behind
    monkeypatch.setattr(page_module, "render_html", lambda d: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        write_page(tmp_path / "fresh", data, images)
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page"]
    monkeypatch.undo()
    # images beside index.html for large runs
    path = write_page(tmp_path / "external", data, images, inline_images=False)
    got = read_page_data(path)
    assert all(ref.startswith("images/") for ref in got["images"].values())
    validate_page_data(got, folder=path.parent)
    assert len(list((path.parent / "images").glob("*.png"))) == len(images)
