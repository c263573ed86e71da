"""The Extensions tab (A1111's modules.ui_extensions): Installed, Available, Install from URL and Backup/Restore; and what active
extensions add to the page (javascript/*.js, style.css, the chosen localization).

Every change goes through modules.extensions, which refuses it when the server is reachable from the network
(check_access). The enable and update checkboxes of the Installed table are plain HTML, read by
javascript/extensions.js when "Apply and restart UI" is pressed, as in A1111.
"""
from __future__ import annotations

import datetime
import html
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request

import gradio as gr

from modules import (
    call_queue,
    config_states,
    extensions,
    extensions_index,
    localization,
)
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

DEFAULT_INDEX_URL = "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"
INDEX_TIMEOUT_S = 15
CURRENT_STATE = "Current"
RESTORE_TYPES = ["extensions", "webui", "both"]


# what extensions add to the page

def _read(path: str) -> str:
    with open(path, encoding="utf8") as file:
        return file.read()


def _script_tag(code: str) -> str:
    code = code.replace("</script", "<\\/script")  # the code must not end its own <script> element
    return f"<script>\n{code}\n</script>"


def _module_tag(path: str) -> str:
    """A JavaScript module loads from its file= URL (as in A1111), so its relative imports find its neighbours."""
    return f"<script type='module' src='file={html.escape(os.path.abspath(path))}?{int(os.path.getmtime(path))}'></script>"


def extension_page_assets() -> dict:
    """{"css", "head"} of the active extensions, in their order: their style.css, their javascript/*.js and *.mjs (sorted),
    and the chosen localization as `window.localization`; the page puts them after its own."""
    css, head = [], []
    localization.list_localizations(cmd_opts.localizations_dir)
    translation = localization.localization_js(opts.localization)
    if translation:
        head.append(_script_tag(translation))
    for ext in extensions.active():
        style = os.path.join(ext.path, "style.css")
        if os.path.isfile(style):
            css.append(f"/* {ext.name} */\n{_read(style)}")
        scripts = ext.list_files("javascript", ".js") + ext.list_files("javascript", ".mjs")
        for file in sorted(scripts, key=lambda f: f.filename):
            head.append(_module_tag(file.path) if file.filename.endswith(".mjs") else _script_tag(_read(file.path)))
    return {"css": "\n".join(css), "head": "".join(head)}


# Installed

