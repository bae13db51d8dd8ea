//! Headless login: the system Chromium driven over the DevTools protocol (chromiumoxide) through
//! the Alibaba Cloud login page, as `docs/login.md` describes for users.
//!
//! [`login`] opens the instance's login URL, finds the login frame (the `#alibaba-login-box`
//! iframe and friends, else the top page), leaves the QR-code default for the password tab, types
//! the account and password with real key events, submits, and then watches: the first request to
//! `http://127.0.0.1:<httpPort>/auth/callback` whose `state` matches is success (the browser itself
//! delivers it to the instance; the values are also submitted with `login/auth_callback` should the
//! instance not turn logged in), a slider captcha is [`HeadlessError::CaptchaRequired`], an identity
//! check is [`HeadlessError::VerificationRequired`], staying on the form is
//! [`HeadlessError::BadCredentials`], and anything else past the deadline is
//! [`HeadlessError::Timeout`]. Each failure saves a screenshot and the text of every frame into the
//! work dir's `login-diagnostics/`. Nothing here retries: the gateway's auto-login decides that, and
//! never after a captcha or a verification. With [`BrowserOptions::visible`] the page is shown and
//! only the callback is waited for.
//!
//! Every locator is a setting ([`Locators`]). The browser process is always closed and waited for,
//! whatever happened; a fresh profile lives in a temporary directory removed afterwards, a
//! persistent one in the directory given.
//!
//! The parts, one job each:
//! * `options`: the locators, timeouts, browser options, credentials and target (plain data).
//! * `error`: [`HeadlessError`] and the [`Diagnostics`] saved with it.
//! * `flow`: the login steps on the login page.
//! * `driver`: the page driver (frames, isolated worlds, input events, the callback watch), with
//!   the script helpers of `prelude.js`.
//! * `browser`: the Chromium process (start, display check, shutdown).

mod browser;
mod driver;
mod error;
mod flow;
mod options;

pub use browser::has_display;
pub use error::{Diagnostics, HeadlessError};
pub use flow::login;
pub use options::{
    BrowserOptions, Credentials, DEFAULT_BROWSER, Locators, Profile, Target, Timeouts,
};
