// While a job runs: its percent and ETA in the window title (show_progress_in_title) and the screen kept awake
// (prevent_screen_sleep_during_generation), as A1111's progress bar does.

let atelierTitle = null;
let atelierWakeLock = null;
let atelierWakeLockWanted = false;

// the progress label ("47% ETA: 3s") of the job the page runs, "" when it runs without one yet, null when none runs
function runningJobProgress() {
    for (const tab of ["txt2img", "img2img"]) {
        if (!visibleButton(tab + "_interrupt")) continue;
        const label = gradioApp().querySelector("#" + tab + "_progress .progress-label");
        return label ? label.textContent.trim() : "";
    }
    return null;
}

function setProgressTitle(progress) {
    if (atelierTitle === null) atelierTitle = document.title;
    const title = opts.show_progress_in_title && progress ? "[" + progress + "] " + atelierTitle : atelierTitle;
    if (document.title !== title) document.title = title;
}

async function keepScreenAwake(wanted) {
    atelierWakeLockWanted = wanted;
    if (wanted && !atelierWakeLock && navigator.wakeLock) {
        try {
            const lock = await navigator.wakeLock.request("screen");
            if (atelierWakeLockWanted && !atelierWakeLock) {
                atelierWakeLock = lock;
                return;
            }
            lock.release();
        } catch (e) {
            // refused (a hidden page, a policy): the screen may sleep
        }
    } else if (!wanted && atelierWakeLock) {
        const lock = atelierWakeLock;
        atelierWakeLock = null;
        lock.release();
    }
}

function followRunningJob() {
    const progress = runningJobProgress();
    setProgressTitle(progress);
    keepScreenAwake(progress !== null && !!opts.prevent_screen_sleep_during_generation);
}

onUiUpdate(followRunningJob);
onOptionsChanged(followRunningJob);
setInterval(function() { if (atelierLoaded) followRunningJob(); }, 500);  // a job's end may change only attributes
