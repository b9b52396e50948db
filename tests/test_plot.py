"""`report --plot`: a real PNG or SVG, checked by size and type; a clear
message without matplotlib."""

import struct
import xml.etree.ElementTree as ET

import pytest

from test_recordfile import synth


@pytest.fixture(scope="module")
def rec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("plot") / "r.data"
    synth(p, n=20)
    return str(p)


def test_png(rec_file, run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.png"
    r = run_cli("report", rec_file, "--plot", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""           # only the picture without --format
    assert r.stderr == "sysretstat: wrote %s\n" % out
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 1100)
    # Three panels of lines, bars and text: far more than a blank image.
    assert len(data) > 40000


def test_svg_with_text_report(rec_file, run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.svg"
    r = run_cli("report", rec_file, "--plot", out, "--format", "text",
                "--by", "reason")
    assert r.returncode == 0, r.stderr
    assert "IRET reasons" in r.stdout
    root = ET.parse(str(out)).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # One axes group per panel (plus the twin axis of the time series).
    axes = [g for g in root.iter("{http://www.w3.org/2000/svg}g")
            if (g.get("id") or "").startswith("axes_")]
    assert len(axes) == 4
    assert out.stat().st_size > 40000


def test_bad_extension(rec_file, run_cli, tmp_path):
    r = run_cli("report", rec_file, "--plot", tmp_path / "r.jpg")
    assert r.returncode == 2
    assert r.stderr == ("sysretstat: error: --plot FILE must end in .png "
                        "or .svg: %s\n" % (tmp_path / "r.jpg"))


def test_without_matplotlib(rec_file, run_cli, tmp_path):
    # A matplotlib that cannot be imported, first on the path.
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    from conftest import ROOT
    r = run_cli("report", rec_file, "--plot", tmp_path / "r.png",
                env={"PYTHONPATH": "%s:%s" % (fake.parent, ROOT)})
    assert r.returncode == 1
    assert r.stderr == ("sysretstat: error: --plot needs matplotlib: pip "
                        "install 'sysretstat[plot]' (or: apt install "
                        "python3-matplotlib)\n")
    assert not (tmp_path / "r.png").exists()
