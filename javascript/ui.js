// Page helpers under A1111's names (its script.js and ui.js globals that extensions call), keyboard shortcuts and
// Reload UI.

function gradioApp() {
    const app = document.getElementsByTagName("gradio-app")[0];
    return app && app.shadowRoot ? app.shadowRoot : document;
}

// A1111's callback lists (extensions may also push to them directly)
var uiLoadedCallbacks = [];
var uiUpdateCallbacks = [];
var uiAfterUpdateCallbacks = [];
var uiTabChangeCallbacks = [];
var optionsAvailableCallbacks = [];
var optionsChangedCallbacks = [];

// the settings, {key: value} (A1111's `opts`): filled at page load and again after every settings change
var opts = {};
// hover texts by element text, {text: title} (A1111's hints); extensions add theirs
var titles = {};

// callback() once the page's components exist and `opts` is filled
function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

// callback(mutations) after every change of the page
function onUiUpdate(callback) {
    uiUpdateCallbacks.push(callback);
}

// callback() once a burst of page changes has settled
function onAfterUiUpdate(callback) {
    uiAfterUpdateCallbacks.push(callback);
}

// callback() when the user switches the page's main tab
function onUiTabChange(callback) {
    uiTabChangeCallbacks.push(callback);
}

// callback() once, when `opts` is first filled
function onOptionsAvailable(callback) {
    optionsAvailableCallbacks.push(callback);
}

// callback() whenever `opts` is filled or changed
function onOptionsChanged(callback) {
    optionsChangedCallbacks.push(callback);
}

// run every callback of a list; one that throws is logged and the others still run
function executeCallbacks(queue, arg) {
    for (const callback of queue) {
        try {
            callback(arg);
        } catch (e) {
            console.error("error running callback", callback, ":", e);
        }
    }
}

// the selected button of the page's main tabs
function get_uiCurrentTab() {
    return gradioApp().querySelector("#tabs > .tab-wrapper button[role=tab][aria-selected=true], #tabs button[role=tab][aria-selected=true]");
}

// the shown content of the page's main tabs (#tab_txt2img, #tab_img2img, ...)
function get_uiCurrentTabContent() {
    const tabs = gradioApp().querySelector("#tabs");
    if (!tabs) return null;
    return Array.from(tabs.querySelectorAll(".tabitem[id^=tab_]")).find(function(content) {
        return content.parentElement.closest(".tabs") === tabs && uiElementIsVisible(content);
    }) || null;
}

// el and every element above it are displayed (in the page, not necessarily scrolled into view)
function uiElementIsVisible(el) {
    for (let node = el; node && node !== document; node = node.parentNode || node.host) {
        if (node.nodeType === Node.ELEMENT_NODE && getComputedStyle(node).display === "none") return false;
    }
    return !!el;
}

// some of el is inside the window's height
function uiElementInSight(el) {
    const rect = el.getBoundingClientRect();
    return rect.bottom > 0 && rect.top < window.innerHeight;
}

// tell Gradio that a script changed target's value (as if the user typed it)
function updateInput(target) {
    target.dispatchEvent(new Event("input", {bubbles: true}));
}

function args_to_array(args) {
    return Array.from(args);
}

// the index of the selected tab among the tabs of the Tabs block with id tabId
function get_tab_index(tabId) {
    const buttons = Array.from(gradioApp().querySelectorAll("#" + tabId + " button[role=tab]")).filter(function(button) {
        return button.closest(".tabs") === gradioApp().getElementById(tabId);
    });
    return Math.max(0, buttons.findIndex(function(button) { return button.getAttribute("aria-selected") === "true"; }));
}

// the index of the selected image in the shown tab's gallery, -1 if none
function selected_gallery_index() {
    const content = get_uiCurrentTabContent();
    if (!content) return -1;
    const items = Array.from(content.querySelectorAll(".thumbnail-item")).filter(uiElementIsVisible);
    return items.findIndex(function(item) { return item.classList.contains("selected"); });
}

function selectTab(buttonId) {
    const button = gradioApp().getElementById(buttonId);
    if (button) button.click();
}

// A1111's "Send to" tab switches, usable as an event's js: each passes its arguments on
function switch_to_txt2img() {
    selectTab("tab_txt2img-button");
    return args_to_array(arguments);
}

function switchToImg2imgMode(modeButtonId, args) {
    selectTab("tab_img2img-button");
    selectTab(modeButtonId);
    return args_to_array(args);
}

