// The Extensions tab: the Installed table's checkboxes and the per-row Delete and Install buttons (A1111's way:
// plain HTML in the tables, handed to hidden Gradio controls when a button is pressed)

// Apply and restart UI: [names not enabled, names checked for update, disable-all choice]
function extensionsApply(disabledList, updateList, disableAll) {
    const disabled = [];
    const update = [];
    gradioApp().querySelectorAll("#extensions input[type=checkbox]").forEach(function(box) {
        if (box.name.startsWith("enable_") && !box.checked) {
            disabled.push(box.name.substring("enable_".length));
        } else if (box.name.startsWith("update_") && box.checked) {
            update.push(box.name.substring("update_".length));
        }
    });
    return [JSON.stringify(disabled), JSON.stringify(update), disableAll];
}

let extensionsPendingDelete = "";
let extensionsPendingInstall = "";

function extensionsDelete(name) {
    if (!confirm("Delete the extension " + name + "? Its folder is removed from disk.")) {
        return;
    }
    extensionsPendingDelete = name;
    gradioApp().querySelector("#extensions_delete_button").click();
}

function extensionsTakeDeleteName() {
    return [extensionsPendingDelete];
}

function extensionsInstallFromIndex(button, url) {
    button.disabled = true;
    button.textContent = "Installing...";
    extensionsPendingInstall = url;
    gradioApp().querySelector("#install_extension_button").click();
}

// the Install button's step: the URL the pressed row left, then the view controls (index, tags, order, search, ...) as they are
function extensionsTakeInstallUrl(url, ...view) {
    return [extensionsPendingInstall, ...view];
}
