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
}

onUiLoaded(arrangeMainTabs);
onOptionsChanged(arrangeMainTabs);
onUiUpdate(function(mutations) {
    if (mutations.some(function(mutation) { return mutation.target.closest && mutation.target.closest("#tabs > .tab-wrapper"); })) {
        arrangeMainTabs();  // Gradio redrew the tab bar
    }
});
