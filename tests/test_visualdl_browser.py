"""The monitoring page works in a real browser: after a short training run, `visualdl --logdir
RUN/visualdl` is opened in headless Chromium and every scalar tag the run wrote must be drawn as a
chart with data on the Scalars page. Skips when Chromium is not installed (apt-get install
chromium); see docs/monitoring.md."""
import struct

from conftest import load_tool, tiny_config  # `data` and `chromium` come from conftest too

vc = load_tool("visualdl_check")


def test_scalars_page_shows_run_tags(chromium, data, tmp_path):
    from vinocr.engine.trainer import Trainer

    run = tmp_path / "run"
    Trainer(tiny_config(data, run, epochs=2, visualdl=True)).fit()

    result = vc.check_dashboard(run, out_dir=tmp_path / "check", timeout=60, chromium=chromium)
    report = vc.format_result(result)
    print(report)
    for tag in ("train/loss", "train/lr", "gradients/total_norm", "val/seq_acc", "val/char_acc",
                "val/ned"):
        assert tag in result.expected, (tag, report)   # the run really wrote them
    assert result.ok, report                           # ...and each one is a chart with data
    assert result.charts["val/seq_acc"] >= 2, report   # one point per epoch
    # The tag-group headings show how many charts each group holds.
    groups = {}
    for tag in result.expected:
        groups[tag.split("/")[0]] = groups.get(tag.split("/")[0], 0) + 1
    assert result.groups == groups, report
    assert not [e for e in result.console_errors if e.startswith("exception")], report
    png = result.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, report
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height >= 1000, (width, height)