def _date(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def disable_all_notice() -> str:
    if opts.disable_all_extensions == "none":
        return ""
    return ("<span class='extensions-notice'>\"Disable all extensions\" is set to "
            f"\"{html.escape(opts.disable_all_extensions)}\": change it to \"none\" to load all extensions again.</span>")


def extension_table() -> str:
    """The Installed table: enable checkbox + name, URL, branch, version (commit and date), update status, delete."""
    rows = []
    problems = extensions.install_problems()
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        name = html.escape(ext.name)
        url = "built-in" if ext.is_builtin else html.escape(ext.remote or "")
        update = html.escape(ext.status)
        if ext.can_update:
            update = f"<label><input type='checkbox' name='update_{name}' checked>{update}</label>"
        muted = not extensions.allowed(ext, opts.disable_all_extensions)
        delete = "" if ext.is_builtin else \
            f"<button class='extension-delete' onclick='extensionsDelete({html.escape(json.dumps(ext.name))})'>Delete</button>"
        rows.append(
            f"<tr data-extension='{name}'>"
            f"<td><label{' class=extension-muted' if muted else ''}><input type='checkbox' name='enable_{name}'"
            f"{' checked' if ext.enabled else ''}>{name}</label></td>"
            f"<td>{url}</td><td>{html.escape(ext.branch or '')}</td>"
            f"<td>{html.escape(ext.version)}</td><td>{_date(ext.commit_date)}</td>"
            f"<td class='extension_status'>{update}</td><td>{delete}</td></tr>")
        if ext.name in problems:
            rows.append(f"<tr class='extension-install-problem' data-extension='{name}'><td colspan='7'>"
                        f"{install_problem_html(ext.name, problems[ext.name])}</td></tr>")
    if not rows:
        rows.append("<tr><td colspan='7'>No extensions installed. Use the Available or Install from URL tab.</td></tr>")
    return ("<table id='extensions'><thead><tr><th title='enabled on the next start; press Apply and restart UI'>Extension</th>"
            "<th>URL</th><th>Branch</th><th>Version</th><th>Date</th>"
            "<th title='checked: updated by Apply and restart UI'>Update</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def install_problem_html(name: str, problem: str) -> str:
    return (f"<span class='extension-install-problem'>⚠ The install of {html.escape(name)} did not complete: "
            f"{html.escape(problem)}.</span>")


def installed_message(target: str) -> str:
    """What an install from the Available or URL tab says: where it went, and what its install.py could not do."""
    message = f"Installed into {html.escape(target)}. Use the Installed tab to restart."
    name = os.path.basename(target)
    problem = extensions.install_problems().get(name)
    return message if problem is None else f"{message}<br>{install_problem_html(name, problem)}"


def _json_list(text: str, what: str) -> list[str]:
    value = json.loads(text or "[]")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} must be a JSON list of extension names, got {text!r}")
    return value


def apply_changes(disabled_json: str, update_json: str, disable_all: str) -> None:
    """Update the checked extensions and save which are disabled; they take effect when the UI restarts."""
    extensions.check_access()
    disabled, update = _json_list(disabled_json, "disabled"), _json_list(update_json, "update")
    if disable_all not in ("none", "extra", "all"):
        raise ValueError(f"Disable all extensions must be none, extra or all, not {disable_all!r}")
    for name in update:
        try:
            extensions.update_extension(name)
        except Exception:
            log.exception("Error updating extension %s", name)  # the others still update, the UI still restarts
    opts.disabled_extensions = disabled
    opts.disable_all_extensions = disable_all
    opts.save(cmd_opts.ui_settings_file)
    extensions.list_extensions()


def apply_from_page(disabled_json: str, update_json: str, disable_all: str) -> str:
    """Apply and restart UI, first half: a refusal is shown and stops the restart (the click's .success step)."""
    try:
        apply_changes(disabled_json, update_json, disable_all)
    except Exception as e:
        log.exception("Could not apply the extension settings")
        raise gr.Error(call_queue.error_message(e)) from e
    return "Restarting the UI..."


def check_for_updates():
    extensions.check_updates()
    return extension_table(), ""


def delete(name: str):
    path = extensions.delete_extension(name)
    return extension_table(), f"Deleted {html.escape(path)}. Restart the UI to unload it."


def refresh_installed():
    extensions.list_extensions()
    return extension_table(), disable_all_notice()


# Available

def load_index(url: str) -> dict:
    """An extension index in A1111's format ({"tags": {...}, "extensions": [{name, url, description, tags, added}]})
    from an http(s) URL, a file:// URL or a local file path; ValueError says what went wrong."""
    url = (url or "").strip()
    if not url:
        raise ValueError("No index URL specified")
    path = urllib.request.url2pathname(urllib.parse.urlparse(url).path) if url.startswith("file://") else url
    try:
        if url.startswith(("http://", "https://")):
            with urllib.request.urlopen(url, timeout=INDEX_TIMEOUT_S) as response:
                text = response.read().decode("utf8")
        else:
            text = _read(path)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise ValueError(f"Could not load the extension index from {url}: {reason}. Are you offline? "
                         "A local index file (a path or a file:// URL) works too.") from e
    except OSError as e:
        raise ValueError(f"Could not read the extension index file {path}: {e.strerror or e}") from e
    try:
        index = json.loads(text)
    except ValueError as e:
        raise ValueError(f"The extension index at {url} is not valid JSON: {e}") from e
    if not isinstance(index, dict) or not isinstance(index.get("extensions"), list):
        raise ValueError(  # noqa: TRY004  (the user's file is wrong: shown as a message like the other ValueErrors)
            f"The file at {url} is not an extension index: it needs a list named \"extensions\"")
    return index


def _tag_span(tag: str, descriptions: dict[str, str]) -> str:
    return f"<span class='extension-tag' title='{html.escape(descriptions.get(tag, ''))}'>{html.escape(tag)}</span>"


def _day(moment: datetime.datetime | None) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d") if moment else ""


def _available_row(entry: extensions_index.Entry, descriptions: dict[str, str]) -> str:
    button = ("<button disabled>Installed</button>" if entry.installed else
              f"<button class='extension-install' onclick='extensionsInstallFromIndex(this, {html.escape(json.dumps(entry.url))})'>"
              "Install</button>")
    stars = "" if entry.stars is None else f"<span class='star_count'>stars: <b>{entry.stars}</b></span>"
    return (f"<tr><td><a href='{html.escape(entry.url)}' target='_blank'>{html.escape(entry.title)}</a><br>"
            f"{', '.join(_tag_span(tag, descriptions) for tag in entry.tags)}</td>"
            f"<td>{html.escape(entry.description)}<p class='info'><span class='date_added'>Update: {_day(entry.updated)}  "
            f"Added: {html.escape(entry.added or 'unknown')}  Created: {_day(entry.created)}</span>{stars}</p></td>"
            f"<td>{button}</td></tr>")


def available_table(index: dict, tags: list[str], order: int, search: str = "", showing: str = "hide",
                    filtering: str = "or") -> str:
    """The Available table (extensions_index.available_view rendered): each shown extension with its tags, dates, stars
    and an Install button, then how many are hidden."""
    installed = extensions_index.Installed.of(extensions.extensions)
    shown, hidden = extensions_index.available_view(index, installed, tags, order, search, showing, filtering)
    descriptions = extensions_index.tag_descriptions(index)
    rows = "".join(_available_row(entry, descriptions) for entry in shown)
    hidden_note = f"<p>Extension hidden: {hidden}</p>" if hidden else ""
    return ("<table id='available_extensions'><thead><tr><th>Extension</th><th>Description</th><th>Action</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{hidden_note}")


def load_available(url: str, tags: list[str], order: int, search: str = "", showing: str = "hide", filtering: str = "or"):
    index = load_index(url)
    return (index, available_table(index, tags, order, search, showing, filtering),
            gr.update(choices=extensions_index.tag_choices(index)), "")


def install_from_index(url: str, index: dict, tags: list[str], order: int, search: str, showing: str = "hide",
                       filtering: str = "or"):
    target = extensions.install_extension_from_url(None, url)
    return available_table(index, tags, order, search, showing, filtering), extension_table(), installed_message(target)


# Install from URL

def install_from_url(dirname: str, url: str, branch: str):
    target = extensions.install_extension_from_url(dirname, url, branch)
    return "", extension_table(), installed_message(target)


# Backup/Restore

def config_state_choices() -> list[str]:
    return [CURRENT_STATE, *config_states.list_config_states()]


def refresh_config_states(selected: str):
    choices = config_state_choices()
    return gr.update(choices=choices, value=selected if selected in choices else CURRENT_STATE)


def _saved_state(name: str) -> dict:
    states = config_states.list_config_states()
    if name not in states:
        raise ValueError(f"No saved config state named {name!r}; press refresh to see the saved ones")
    return states[name]


def config_state_view(name: str) -> dict:
    """The chosen state as shown in the JSON view; "Current" is read from the folders now."""
    try:
        return config_states.get_config() if not name or name == CURRENT_STATE else _saved_state(name)
    except ValueError as e:
        raise gr.Error(str(e)) from e


def save_config_state(name: str):
    path = config_states.save_config_state(name)
    states = config_states.list_config_states()
    saved = next((key for key, state in states.items() if state["filepath"] == path), CURRENT_STATE)
    return (gr.update(choices=[CURRENT_STATE, *states], value=saved),
            f"Saved the current webui and extension state to {html.escape(path)}")


def restore_results_table(results: list[config_states.ExtensionRestore]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.status)}</td><td>{html.escape(r.old_commit[:8])}</td>"
        f"<td>{html.escape(r.new_commit[:8])}</td><td>{'yes' if r.enabled else 'no'}</td><td>{html.escape(r.message)}</td></tr>"
        for r in results)
    return ("<table id='config_state_restore_results'><thead><tr><th>Extension</th><th>Result</th><th>Was at</th>"
            f"<th>Now at</th><th>Enabled</th><th>Details</th></tr></thead><tbody>{rows}</tbody></table>")


