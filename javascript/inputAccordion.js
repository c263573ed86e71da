// InputAccordion (ui_components.py): open and checked are one state, as A1111's accordion with a checkbox in its
// header. The user opening or closing the header sets the box; the box's value (clicked, pasted) opens or closes it.

function inputAccordionParts(id) {
    const accordion = gradioApp().getElementById(id);
    if (!accordion) return null;
    const header = accordion.querySelector(":scope > button.label-wrap");
    const checkbox = gradioApp().querySelector("#" + id + "-checkbox input[type=checkbox]");
    return header && checkbox ? {header: header, checkbox: checkbox} : null;
}

// called on the value's change: open the accordion when checked, close it when not
function inputAccordionShow(id, checked) {
    const parts = inputAccordionParts(id);
    if (parts && parts.header.classList.contains("open") !== !!checked) parts.header.click();
}

// a person's click on the header: the box follows the accordion's new state (the page's own clicks, mounting the
// page's content at load, are not a person's and change nothing)
document.addEventListener("click", function(event) {
    if (!event.isTrusted) return;
    const header = event.target.closest && event.target.closest(".input-accordion > button.label-wrap");
    if (!header) return;
    const id = header.parentElement.id;
    setTimeout(function() {
        const parts = inputAccordionParts(id);
        if (parts && parts.checkbox.checked !== parts.header.classList.contains("open")) parts.checkbox.click();
    }, 0);
}, true);
