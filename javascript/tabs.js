// The page's main tabs as the settings say: hidden_tabs are not shown, ui_tab_order comes first in its order, the
// others follow in theirs. Applied whenever the settings change, without a reload.

function mainTabButtons() {
    const tabs = gradioApp().querySelector("#tabs");
    if (!tabs) return [];
    return Array.from(tabs.querySelectorAll("button[role=tab]")).filter(function(button) {
        return button.closest(".tabs") === tabs;
    });
}

function arrangeMainTabs() {
    const hidden = opts.hidden_tabs || [];
    const order = opts.ui_tab_order || [];
    mainTabButtons().forEach(function(button, index) {
        const name = button.textContent.trim();
        const place = order.indexOf(name);
        button.style.order = place >= 0 ? place : order.length + index;
        button.classList.toggle("hidden-tab", hidden.includes(name));
    });
    const selected = get_uiCurrentTab();
    if (selected && selected.classList.contains("hidden-tab") && firstMainTab()) firstMainTab().click();
}

// the first shown tab in the settings' order, as A1111 opens the page on its first tab
function firstMainTab() {
    return mainTabButtons().filter(function(button) { return !button.classList.contains("hidden-tab"); })
        .sort(function(a, b) { return a.style.order - b.style.order; })[0];
}

onUiLoaded(function() {
    arrangeMainTabs();
    const first = firstMainTab();
    if ((opts.ui_tab_order || []).length && first) first.click();
});
onOptionsChanged(arrangeMainTabs);
onUiUpdate(function(mutations) {
    if (mutations.some(function(mutation) { return mutation.target.closest && mutation.target.closest("#tabs > .tab-wrapper"); })) {
        arrangeMainTabs();  // Gradio redrew the tab bar
    }
});