def restore_config_state(confirmed: bool, name: str, restore_type: str):
    """Restore the chosen saved state's extensions, webui or both; the Installed table and what was done."""
    extensions.check_access()
    if not name or name == CURRENT_STATE:
        return extension_table(), "Already using the current config state."
    if not confirmed:
        return extension_table(), "Cancelled."
    if restore_type not in RESTORE_TYPES:
        raise ValueError(f"State to restore must be extensions, webui or both, not {restore_type!r}")
    state = _saved_state(name)
    parts = []
    if restore_type in ("extensions", "both"):
        parts.append(restore_results_table(config_states.restore_extension_config(state)))
    if restore_type in ("webui", "both"):
        parts.append(f"<p>{html.escape(config_states.restore_webui_config(state, reset_app_repo=True))}</p>")
    parts.append("<p>Restart the UI (Installed tab: Apply and restart UI) to load the restored state.</p>")
    return extension_table(), "".join(parts)


def create_ui() -> None:
    """The tab's content; the caller opens gr.Tab("Extensions", elem_id="tab_extensions")."""
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="installed"):
            with gr.Row(elem_id="extensions_installed_top"):
                apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply")
                check = gr.Button("Check for updates", elem_id="extensions_check_updates")
                refresh = gr.Button("Refresh", elem_id="extensions_refresh")
                disable_all = gr.Radio(label="Disable all extensions", choices=["none", "extra", "all"],
                                       value=lambda: opts.disable_all_extensions, elem_id="extensions_disable_all")
            disabled_list = gr.Textbox(visible=False, elem_id="extensions_disabled_list")
            update_list = gr.Textbox(visible=False, elem_id="extensions_update_list")
            delete_name = gr.Textbox(visible=False, elem_id="extensions_delete_name")
            delete_button = gr.Button("Delete", visible="hidden", elem_id="extensions_delete_button")
            info = gr.HTML(disable_all_notice, elem_id="extensions_installed_info")
            table = gr.HTML(extension_table, elem_id="extensions_installed_html")  # a function: fresh on every page load

        with gr.Tab("Available", id="available"):
            index_state = gr.State({"extensions": []})
            with gr.Row():
                load = gr.Button("Load from:", variant="primary", elem_id="extensions_load_available")
                index_url = gr.Textbox(value=os.environ.get("WEBUI_EXTENSIONS_INDEX", DEFAULT_INDEX_URL), show_label=False,
                                       label="Extension index URL", elem_id="extensions_index_url", max_lines=1)
            with gr.Row():
                tags = gr.CheckboxGroup(extensions_index.TAG_CHOICES, value=extensions_index.DEFAULT_TAGS,
                                        label="Extension tags", elem_id="extensions_tags")
                order = gr.Radio(extensions_index.SORT_ORDERS, value=extensions_index.SORT_ORDERS[0], type="index",
                                 label="Order", elem_id="extensions_order")
            with gr.Row():
                showing = gr.Radio(extensions_index.SHOWING_TYPES, value="hide", label="Showing type",
                                   elem_id="extensions_showing_type")
                filtering = gr.Radio(extensions_index.FILTERING_TYPES, value="or", label="Filtering type",
                                     elem_id="extensions_filtering_type")
            search = gr.Textbox(label="Search", elem_id="extensions_search", max_lines=1)
            available_result = gr.HTML(elem_id="extensions_available_result")
            available = gr.HTML(elem_id="available_extensions_html")
            to_install = gr.Textbox(visible=False, elem_id="extension_to_install")
            install_from_index_button = gr.Button("Install", visible="hidden", elem_id="install_extension_button")

        with gr.Tab("Install from URL", id="install_from_url"):
            install_url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url", max_lines=1)
            install_branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for default main branch",
                                        elem_id="extensions_install_branch", max_lines=1)
            install_dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                         elem_id="extensions_install_dirname", max_lines=1)
            install_button = gr.Button("Install", variant="primary", elem_id="extensions_install_button")
            install_result = gr.HTML(elem_id="extension_install_result")

        with gr.Tab("Backup/Restore", id="backup_restore") as backup_tab:
            with gr.Row(elem_id="extensions_backup_top_row"):
                saved_states = gr.Dropdown(label="Saved Configs", choices=config_state_choices(), value=CURRENT_STATE,
                                           elem_id="extension_backup_saved_configs")
                refresh_states = ToolButton(value="\U0001f504", elem_id="refresh_config_states")
                restore_type = gr.Radio(RESTORE_TYPES, value="extensions", label="State to restore",
                                        elem_id="extension_backup_restore_type")
                restore_confirmed = gr.Checkbox(visible=False)
                restore_button = gr.Button("Restore Selected Config", variant="primary", elem_id="extension_backup_restore")
            with gr.Row(elem_id="extensions_backup_top_row2"):
                save_name = gr.Textbox(placeholder="Config Name", show_label=False, label="Config name",
                                       elem_id="extension_backup_name", max_lines=1)
                save_button = gr.Button("Save Current Config", elem_id="extension_backup_save")
            states_info = gr.HTML(elem_id="extension_backup_info")
            state_view = gr.JSON(label="Config state", elem_id="extension_backup_state")  # filled when the tab opens

    wrap = call_queue.wrap_gradio_call
    # the restart as Settings' Reload UI does it: the page notes the build, then waits for a new one
    apply.click(fn=apply_from_page, js="extensionsApply", inputs=[disabled_list, update_list, disable_all], outputs=[info],
                show_progress="hidden").success(fn=state.request_restart, js="atelierReloadUI", show_progress="hidden")
    check.click(fn=wrap(check_for_updates, extra_outputs=[gr.skip()]), outputs=[table, info])
    refresh.click(fn=wrap(refresh_installed, extra_outputs=[gr.skip()]), outputs=[table, info], show_progress="hidden")
    delete_button.click(fn=wrap(delete, extra_outputs=[gr.skip()]), js="extensionsTakeDeleteName", inputs=[delete_name],
                        outputs=[table, info])
    view = [tags, order, search, showing, filtering]  # available_table's arguments after the index
    load.click(fn=wrap(load_available, extra_outputs=[gr.skip(), gr.skip(), gr.skip()]), inputs=[index_url, *view],
               outputs=[index_state, available, tags, available_result])
    install_from_index_button.click(fn=wrap(install_from_index, extra_outputs=[gr.skip(), gr.skip()]),
                                    js="extensionsTakeInstallUrl",
                                    inputs=[to_install, index_state, *view],
                                    outputs=[available, table, available_result])
    for control in view:  # recomputed from the loaded index: the URL is read only by Load
        control.change(fn=available_table, inputs=[index_state, *view], outputs=[available], show_progress="hidden")
    install_button.click(fn=wrap(install_from_url, extra_outputs=[gr.skip(), gr.skip()]),
                         inputs=[install_dirname, install_url, install_branch],
                         outputs=[install_url, table, install_result])
    refresh_states.click(fn=refresh_config_states, inputs=[saved_states], outputs=[saved_states], show_progress="hidden")
    for event in (saved_states.change, backup_tab.select):  # reading every extension's git state costs: not on page load
        event(fn=config_state_view, inputs=[saved_states], outputs=[state_view], show_progress="hidden")
    save_button.click(fn=wrap(save_config_state, extra_outputs=[gr.skip()]), inputs=[save_name],
                      outputs=[saved_states, states_info])
    restore_button.click(fn=wrap(restore_config_state, extra_outputs=[gr.skip()]),
                         js="(confirmed, name, kind) => [confirm(`Restore the ${kind} of config state ${name}?`), name, kind]",
                         inputs=[restore_confirmed, saved_states, restore_type], outputs=[table, states_info])
