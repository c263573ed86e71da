"""script_callbacks: registration remembers the registering file, removal by file or function, and invokers that log
a failing callback and go on with the others."""
from __future__ import annotations

import logging
import os

import pytest

from modules import script_callbacks as sc, scripts


@pytest.fixture(autouse=True)
def no_callbacks():
    sc.clear_callbacks()
    yield
    sc.clear_callbacks()


def test_registration_records_the_script_file_and_a_unique_name():
    def on_loaded(model):
        pass

    sc.on_model_loaded(on_loaded)
    sc.on_model_loaded(on_loaded, name="again")
    sc.on_model_loaded(on_loaded)
    callbacks = sc.callback_map["callbacks_model_loaded"]
    assert [c.script for c in callbacks] == [os.path.abspath(__file__)] * 3
    assert [c.name for c in callbacks] == ["base/test_callbacks.py/model_loaded", "base/test_callbacks.py/model_loaded/again",
                                           "base/test_callbacks.py/model_loaded-1"]
    assert all(c.callback is on_loaded for c in callbacks)


def test_every_kind_fires_with_its_arguments():
    seen = []
    registrations = {
        sc.on_app_started: (sc.app_started_callback, ("demo", "app")),
        sc.on_before_reload: (sc.app_reload_callback, ()),
        sc.on_model_loaded: (sc.model_loaded_callback, ("model",)),
        sc.on_ui_train_tabs: (sc.ui_train_tabs_callback, (sc.UiTrainTabParams("preview"),)),
        sc.on_ui_settings: (sc.ui_settings_callback, ()),
        sc.on_before_image_saved: (sc.before_image_saved_callback, (sc.ImageSaveParams("im", None, "f.png", {}),)),
        sc.on_image_saved: (sc.image_saved_callback, (sc.ImageSaveParams("im", None, "f.png", {}),)),
        sc.on_extra_noise: (sc.extra_noise_callback, (sc.ExtraNoiseParams(1, 2, 3),)),
        sc.on_cfg_denoiser: (sc.cfg_denoiser_callback, (sc.CFGDenoiserParams(1, None, 0.5, 0, 4, "c", "u"),)),
        sc.on_cfg_denoised: (sc.cfg_denoised_callback, (sc.CFGDenoisedParams(1, 0, 4, "unet"),)),
        sc.on_cfg_after_cfg: (sc.cfg_after_cfg_callback, (sc.AfterCFGCallbackParams(1, 0, 4),)),
        sc.on_image_grid: (sc.image_grid_callback, (sc.ImageGridLoopParams([], 1, 1),)),
        sc.on_infotext_pasted: (sc.infotext_pasted_callback, ("text", {"Steps": "20"})),
        sc.on_script_unloaded: (sc.script_unloaded_callback, ()),
        sc.on_before_ui: (sc.before_ui_callback, ()),
        sc.on_before_token_counter: (sc.before_token_counter_callback, (sc.BeforeTokenCounterParams("p", 20, []),)),
    }
    for register, (fire, args) in registrations.items():
        register(lambda *a, _name=register.__name__, **k: seen.append((_name, a, k)))
        fire(*args)
    assert [(name, args) for name, args, _ in seen] == [(r.__name__, a) for r, (_, a) in registrations.items()]
    sc.on_before_component(lambda component, **kwargs: seen.append(("before", component, kwargs)))
    sc.on_after_component(lambda component, **kwargs: seen.append(("after", component, kwargs)))
    sc.before_component_callback("box", elem_id="x")
    sc.after_component_callback("box", elem_id="x")
    assert seen[-2:] == [("before", "box", {"elem_id": "x"}), ("after", "box", {"elem_id": "x"})]


def test_list_callbacks_collect_into_one_list_and_ui_tabs_are_flattened():
    sc.on_list_optimizers(lambda res: res.append("sdp"))
    sc.on_list_optimizers(lambda res: res.extend(["xformers", "sub-quadratic"]))
    sc.on_list_unets(lambda res: res.append("trt"))
    sc.on_ui_tabs(lambda: [("blocks1", "One", "one")])
    sc.on_ui_tabs(lambda: None)  # a callback that adds no tab
    sc.on_ui_tabs(lambda: [("blocks2", "Two", "two"), ("blocks3", "Three", "three")])
    assert sc.list_optimizers_callback() == ["sdp", "xformers", "sub-quadratic"]
    assert sc.list_unets_callback() == ["trt"]
    assert sc.ui_tabs_callback() == [("blocks1", "One", "one"), ("blocks2", "Two", "two"), ("blocks3", "Three", "three")]


def test_a_failing_callback_is_logged_with_its_file_and_the_others_run(caplog):
    ran = []

    def broken(model):
        raise ValueError("broken callback")

    sc.on_model_loaded(broken)
    sc.on_model_loaded(lambda model: ran.append(model))
    with caplog.at_level(logging.ERROR, logger="modules.script_callbacks"):
        sc.model_loaded_callback("m")
    assert ran == ["m"]
    [record] = caplog.records
    assert record.getMessage() == f"Error executing callback model_loaded for {os.path.abspath(__file__)}"
    assert "ValueError: broken callback" in record.exc_text


def test_remove_current_script_callbacks_removes_only_the_callers(tmp_path):
    other = tmp_path / "other_script.py"
    other.write_text("from modules import script_callbacks\n"
                     "script_callbacks.on_ui_settings(lambda: None)\n"
                     "script_callbacks.on_before_ui(lambda: None)\n", encoding="utf8")
    scripts.load_module(str(other))  # as a script file is loaded
    sc.on_ui_settings(lambda: None)
    sc.remove_current_script_callbacks()
    assert [c.script for c in sc.callback_map["callbacks_ui_settings"]] == [str(other)]
    assert [c.script for c in sc.callback_map["callbacks_before_ui"]] == [str(other)]
    sc.clear_callbacks()
    assert not any(sc.callback_map.values())


def test_remove_callbacks_for_function():
    def keep():
        pass

    def drop():
        pass

    sc.on_before_ui(keep)
    sc.on_before_ui(drop)
    sc.on_script_unloaded(drop)
    sc.remove_callbacks_for_function(drop)
    assert [c.callback for c in sc.callback_map["callbacks_before_ui"]] == [keep]
    assert sc.callback_map["callbacks_script_unloaded"] == []
