// Settings tab: one section at a time from the list on the left, or every matching setting while searching.

function settingsSections() {
    return Array.from(gradioApp().querySelectorAll("#settings_pages .settings-section"));
}

function showSettingsSection(id) {
    settingsSections().forEach(function(section) {
        section.classList.toggle("settings-hidden", id !== "*" && section.id !== id);
    });
    gradioApp().querySelectorAll("#settings_nav a[data-section]").forEach(function(link) {
        link.classList.toggle("selected", link.dataset.section === id);
    });
    gradioApp().querySelectorAll("#settings_pages [id^=setting_]").forEach(function(setting) {
        setting.classList.remove("settings-hidden");
    });
}

function searchSettings(text) {
    const query = text.trim().toLowerCase();
    if (!query) {
        const selected = gradioApp().querySelector("#settings_nav a.selected");
        showSettingsSection(selected ? selected.dataset.section : settingsSections()[0].id);
        return;
    }
    settingsSections().forEach(function(section) {
        let found = false;
        section.querySelectorAll("[id^=setting_]").forEach(function(setting) {
            const match = setting.id.toLowerCase().includes(query.replace(/ /g, "_")) ||
                setting.textContent.toLowerCase().includes(query);
            setting.classList.toggle("settings-hidden", !match);
            found = found || match;
        });
        section.classList.toggle("settings-hidden", !found);
    });
}

onUiUpdate(function() {
    const nav = gradioApp().querySelector("#settings_nav");
    if (!nav || nav.dataset.ready || settingsSections().length === 0) {
        return;  // Gradio builds the tab when it is first opened
    }
    nav.dataset.ready = "1";
    nav.addEventListener("click", function(event) {
        const link = event.target.closest("a[data-section]");
        if (!link) {
            return;
        }
        event.preventDefault();
        const search = gradioApp().querySelector("#settings_search input, #settings_search textarea");
        if (search) {
            search.value = "";
        }
        showSettingsSection(link.dataset.section);
    });
    const search = gradioApp().querySelector("#settings_search input, #settings_search textarea");
    if (search) {
        search.addEventListener("input", function() {
            searchSettings(search.value);
        });
    }
    showSettingsSection(settingsSections()[0].id);
});
