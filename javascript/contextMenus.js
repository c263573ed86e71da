// A1111's right-click menus (contextMenus.js): appendContextMenuOption(selector, name, fn) adds an entry to the menu
// of the elements matching selector, removeContextMenuOption(id) takes it away; Generate's menu has "Generate
// forever" and "Cancel generate forever".

var contextMenuEntries = new Map();  // selector -> [{id, name, func}]
var contextMenuNextId = 0;

function appendContextMenuOption(targetElementSelector, entryName, entryFunction) {
    const entries = contextMenuEntries.get(targetElementSelector) || [];
    const id = targetElementSelector + "_" + (contextMenuNextId++);
    entries.push({id: id, name: entryName, func: entryFunction, isNew: true});
    contextMenuEntries.set(targetElementSelector, entries);
    return id;
}

function removeContextMenuOption(id) {
    contextMenuEntries.forEach(function(entries) {
        const index = entries.findIndex(function(entry) { return entry.id === id; });
        if (index >= 0) entries.splice(index, 1);
    });
}

function closeContextMenu() {
    const menu = document.getElementById("context-menu");
    if (menu) menu.remove();
}

function showContextMenu(event, element, entries) {
    closeContextMenu();
    const menu = document.createElement("nav");
    menu.id = "context-menu";
    menu.className = "context-menu";
    menu.style.left = event.pageX + "px";
    menu.style.top = event.pageY + "px";
    const list = document.createElement("ul");
    entries.forEach(function(entry) {
        const item = document.createElement("li");
        item.textContent = entry.name;
        item.addEventListener("click", function() {
            closeContextMenu();
            entry.func(element);
        });
        list.appendChild(item);
    });
    menu.appendChild(list);
    document.body.appendChild(menu);
}

document.addEventListener("contextmenu", function(event) {
    const path = event.composedPath();
    for (const [selector, entries] of contextMenuEntries) {
        const element = path.find(function(node) { return node instanceof Element && node.matches(selector); });
        if (element && entries.length) {
            event.preventDefault();
            showContextMenu(event, element, entries);
            return;
        }
    }
    closeContextMenu();
});
document.addEventListener("click", function(event) {
    // a user's click elsewhere closes the menu (Generate forever's own presses do not)
    if (event.isTrusted && !event.composedPath().some(function(node) { return node.id === "context-menu"; })) closeContextMenu();
});

// Generate forever: press Generate again whenever the tab is idle (Interrupt hidden), until cancelled
var generateOnRepeatTimer = null;

function generateOnRepeat(generateId, interruptId) {
    clearInterval(generateOnRepeatTimer);
    let pressedAt = 0;
    let started = true;
    generateOnRepeatTimer = setInterval(function() {
        const generate = gradioApp().querySelector(generateId);
        const interrupt = gradioApp().querySelector(interruptId);
        if (!generate || !interrupt) return;
        const busy = interrupt.offsetParent !== null;
        if (busy) started = true;
        // one press per job: the next waits until this one has shown Interrupt (or 5 s, for a job quicker than a tick)
        if (!busy && (started || Date.now() - pressedAt > 5000)) {
            started = false;
            pressedAt = Date.now();
            generate.click();
        }
    }, 200);
}

function cancelGenerateForever() {
    clearInterval(generateOnRepeatTimer);
    generateOnRepeatTimer = null;
}

["txt2img", "img2img"].forEach(function(tab) {
    appendContextMenuOption("#" + tab + "_generate", "Generate forever", function() {
        generateOnRepeat("#" + tab + "_generate", "#" + tab + "_interrupt");
    });
    appendContextMenuOption("#" + tab + "_generate", "Cancel generate forever", cancelGenerateForever);
    appendContextMenuOption("#" + tab + "_interrupt", "Cancel generate forever", cancelGenerateForever);  // while a job runs
});
