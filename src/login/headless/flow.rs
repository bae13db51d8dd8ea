//! The login itself, step by step, on top of the page driver: open the login URL, find the login
//! frame, leave the QR-code default (and the RAM-user interstitial) for the password form, type
//! the account and password, submit, then watch for the callback, a captcha, an identity check or
//! a refused password. On failure it saves what the page showed; after the callback it makes sure
//! the instance turned logged in. Everything about the login page lives here and in the
//! [`Locators`]; nothing about Chromium does.

use std::path::Path;
use std::time::{Duration, Instant};

use super::browser::has_display;
use super::driver::{Frame, Session};
use super::error::{Diagnostics, HeadlessError, Stop};
use super::options::{BrowserOptions, Credentials, Locators, Target, Timeouts};
use crate::lingma::AuthStatus;
use crate::login::{CallbackParams, expected_state, wait_logged_in};
use crate::util::{unix_millis, write_private};

/// Logs the target instance in through the browser: fills the form with `creds`, or with
/// `opts.visible` shows the page and waits for the person to finish. Returns the new auth status.
pub async fn login(
    target: &Target<'_>,
    creds: Option<&Credentials>,
    opts: &BrowserOptions,
) -> Result<AuthStatus, HeadlessError> {
    if !opts.executable.is_file() {
        return Err(HeadlessError::BrowserMissing(opts.executable.clone()));
    }
    if opts.visible && !has_display() {
        return Err(HeadlessError::NoDisplay);
    }
    let fill = if opts.visible { None } else { creds };
    if !opts.visible && creds.is_none() {
        return Err(HeadlessError::BadCredentials {
            instance: target.instance.to_string(),
            diagnostics: Diagnostics::default(),
        });
    }
    let login = target.client.login_url().await?;
    let expected = expected_state(&login).unwrap_or_default();
    let session = Session::launch(opts).await?;
    let flow = async {
        session.start_watching(target.http_port, &expected).await?;
        match fill {
            Some(c) => drive(&session, &login.url, c, opts).await,
            None => wait_visible(&session, &login.url, opts.timeouts.total).await,
        }
    };
    let cancelled = async {
        match target.cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(opts.timeouts.total, flow) => match r {
            Ok(r) => r,
            Err(_) => Err(Stop::Timeout("the login".into(), opts.timeouts.total)),
        },
        _ = cancelled => Err(Stop::Cdp("cancelled: the gateway is shutting down".into())),
    };
    let outcome = match outcome {
        Ok(cb) => Ok(cb),
        Err(stop) => {
            let diag = diagnose(&session, target.work_dir, stop.label()).await;
            Err(stop.into_error(target.instance, diag))
        }
    };
    session.close().await;
    let callback = outcome?;
    finish(target, &callback, opts.timeouts.auth_status).await
}

/// After the callback: the instance should turn logged in by itself (the browser delivered the
/// callback); if it does not soon, submit the values over RPC.
async fn finish(
    target: &Target<'_>,
    callback: &CallbackParams,
    limit: Duration,
) -> Result<AuthStatus, HeadlessError> {
    let poll = Duration::from_millis(250);
    let first = limit.min(Duration::from_secs(5));
    if let Some(s) = wait_logged_in(target.client, first, poll).await? {
        return Ok(s);
    }
    if let Err(e) = target
        .client
        .auth_callback(callback.nonce(), &callback.auth, &callback.token)
        .await
    {
        tracing::debug!(error = %e, "login/auth_callback after the browser callback failed");
    }
    match wait_logged_in(target.client, limit.saturating_sub(first), poll).await? {
        Some(s) => Ok(s),
        None => Err(HeadlessError::Timeout {
            stage: "auth/status turning logged in after the login callback".into(),
            after: limit,
            diagnostics: Diagnostics::default(),
        }),
    }
}

/// The form-filling flow; returns the matching callback.
async fn drive(
    s: &Session,
    url: &str,
    creds: &Credentials,
    opts: &BrowserOptions,
) -> Result<CallbackParams, Stop> {
    let loc = &opts.locators;
    let t = opts.timeouts;
    s.navigate(url, t.navigation).await?;
    let frame = find_form(s, url, loc, t).await?;
    if let Some(cb) = s.callback() {
        return Ok(cb);
    }
    s.fill(&frame, &loc.username, &creds.username).await?;
    s.fill(&frame, &loc.password, creds.password.expose())
        .await?;
    match s.element(&frame, &loc.submit).await? {
        Some(button) => s.click(&button).await?,
        None => s.press_enter().await?,
    }
    tracing::debug!("login form submitted");
    watch_after_submit(s, &frame, loc, t.callback).await
}

/// The visible mode: show the page, wait for the callback.
async fn wait_visible(s: &Session, url: &str, limit: Duration) -> Result<CallbackParams, Stop> {
    s.navigate(url, limit).await?;
    let mut rx = s.callback_watch();
    match tokio::time::timeout(limit, rx.wait_for(|c| c.is_some())).await {
        Ok(Ok(c)) => c.clone().ok_or_else(|| Stop::Cdp("callback lost".into())),
        Ok(Err(_)) => Err(Stop::Cdp("the browser went away".into())),
        Err(_) => Err(Stop::Timeout(
            "the login in the browser window".into(),
            limit,
        )),
    }
}

