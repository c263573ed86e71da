// On a narrow screen the results sit under the controls: Generate scrolls them into view, so the progress and the
// images are seen without searching for them.

function resultsAreBelowControls(tabname) {
    const results = gradioApp().getElementById(tabname + "_results");
    const row = results && results.closest(".resize-handle-row");
    return !!row && results.getBoundingClientRect().left - row.getBoundingClientRect().left < 1;
}

document.addEventListener("click", function(event) {
    const button = event.target.closest && event.target.closest("#txt2img_generate, #img2img_generate");
    if (!button) return;
    const tabname = button.id.replace("_generate", "");
    if (resultsAreBelowControls(tabname)) {
        gradioApp().getElementById(tabname + "_results").scrollIntoView({block: "start"});
    }
}, true);
