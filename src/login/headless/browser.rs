//! The Chromium process for a headless login: whether a visible one can be shown, starting it
//! with the flags the login needs and a fresh or persistent profile, and stopping it so that it is
//! always waited for (close, wait, kill as the last resort).

use std::time::Duration;

use chromiumoxide::{Browser, BrowserConfig};
use futures_util::StreamExt;

use super::error::HeadlessError;
use super::options::{BrowserOptions, Profile};

/// A started browser: the DevTools connection, the task that pumps its events, and the temporary
/// profile to remove once the browser is gone.
pub(super) struct Started {
    pub(super) browser: Browser,
    pub(super) handler: tokio::task::JoinHandle<()>,
    pub(super) profile: Option<tempfile::TempDir>,
}

/// Whether a visible browser can be shown here.
pub fn has_display() -> bool {
    if cfg!(target_os = "macos") || cfg!(windows) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Starts Chromium as `opts` say.
pub(super) async fn launch(opts: &BrowserOptions) -> Result<Started, HeadlessError> {
    let launch_err = |reason: String| HeadlessError::Launch {
        path: opts.executable.clone(),
        reason,
    };
    let (profile_dir, temp) = match &opts.profile {
        Profile::Fresh => {
            let t = tempfile::Builder::new()
                .prefix("lingma-gw-chromium-")
                .tempdir()
                .map_err(|e| launch_err(format!("cannot create a profile dir: {e}")))?;
            (t.path().to_path_buf(), Some(t))
        }
        Profile::Persistent(dir) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| launch_err(format!("cannot create {}: {e}", dir.display())))?;
            (dir.clone(), None)
        }
    };
    let mut args: Vec<&str> = vec![
        "no-sandbox",
        "disable-setuid-sandbox",
        "disable-gpu",
        "disable-quic",
        "no-first-run",
        "no-default-browser-check",
        "disable-background-networking",
        "disable-component-update",
        "disable-sync",
        "disable-extensions",
        "disable-default-apps",
        "disable-breakpad",
        "disable-dev-shm-usage",
        "disable-site-isolation-trials",
        "mute-audio",
        "hide-scrollbars",
        "password-store=basic",
        "use-mock-keychain",
    ];
    if !opts.visible {
        args.push("headless");
    }
    let mut builder = BrowserConfig::builder()
        .chrome_executable(&opts.executable)
        .disable_default_args()
        .user_data_dir(&profile_dir)
        .launch_timeout(Duration::from_secs(30))
        .request_timeout(Duration::from_secs(30))
        // The page in Chinese, as the default text locators expect it.
        .env("TZ", "Asia/Shanghai")
        .arg(("lang", "zh-CN"))
        .arg(("window-size", "1280,900"))
        .arg((
            "disable-features",
            "IsolateOrigins,site-per-process,Translate,OptimizationHints,MediaRouter",
        ));
    for a in args {
        builder = builder.arg(a);
    }
    if opts.visible {
        builder = builder.with_head();
    }
    let config = builder.build().map_err(launch_err)?;
    let (browser, mut handler) = Browser::launch(config)
        .await
        .map_err(|e| launch_err(e.to_string()))?;
    let handler = tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if let Err(e) = event {
                tracing::trace!(error = %e, "devtools handler");
            }
        }
    });
    Ok(Started {
        browser,
        handler,
        profile: temp,
    })
}

/// Close, wait (bounded), kill as the last resort; the handler task ends with the connection.
pub(super) async fn shutdown(browser: &mut Browser, handler: tokio::task::JoinHandle<()>) {
    let closed = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
    if !matches!(closed, Ok(Ok(_))) {
        tracing::debug!("Chromium did not close cleanly; killing it");
        let _ = browser.kill().await;
    }
    match tokio::time::timeout(Duration::from_secs(10), browser.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("Chromium did not exit; killing it");
            let _ = browser.kill().await;
            let _ = browser.wait().await;
        }
    }
    handler.abort();
    let _ = handler.await;
}
