// 🌀 (A1111's restore progress): the page remembers the task id of the job it runs, per tab, under A1111's
// localStorage keys (txt2img_task_id, img2img_task_id); the job goes on in the server when the page reloads, and the
// reloaded page offers 🌀, which follows that task and shows its outputs (ui_common.restore_job).

const restoreProgressTabs = ["txt2img", "img2img"];
const followedTasks = {};
// a reload tears the page down while the job runs on: what the page shows then must not make it forget the task
let pageUnloading = false;
window.addEventListener("beforeunload", function() {
    pageUnloading = true;
});

function showRestoreProgressButton(tabname, show) {
    document.body.toggleAttribute("data-restore-" + tabname, !!show);
}

// the progress HTML of a task carries its id; the outputs come with an empty progress: the task is then forgotten
function rememberRunningTasks() {
    if (pageUnloading) return;
    for (const tabname of restoreProgressTabs) {
        const progress = gradioApp().querySelector("#" + tabname + "_progress");
        if (!progress) continue;
        const running = progress.querySelector("[data-id-task]");
        if (running) {
            const id = running.getAttribute("data-id-task");
            if (localGet(tabname + "_task_id") !== id) localSet(tabname + "_task_id", id);
            followedTasks[tabname] = id;
        } else if (followedTasks[tabname] && !progress.querySelector(".progress-panel-inner")) {
            if (localGet(tabname + "_task_id") === followedTasks[tabname]) localRemove(tabname + "_task_id");
            delete followedTasks[tabname];
        }
    }
}

// 🌀's click: the remembered task id, for the server to follow
function restoreProgress(tabname) {
    showRestoreProgressButton(tabname, false);
    return localGet(tabname + "_task_id", "");
}

function restoreProgressTxt2img() {
    return restoreProgress("txt2img");
}

function restoreProgressImg2img() {
    return restoreProgress("img2img");
}

onUiLoaded(function() {
    for (const tabname of restoreProgressTabs) showRestoreProgressButton(tabname, localGet(tabname + "_task_id"));
});
onUiUpdate(rememberRunningTasks);
