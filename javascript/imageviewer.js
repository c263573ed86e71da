// The full page image viewer (A1111's lightbox): a click on a gallery's large image shows it over the whole page;
// arrows go to the gallery's other images, the zoom button switches between fitted and full size, Esc closes.
// Settings: js_modal_lightbox (on/off), js_modal_lightbox_initially_zoomed (full size first).

let lightboxSources = [];
let lightboxIndex = 0;

function lightboxModal() {
    let modal = document.getElementById("lightboxModal");
    if (modal) return modal;
    modal = document.createElement("div");
    modal.id = "lightboxModal";
    modal.tabIndex = 0;
    modal.innerHTML = "<div class='modalControls'><span class='modalZoom cursor' title='Toggle zoomed view'>&#10529;</span>" +
        "<span class='modalClose cursor' title='Close image viewer'>&times;</span></div>" +
        "<img id='modalImage' alt='' tabindex='0'>" +
        "<a class='modalPrev' title='Previous image'>&#10094;</a><a class='modalNext' title='Next image'>&#10095;</a>";
    modal.querySelector(".modalClose").addEventListener("click", closeLightbox);
    modal.querySelector(".modalZoom").addEventListener("click", function() {
        modal.querySelector("#modalImage").classList.toggle("modalImageZoomed");
    });
    modal.querySelector(".modalPrev").addEventListener("click", function() { showLightboxImage(lightboxIndex - 1); });
    modal.querySelector(".modalNext").addEventListener("click", function() { showLightboxImage(lightboxIndex + 1); });
    modal.addEventListener("click", function(event) {
        if (event.target === modal) closeLightbox();
    });
    document.body.appendChild(modal);
    return modal;
}

function showLightboxImage(index) {
    if (!lightboxSources.length) return;
    lightboxIndex = (index + lightboxSources.length) % lightboxSources.length;
    lightboxModal().querySelector("#modalImage").src = lightboxSources[lightboxIndex];
}

function openLightbox(gallery, image) {
    const thumbnails = Array.from(gallery.querySelectorAll(".thumbnail-item img")).map(function(img) { return img.src; });
    lightboxSources = thumbnails.length ? thumbnails : [image.src];
    const modal = lightboxModal();
    modal.querySelector("#modalImage").classList.toggle("modalImageZoomed", !!opts.js_modal_lightbox_initially_zoomed);
    showLightboxImage(Math.max(0, lightboxSources.indexOf(image.src)));
    modal.style.display = "flex";
    modal.focus();
}

function closeLightbox() {
    lightboxModal().style.display = "none";
}

function lightboxIsOpen() {
    const modal = document.getElementById("lightboxModal");
    return !!modal && modal.style.display === "flex";
}

document.addEventListener("click", function(event) {
    if (!opts.js_modal_lightbox || !(event.target instanceof HTMLImageElement)) return;
    const gallery = event.target.closest("[id$=_gallery]");
    if (!gallery || event.target.closest(".thumbnail-item, button[aria-label^=Thumbnail]")) return;
    event.preventDefault();
    event.stopPropagation();
    openLightbox(gallery, event.target);
}, true);

// before the page's own keys (ui.js: Esc interrupts a job), while the viewer is open
window.addEventListener("keydown", function(event) {
    if (!lightboxIsOpen()) return;
    const actions = {"Escape": closeLightbox, "ArrowLeft": function() { showLightboxImage(lightboxIndex - 1); },
        "ArrowRight": function() { showLightboxImage(lightboxIndex + 1); }};
    const action = actions[event.key];
    if (!action) return;
    action();
    event.preventDefault();
    event.stopImmediatePropagation();
}, true);