function switch_to_img2img() {
    return switchToImg2imgMode("img2img_img2img_tab-button", arguments);
}

function switch_to_sketch() {
    return switchToImg2imgMode("img2img_img2img_sketch_tab-button", arguments);
}

function switch_to_inpaint() {
    return switchToImg2imgMode("img2img_inpaint_tab-button", arguments);
}

function switch_to_inpaint_sketch() {
    return switchToImg2imgMode("img2img_inpaint_sketch_tab-button", arguments);
}

function switch_to_extras() {
    selectTab("tab_extras-button");
    return args_to_array(arguments);
}

// A1111's localStorage helpers (a browser that refuses storage just forgets)
function localSet(k, v) {
    try {
        localStorage.setItem(k, v);
    } catch (e) {
        console.warn(`Failed to save ${k} to localStorage: ${e}`);
    }
}

function localGet(k, def) {
    try {
        const value = localStorage.getItem(k);
        return value === null ? (def === undefined ? null : def) : value;
    } catch (e) {
        return def === undefined ? null : def;
    }
}

function localRemove(k) {
    try {
        localStorage.removeItem(k);
    } catch (e) {
        console.warn(`Failed to remove ${k} from localStorage: ${e}`);
    }
}

// A1111's generate-button scripts; our buttons need nothing of them, an extension's button gets its arguments back
function submit() {
    return args_to_array(arguments);
}

var submit_img2img = submit;

// the prompt box each generation tab's helpers write into: the last one focused, the prompt at first (A1111's)
var activePromptTextarea = {};

function applyTitles(root) {
    root.querySelectorAll("button, span, label, option").forEach(function(element) {
        if (element.title) return;
        const title = titles[element.textContent.trim()] || titles[element.value];
        if (title) element.title = title;
    });
}

function setupPromptTextareas() {
    ["txt2img", "img2img"].forEach(function(tab) {
        ["_prompt", "_neg_prompt"].forEach(function(suffix) {
            const textarea = gradioApp().querySelector("#" + tab + suffix + " textarea");
            if (!textarea) return;
            if (suffix === "_prompt") activePromptTextarea[tab] = textarea;
            textarea.addEventListener("focus", function() { activePromptTextarea[tab] = textarea; });
        });
    });
}

// Gradio 3 (A1111's) put a textbox's textarea straight in its label; extensions select `#txt2img_prompt > label >
// textarea` (tagcomplete). Gradio 6 wraps it in a div: the textarea moves up beside that div, which keeps the rest.
function a1111TextboxShape(root) {
    root.querySelectorAll("label > .input-container > textarea").forEach(function(textarea) {
        const container = textarea.parentElement;
        container.parentElement.insertBefore(textarea, container);
    });
}

let atelierLoaded = false;
let atelierOptionsReady = false;

function nextFrame() {
    return new Promise(function(resolve) { requestAnimationFrame(function() { setTimeout(resolve, 0); }); });
}

// A1111's page (Gradio 3) has every control in the DOM from the start, and extensions' scripts look for controls in
// other tabs and closed accordions. Gradio 6 mounts a tab's or an accordion's content the first time it is shown and
// keeps it afterwards: so each tab is shown once (depth first, its accordions opened and closed once while it is
// shown), then the tabs that were selected are selected again.
async function mountShownContent(done) {
    // opened all at once, then closed all at once: an accordion opened inside one is handled on the next pass
    for (;;) {
        const closed = Array.from(gradioApp().querySelectorAll("button.label-wrap:not(.open)")).filter(function(accordion) { return !done.has(accordion); });
        if (!closed.length) break;
        closed.forEach(function(accordion) { done.add(accordion); accordion.click(); });
        await nextFrame();
        closed.forEach(function(accordion) { accordion.click(); });
        await nextFrame();
    }
    for (;;) {
        const tablist = Array.from(gradioApp().querySelectorAll("[role=tablist]")).find(function(list) { return !done.has(list); });
        if (!tablist) return;
        done.add(tablist);
        const buttons = Array.from(tablist.querySelectorAll("button[role=tab]"));
        const selected = buttons.find(function(button) { return button.getAttribute("aria-selected") === "true"; });
        for (const button of buttons) {
            if (button !== selected) {
                button.click();
                await nextFrame();
            }
            await mountShownContent(done);
        }
        if (selected) selected.click();
        await nextFrame();
    }
}

