"""The settings registry: option descriptions (OptionInfo), sections and categories, and the Options store behind config.json.

`component` of an OptionInfo is a Gradio component class (extensions pass those) or the name of one, e.g. "Slider"
(engine-side templates cannot import gradio); the settings page resolves a name with getattr(gradio, name).
`component_args` is a dict or a function returning one, called when the settings page is built.
"""
import json
import logging
import os
import threading
from collections import ChainMap
from dataclasses import dataclass

from modules import paths_internal
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before='', comment_after='', infotext=None, restrict_api=False, category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.category_id = category_id
        self.refresh = refresh
        self.do_not_save = False
        self.comment_before = comment_before
        """HTML shown before the option's label in the settings page."""
        self.comment_after = comment_after
        """HTML shown after the option's label in the settings page."""
        self.infotext = infotext
        """The infotext key this option is written under and read back from, if any."""
        self.restrict_api = restrict_api
        """True: the API may not change this option (it would let a remote client do something unsafe)."""
        self.stays_in_data_dir = False
        """True: a path the server writes under; it must stay inside the data folder (see `inside_data_dir`)."""

    def choices(self) -> list | None:
        """The values a Radio, Dropdown or CheckboxGroup setting offers; None when any value of its type goes."""
        if getattr(self.component, "__name__", self.component) not in ("Radio", "Dropdown", "CheckboxGroup"):
            return None
        try:
            args = self.component_args() if callable(self.component_args) else self.component_args
        except Exception:
            log.exception("Could not list the choices of setting %r", self.label)
            return None
        if not isinstance(args, dict) or args.get("allow_custom_value") or not args.get("choices"):
            return None  # no list, or an empty one that the page fills in later: nothing to check against
        return [c[1] if isinstance(c, (tuple, list)) and len(c) == 2 else c for c in args["choices"]]

    def written_under_data_dir(self):
        """Mark a folder or file-name pattern: values leading outside the data folder are refused."""
        self.stays_in_data_dir = True
        return self

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label, js_func):
        self.comment_before += f"[<a onclick='{js_func}(); return false'>{label}</a>]"
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def needs_restart(self):
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self


class OptionHTML(OptionInfo):
    """A block of text on a settings page; not a value, never saved."""

    def __init__(self, text):
        super().__init__(str(text).strip(), label='', component="HTML")
        self.do_not_save = True


def options_section(section_identifier, options_dict):
    """Put every option of `options_dict` in a section: (id, label) or (id, label, category_id)."""
    for info in options_dict.values():
        info.section = tuple(section_identifier[0:2])
        if len(section_identifier) == 3:
            info.category_id = section_identifier[2]
    return options_dict


@dataclass
class OptionsCategory:
    id: str
    label: str


class OptionsCategories:
    """The groups of sections in the settings page's left column, in registration order."""

    def __init__(self):
        self.mapping: dict[str, OptionsCategory] = {}

    def register_category(self, category_id, label):
        if category_id not in self.mapping:
            self.mapping[category_id] = OptionsCategory(category_id, label)
        return category_id


categories = OptionsCategories()

# option values that differ only between int and float are the same kind of value (sliders give floats)
typemap = {int: float}


def same_type(x, y) -> bool:
    if x is None or y is None:
        return True
    return typemap.get(type(x), type(x)) == typemap.get(type(y), type(y))


def inside_data_dir(path: str) -> bool:
    """Whether `path` (a relative one taken from the data folder) stays inside the data folder. Lexical: a link that
    the owner made inside the data folder may lead elsewhere, a value sent by a client may not."""
    root = os.path.normpath(os.path.abspath(paths_internal.data_path))
    try:
        return os.path.commonpath([root, os.path.normpath(os.path.join(root, path))]) == root
    except ValueError:  # another drive
        return False


# a checkpoint is found by title, file name or hash (sd_models), not by exact choice
CHOICES_RESOLVED_ELSEWHERE = {"sd_model_checkpoint"}