/// Captcha or identity verification anywhere on the page (every frame, nested ones too).
async fn blocked(s: &Session, loc: &Locators) -> Result<Option<Stop>, Stop> {
    let frames = s.frames().await?;
    for f in &frames {
        if loc
            .verification_url
            .iter()
            .any(|m| f.url.contains(m.as_str()))
        {
            return Ok(Some(Stop::Verification));
        }
    }
    for f in &frames {
        if s.visible(f, &loc.captcha).await.unwrap_or(false) {
            return Ok(Some(Stop::Captcha));
        }
        let text = s.text(f).await;
        if loc.captcha_text.iter().any(|t| text.contains(t.as_str())) {
            return Ok(Some(Stop::Captcha));
        }
        if loc
            .verification_text
            .iter()
            .any(|t| text.contains(t.as_str()))
        {
            return Ok(Some(Stop::Verification));
        }
    }
    Ok(None)
}

/// The login frame by the frame locators, then by host, else the top page.
async fn login_frame(s: &Session, loc: &Locators) -> Result<Frame, Stop> {
    let frames = s.frames().await?;
    let top = frames
        .first()
        .cloned()
        .ok_or_else(|| Stop::Cdp("the page has no frame".into()))?;
    for sel in &loc.frame {
        if let Some(f) = s.frame_of_element(&frames, sel).await? {
            return Ok(f);
        }
    }
    for f in &frames {
        if let Ok(u) = url::Url::parse(&f.url)
            && u.host_str()
                .is_some_and(|h| loc.frame_hosts.iter().any(|x| x == h))
            && u.path().contains("login")
        {
            return Ok(f.clone());
        }
    }
    Ok(top)
}

/// Finds the frame with a visible account field, leaving the QR default and the RAM
/// interstitial on the way.
async fn find_form(s: &Session, url: &str, loc: &Locators, t: Timeouts) -> Result<Frame, Stop> {
    let started = Instant::now();
    let mut left_ram = false;
    loop {
        if s.callback().is_some() {
            return login_frame(s, loc).await;
        }
        if let Some(stop) = blocked(s, loc).await? {
            return Err(stop);
        }
        let frame = login_frame(s, loc).await?;
        if s.visible(&frame, &loc.username).await? {
            return Ok(frame);
        }
        if !left_ram {
            let top = s.frames().await?.into_iter().next();
            if let Some(top) = top {
                let text = s.text(&top).await;
                if loc.ram_text.iter().any(|r| text.contains(r.as_str()))
                    && let Some(b) = s.element(&top, &loc.main_account).await?
                {
                    tracing::debug!("leaving the RAM-user login page");
                    left_ram = true;
                    s.click(&b).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    s.navigate(url, t.navigation).await?;
                    continue;
                }
            }
        }
        if let Some(tab) = s.element(&frame, &loc.password_tab).await? {
            s.click(&tab).await?;
        } else if started.elapsed() >= t.tab_wait
            && let Some(tab) = s.element(&frame, &loc.password_tab_fallback).await?
        {
            s.click(&tab).await?;
        }
        if started.elapsed() >= t.field {
            return Err(Stop::Timeout(
                "finding the login form's account field".into(),
                t.field,
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn watch_after_submit(
    s: &Session,
    frame: &Frame,
    loc: &Locators,
    limit: Duration,
) -> Result<CallbackParams, Stop> {
    let deadline = Instant::now() + limit;
    let mut error_seen = 0u32;
    loop {
        if let Some(cb) = s.callback() {
            return Ok(cb);
        }
        if let Some(stop) = blocked(s, loc).await? {
            // The callback may have raced the check.
            return match s.callback() {
                Some(cb) => Ok(cb),
                None => Err(stop),
            };
        }
        let on_form = s.visible(frame, &loc.username).await.unwrap_or(false);
        let error = on_form && s.visible(frame, &loc.error).await.unwrap_or(false);
        error_seen = if error { error_seen + 1 } else { 0 };
        // A refused password shows an error and stays on the form; wait a moment in case a
        // redirect is on its way.
        if error_seen >= 4 {
            return Err(Stop::BadCredentials);
        }
        if Instant::now() >= deadline {
            return Err(if on_form {
                Stop::BadCredentials
            } else {
                Stop::Timeout("the login callback after submitting".into(), limit)
            });
        }
        let mut rx = s.callback_watch();
        let _ =
            tokio::time::timeout(Duration::from_millis(250), rx.wait_for(|c| c.is_some())).await;
    }
}

/// A screenshot and every frame's URL and text, saved under `<work_dir>/login-diagnostics/`.
async fn diagnose(s: &Session, work_dir: &Path, label: &str) -> Diagnostics {
    let dir = work_dir.join("login-diagnostics");
    let mut d = Diagnostics::default();
    {
        use std::os::unix::fs::DirBuilderExt;
        if std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .is_err()
        {
            return d;
        }
    }
    let base = dir.join(format!("{}-{label}", unix_millis()));
    if let Ok(Ok(png)) = tokio::time::timeout(Duration::from_secs(10), s.screenshot()).await {
        let p = base.with_extension("png");
        if write_private(&p, &png).is_ok() {
            d.screenshot = Some(p);
        }
    }
    let mut text = String::new();
    if let Ok(Ok(frames)) = tokio::time::timeout(Duration::from_secs(5), s.frames()).await {
        for f in &frames {
            let t = tokio::time::timeout(Duration::from_secs(5), s.text(f))
                .await
                .unwrap_or_default();
            text.push_str(&format!("=== frame {}\n{}\n\n", f.url, t));
        }
    }
    let p = base.with_extension("txt");
    if write_private(&p, text.as_bytes()).is_ok() {
        d.text = Some(p);
    }
    d
}
