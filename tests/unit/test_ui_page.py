"""The page's login list and assets (style.css, javascript/*.js with the helpers first)."""
import re

import pytest

from modules import paths_internal, ui
from modules.shared_cmd_options import cmd_opts


@pytest.fixture
def no_auth(monkeypatch):
    monkeypatch.setattr(cmd_opts, "gradio_auth", None)
    monkeypatch.setattr(cmd_opts, "gradio_auth_path", None)
    monkeypatch.setattr(cmd_opts, "theme", None)


def test_logins_from_flag_and_file(no_auth, monkeypatch, tmp_path):
    assert ui.gradio_auth() is None
    logins = tmp_path / "logins.txt"
    logins.write_text("carol:c:with:colons\n\n dave:d , erin:e\n", encoding="utf8")
    monkeypatch.setattr(cmd_opts, "gradio_auth", "alice:a,bob:b")
    monkeypatch.setattr(cmd_opts, "gradio_auth_path", str(logins))
    assert ui.gradio_auth() == [("alice", "a"), ("bob", "b"), ("carol", "c:with:colons"), ("dave", "d"), ("erin", "e")]


def test_login_without_password_is_refused(no_auth, monkeypatch):
    monkeypatch.setattr(cmd_opts, "gradio_auth", "alice:a,bob")
    with pytest.raises(ValueError, match="UI logins must be written user:password; got bob"):
        ui.gradio_auth()


def test_assets_hold_the_css_and_every_script_helpers_first(no_auth, monkeypatch, tmp_path):
    monkeypatch.setattr(paths_internal, "data_path", str(tmp_path))
    (tmp_path / "user.css").write_text("#user-rule { color: red }", encoding="utf8")
    assets = ui.page_assets()
    with open(f"{paths_internal.script_path}/style.css", encoding="utf8") as file:
        assert assets["css"].startswith(file.read())
    assert assets["css"].endswith("#user-rule { color: red }")
    scripts = re.findall(r"<script>\n(.*?)\n</script>", assets["head"], re.S)
    assert len(scripts) >= 3
    assert "function onUiUpdate(callback)" in scripts[0]  # ui.js: the others call it while loading
    assert any("function searchSettings(text)" in script for script in scripts[1:])
    monkeypatch.setattr(cmd_opts, "theme", "dark")
    assert ui.page_assets()["head"].startswith('<script>\nwindow.atelierForcedTheme = "dark";\n</script>')


@pytest.mark.parametrize("setting, theme", [("Soft", "Soft"), ("Monochrome", "Monochrome"), ("Default", "Default"),
                                            ("gradio/nonexistent", "Default")])
def test_the_gradio_theme_setting_picks_the_pages_theme(no_auth, monkeypatch, setting, theme):
    from modules.shared_options import opts

    monkeypatch.setitem(opts.data, "gradio_theme", setting)
    assert type(ui.page_assets()["theme"]).__name__ == theme
