// Page helpers (A1111 names that extensions call), keyboard shortcuts and Reload UI.

function gradioApp() {
    const app = document.getElementsByTagName("gradio-app")[0];
    return app && app.shadowRoot ? app.shadowRoot : document;
}

const atelierUiLoadedCallbacks = [];
const atelierUiUpdateCallbacks = [];

// callback() once the page's components exist (A1111's onUiLoaded)
function onUiLoaded(callback) {
    atelierUiLoadedCallbacks.push(callback);
}

// callback(mutations) after every change of the page (A1111's onUiUpdate)
function onUiUpdate(callback) {
    atelierUiUpdateCallbacks.push(callback);
}

(function() {
    let loaded = false;
    const observer = new MutationObserver(function(mutations) {
        if (!loaded && gradioApp().querySelector("#tabs")) {
            loaded = true;
            atelierUiLoadedCallbacks.forEach(function(callback) { callback(); });
        }
        if (loaded) {
            atelierUiUpdateCallbacks.forEach(function(callback) { callback(mutations); });
        }
    });
    // Gradio may add these scripts to the page after it has loaded
    const start = function() {
        observer.observe(document.body, {childList: true, subtree: true});
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
    const tab = gradioApp().querySelector("#tabs > .tab-wrapper button.selected, #tabs button[role=tab][aria-selected=true]");
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