class Options:
    builtin_fields = {"data", "data_labels", "restricted_opts", "typemap", "retired"}
    typemap = typemap

    def __init__(self, data_labels: dict[str, OptionInfo], restricted_opts: set[str], retired: dict | None = None):
        self.data_labels = data_labels  # the same dict as the templates: keys added to them later are seen here
        self.data = {k: v.default for k, v in data_labels.items() if not v.do_not_save}
        self.restricted_opts = restricted_opts
        self.retired = retired or {}  # settings not offered, read by extensions: their A1111 defaults

    def __setattr__(self, key, value):
        if key in Options.builtin_fields:
            return super().__setattr__(key, value)
        if key in self.data or key in self.data_labels:
            self._check_changeable(key)
            if value != getattr(self, key):
                self.check_value(key, value)
            if not self.data_labels[key].do_not_save:
                self.data[key] = value
            return None
        return super().__setattr__(key, value)

    def __getattr__(self, item):
        if item in Options.builtin_fields:
            return super().__getattribute__(item)
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        if item in self.retired:
            return self.retired[item]
        return super().__getattribute__(item)

    def _check_changeable(self, key):
        """Raise RuntimeError when the command line or the option itself forbids changing it."""
        if cmd_opts.freeze_settings:
            raise RuntimeError("changing settings is disabled (--freeze-settings)")
        info = self.data_labels.get(key)
        if info is None:
            return
        if isinstance(info.component_args, dict) and info.component_args.get("visible", True) is False:
            raise RuntimeError(f"not possible to set '{key}' because it is restricted")
        if cmd_opts.freeze_settings_in_sections and info.section and info.section[0] in _split(cmd_opts.freeze_settings_in_sections):
            raise RuntimeError(f"not possible to set '{key}' because settings in section '{info.section[0]}' are frozen")
        if cmd_opts.freeze_specific_settings and key in _split(cmd_opts.freeze_specific_settings):
            raise RuntimeError(f"not possible to set '{key}' because this setting is frozen")
        if cmd_opts.hide_ui_dir_config and key in self.restricted_opts:
            raise RuntimeError(f"not possible to set '{key}' because it is restricted (--hide-ui-dir-config)")

    def check_value(self, key, value) -> None:
        """ValueError naming the setting when it cannot take `value`: a wrong type, a choice it does not offer, a path
        leading outside the data folder. Every change goes through here (the settings page, /options,
        override_settings, X/Y/Z, pasted infotext, scripts' `opts.x = ...`)."""
        info = self.data_labels[key]
        if not same_type(info.default, value):
            raise ValueError(f"Setting {key}: {value!r} is a {type(value).__name__}, expected a {type(info.default).__name__}")
        if info.stays_in_data_dir and isinstance(value, str) and value and not inside_data_dir(value):
            raise ValueError(f"Setting {key} must name a folder inside the data directory")
        if value is None or value == info.default or key in CHOICES_RESOLVED_ELSEWHERE:
            return
        values = value if isinstance(value, list) else [value]
        choices = info.choices()
        if choices is not None and not all(v in choices for v in values) and info.refresh is not None:
            info.refresh()  # a model file added since the list was made
            choices = info.choices()
        if choices is not None and not all(v in choices for v in values):
            raise ValueError(f"Setting {key}: {value!r} is not one of its choices: {', '.join(map(str, choices))}")

    def set(self, key, value, is_api=False, run_callbacks=True) -> bool:
        """Change one option; True if it changed. A refused change (frozen, restricted, a value `check_value` refuses)
        logs why and gives False."""
        if key not in self.data_labels:
            raise KeyError(f"unknown setting: {key}")
        option = self.data_labels[key]
        old_value = self.data.get(key, option.default)
        if old_value == value or option.do_not_save:
            return False
        if is_api and option.restrict_api:
            log.warning("Setting %s cannot be changed through the API", key)
            return False
        try:
            setattr(self, key, value)
        except (RuntimeError, ValueError) as e:
            log.warning("%s", e)
            return False
        if run_callbacks and option.onchange is not None:
            try:
                option.onchange()
            except Exception:
                log.exception("Error while changing setting %s to %r; the old value is kept", key, value)
                self.data[key] = old_value
                return False
        return True

    def get_default(self, key):
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def save(self, filename):
        """Write the options as JSON (indent 4, UTF-8) through a temporary file, so a failed write never truncates the old file."""
        if cmd_opts.freeze_settings:
            raise RuntimeError("saving settings is disabled (--freeze-settings)")
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        temp_path = f"{filename}.{os.getpid()}-{threading.get_ident()}.tmp"  # same directory, so os.replace is atomic
        try:
            with open(temp_path, "w", encoding="utf8") as file:
                json.dump(self.data, file, indent=4, ensure_ascii=False)
            os.replace(temp_path, filename)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise

    def load(self, filename):
        """Read options from `filename`. Missing: defaults. Unreadable or not a JSON object: moved to <data>/tmp/, defaults.
        Values of the wrong type are dropped with a warning (their defaults apply)."""
        try:
            with open(filename, encoding="utf8") as file:
                loaded = json.load(file)
            if not isinstance(loaded, dict):
                raise ValueError(f"expected a JSON object, found {type(loaded).__name__}")
        except FileNotFoundError:
            loaded = {}
        except (OSError, ValueError) as e:
            loaded = {}
            self._move_aside(filename, e)

        self._migrate(loaded)
        for key, value in list(loaded.items()):
            info = self.data_labels.get(key)
            if info is not None and not same_type(info.default, value):
                log.warning("Ignored setting %s from %s: %r is a %s, expected %s; using the default %r",
                            key, filename, value, type(value).__name__, type(info.default).__name__, info.default)
                del loaded[key]

        self.data = {k: v.default for k, v in self.data_labels.items() if not v.do_not_save}
        self.data.update(loaded)

    @staticmethod
    def _move_aside(filename, error):
        """Keep a corrupt settings file (its bytes untouched) where the user can find it, out of the way of the next save."""
        moved_to = os.path.join(paths_internal.data_path, "tmp", os.path.basename(filename))
        try:
            os.makedirs(os.path.dirname(moved_to), exist_ok=True)
            os.replace(filename, moved_to)
        except OSError as move_error:
            log.warning("Could not read settings file %s (%s), and could not move it to %s (%s); using default settings",
                        filename, error, moved_to, move_error)
            return
        log.warning("Could not read settings file %s (%s); it was moved to %s and default settings are used", filename, error, moved_to)

    @staticmethod
    def _migrate(loaded):
        """Settings renamed by A1111 versions that users' config.json files may still have."""
        if loaded.get("sd_vae_as_default") is not None and loaded.get("sd_vae_overrides_per_model_preferences") is None:
            loaded["sd_vae_overrides_per_model_preferences"] = not loaded["sd_vae_as_default"]
        if isinstance(loaded.get("quicksettings"), str) and loaded.get("quicksettings_list") is None:
            loaded["quicksettings_list"] = [item.strip() for item in loaded["quicksettings"].split(",") if item.strip()]

    def onchange(self, key, func, call=True):
        self.data_labels[key].onchange = func
        if call:
            func()

    def add_option(self, key, info):
        """Register an option after start-up (extensions); a value already loaded from config.json is kept."""
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default

    def dumpjson(self):
        """Every option's value, plus the comments and section categories the settings page's script reads."""
        d = {k: self.data.get(k, v.default) for k, v in self.data_labels.items()}
        d["_comments_before"] = {k: v.comment_before for k, v in self.data_labels.items() if v.comment_before}
        d["_comments_after"] = {k: v.comment_after for k, v in self.data_labels.items() if v.comment_after}
        section_categories = {}
        for info in self.data_labels.values():
            if info.section is None or info.section[0] is None:
                continue
            category = categories.mapping.get(info.category_id)
            section_categories.setdefault(info.section[1], "Uncategorized" if category is None else category.label)
        d["_categories"] = [[section, category] for section, category in section_categories.items()] + [["Defaults", "Other"]]
        return json.dumps(d, default=str)

    def reorder(self):
        """Order options by category (registration order), then by section label; a section takes its first option's category."""
        section_category = {}
        for info in self.data_labels.values():
            section_category.setdefault(info.section, info.category_id)
        for info in self.data_labels.values():
            info.category_id = section_category.get(info.section)
        category_order = {category_id: i for i, category_id in enumerate(categories.mapping)}

        def sort_key(item):
            info = item[1]
            section_label = info.section[1] if info.section and info.section[1] else ""
            return category_order.get(info.category_id, len(category_order)), section_label

        self.data_labels = dict(sorted(self.data_labels.items(), key=sort_key))

    def cast_value(self, key, value):
        """`value` (e.g. a string from infotext or override_settings) converted to the type of the option's default."""
        if value is None:
            return None
        default_value = self.data_labels[key].default
        if default_value is None:
            default_value = getattr(self, key, None)
        if default_value is None:
            return None
        expected_type = type(default_value)
        if expected_type is bool and value == "False":
            return False
        return expected_type(value)


class LayeredOptions(Options):
    """Settings seen through a layer of changes (a job's override_settings and whatever code running for the job
    writes): reads fall through the layer to `saved`, writes land in the layer, so `saved` never changes. `saved` may
    itself be layered (a script's sub-job over its job). Saving, loading and registering options act on the store
    underneath: a layer is never written to config.json."""

    def __init__(self, saved: Options, layer: dict | None = None):
        object.__setattr__(self, "saved", saved)
        object.__setattr__(self, "layer", dict(layer or {}))

    @property
    def data(self):
        return ChainMap(self.layer, self.saved.data)

    @property
    def data_labels(self):
        return self.saved.data_labels

    @property
    def restricted_opts(self):
        return self.saved.restricted_opts

    @property
    def retired(self):
        return self.saved.retired

    def save(self, filename):
        self.saved.save(filename)

    def load(self, filename):
        self.saved.load(filename)

    def add_option(self, key, info):
        self.saved.add_option(key, info)

    def reorder(self):
        self.saved.reorder()


def _split(comma_separated: str) -> list[str]:
    return [item.strip() for item in comma_separated.split(",")]