let atelierMounting = false;

// onUiLoaded's moment: the page's tabs exist and `opts` is filled, whichever comes last; then every control is mounted
async function atelierCheckLoaded() {
    if (atelierLoaded || atelierMounting || !atelierOptionsReady || !gradioApp().querySelector("#tabs")) return;
    atelierMounting = true;
    await mountShownContent(new Set());
    atelierLoaded = true;
    a1111TextboxShape(gradioApp());
    setupPromptTextareas();
    applyTitles(gradioApp());
    executeCallbacks(uiLoadedCallbacks);
}

// the settings JSON the server sends (hidden #settings_json, ui_settings.py) becomes `opts`
function atelierOptionsReceived(json) {
    opts = JSON.parse(json);
    if (!atelierOptionsReady) {
        atelierOptionsReady = true;
        executeCallbacks(optionsAvailableCallbacks);
    }
    executeCallbacks(optionsChangedCallbacks);
    atelierCheckLoaded();
    return [];
}

(function() {
    let currentTab = null;
    let afterUpdateTimer = null;
    const checkTabChange = function() {
        const tab = get_uiCurrentTabContent();
        if (tab && tab !== currentTab) {
            const first = currentTab === null;
            currentTab = tab;
            if (!first) executeCallbacks(uiTabChangeCallbacks);
        }
    };
    const observer = new MutationObserver(function(mutations) {
        atelierCheckLoaded();
        if (!atelierLoaded) return;
        mutations.forEach(function(mutation) {
            mutation.addedNodes.forEach(function(node) {
                if (node.nodeType !== Node.ELEMENT_NODE) return;
                a1111TextboxShape(node.parentElement || node);
                applyTitles(node);
            });
        });
        executeCallbacks(uiUpdateCallbacks, mutations);
        clearTimeout(afterUpdateTimer);
        afterUpdateTimer = setTimeout(function() { executeCallbacks(uiAfterUpdateCallbacks); }, 200);
        checkTabChange();
    });
    // a tab switch may only change attributes: watched apart, so onUiUpdate keeps A1111's rhythm
    const tabObserver = new MutationObserver(function() {
        if (atelierLoaded) checkTabChange();
    });
    // Gradio may add these scripts to the page after it has loaded
    const start = function() {
        observer.observe(document.body, {childList: true, subtree: true});
        tabObserver.observe(document.body, {subtree: true, attributes: true, attributeFilter: ["aria-selected", "style", "class"]});
    };
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

if (window.atelierForcedTheme) {
    const url = new URL(window.location.href);
    if (!url.searchParams.has("__theme")) {
        url.searchParams.set("__theme", window.atelierForcedTheme);
        window.location.replace(url.href);
    }
}

function visibleButton(id) {
    const button = gradioApp().querySelector("#" + id);
    return button && button.offsetParent !== null ? button : null;
}

// the generation tab the user is on ("txt2img", later "img2img")
function currentTabName() {
    const tab = get_uiCurrentTab();
    return tab && tab.textContent.trim() === "img2img" ? "img2img" : "txt2img";
}

// Ctrl+Enter generates, Alt+Enter skips, Esc interrupts (A1111's keys)
document.addEventListener("keydown", function(event) {
    const tab = currentTabName();
    let button = null;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey) {
        button = visibleButton(tab + "_generate");
    } else if (event.key === "Enter" && event.altKey) {
        button = visibleButton(tab + "_skip");
    } else if (event.key === "Escape") {
        button = visibleButton(tab + "_interrupt");
    }
    if (button) {
        button.click();
        event.preventDefault();
    }
});

// Reload UI: the server rebuilds the page; wait until a new build answers, then load it
async function atelierReloadUI() {
    const ping = async function() {
        const response = await fetch("./internal/ping", {cache: "no-store"});
        return (await response.json()).build;
    };
    let before = null;
    try {
        before = await ping();
    } catch (e) {
        before = null;
    }
    const overlay = document.createElement("div");
    overlay.id = "atelier_reloading";
    overlay.textContent = "Reloading...";
    document.body.appendChild(overlay);
    const poll = async function() {
        try {
            const build = await ping();
            if (build !== before) {
                window.location.reload();
                return;
            }
        } catch (e) {
            // the server is restarting
        }
        setTimeout(poll, 500);
    };
    setTimeout(poll, 500);
    return [];
}

var restart_reload = atelierReloadUI; // A1111's name
