//! What a headless login is told: the page locators, the timeouts, the browser to start and its
//! profile, the account, and the instance to log in. Plain data with the defaults written out;
//! nothing here touches a browser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lingma::LingmaClient;
use crate::login::Secret;

/// Where Debian's `chromium` package puts the browser.
pub const DEFAULT_BROWSER: &str = "/usr/bin/chromium";

/// Where to look for the page elements; every list is tried in order. The defaults are the
/// Alibaba Cloud login widget's known selectors (the settings are listed in `docs/login.md`).
///
/// A selector is CSS, or `text=EXACT` (an element whose text is exactly that), or `CSS >> nth=N`
/// (the N-th match, from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locators {
    /// The login iframe.
    pub frame: Vec<String>,
    /// Hosts whose frames count as the login frame when their path has `login`.
    pub frame_hosts: Vec<String>,
    /// Unambiguous password-login tabs: clicked as soon as the account field is not visible.
    pub password_tab: Vec<String>,
    /// Positional fallbacks: clicked only when the field is still not visible after
    /// [`Timeouts::tab_wait`].
    pub password_tab_fallback: Vec<String>,
    /// Text of the RAM-user interstitial, and the element that leaves it.
    pub ram_text: Vec<String>,
    pub main_account: Vec<String>,
    pub username: Vec<String>,
    pub password: Vec<String>,
    pub submit: Vec<String>,
    /// Slider-captcha elements, checked in every frame.
    pub captcha: Vec<String>,
    pub captcha_text: Vec<String>,
    /// Identity verification: URL fragments and page texts.
    pub verification_url: Vec<String>,
    pub verification_text: Vec<String>,
    /// A visible login error message (no confirmed selector exists; these are guesses that make a
    /// refused password fail fast instead of at the callback deadline).
    pub error: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for Locators {
    fn default() -> Self {
        Self {
            frame: strings(&[
                "#alibaba-login-iframe iframe",
                "iframe#alibaba-login-box",
                "iframe[name=alibaba-login-box]",
            ]),
            frame_hosts: strings(&["passport.aliyun.com", "passport.alibabacloud.com"]),
            password_tab: strings(&["text=账密登录", "text=密码登录"]),
            password_tab_fallback: strings(&["div.tabs-item >> nth=1", "#J_Quick2Static"]),
            ram_text: strings(&["RAM 用户登录"]),
            main_account: strings(&["text=主账号登录"]),
            username: strings(&[
                "#fm-login-id",
                "input[name=fm-login-id]",
                "input[name=loginId]",
            ]),
            password: strings(&[
                "#fm-login-password",
                "input[name=fm-login-password]",
                "input[type=password]",
            ]),
            submit: strings(&[
                "#fm-login-submit",
                "button.fm-submit",
                ".fm-btn button",
                "button.password-login",
                "button[type=submit]",
            ]),
            captcha: strings(&[
                "#nc_1_n1z",
                "#nc_1_wrapper",
                ".nc-container",
                "#nocaptcha",
                "iframe#baxia-dialog-content",
                ".baxia-dialog",
            ]),
            captcha_text: strings(&["unusual traffic", "请按住滑块", "拖动滑块"]),
            verification_url: strings(&["/iv/", "havana_iv_token"]),
            verification_text: strings(&[
                "安全验证",
                "身份验证",
                "短信验证码",
                "验证安全邮箱",
                "Security Verification",
            ]),
            error: strings(&[
                "#login-error",
                ".login-error",
                ".fm-error",
                ".login-error-msg",
            ]),
        }
    }
}

/// How long each stage of the browser flow may take. The defaults are the limits known to suit
/// the real login page; [`Timeouts::with_total`] caps them by the whole-login limit
/// (`AUTO_LOGIN_TIMEOUT`, `--timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub navigation: Duration,
    /// Finding the login frame and the account field.
    pub field: Duration,
    /// How long the QR default may stay before the positional tab fallbacks are clicked.
    pub tab_wait: Duration,
    /// From submit to the callback.
    pub callback: Duration,
    /// The whole browser flow.
    pub total: Duration,
    /// From the callback to `auth/status` 2.
    pub auth_status: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            navigation: Duration::from_secs(30),
            field: Duration::from_secs(20),
            tab_wait: Duration::from_secs(5),
            callback: Duration::from_secs(60),
            total: Duration::from_secs(180),
            auth_status: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The defaults, with every stage capped by a whole-flow limit.
    pub fn with_total(total: Duration) -> Self {
        let d = Self::default();
        Self {
            navigation: d.navigation.min(total),
            field: d.field.min(total),
            tab_wait: d.tab_wait.min(total),
            callback: d.callback.min(total),
            total,
            auth_status: d.auth_status,
        }
    }
}

/// The browser profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A new temporary profile, removed afterwards.
    Fresh,
    /// A profile kept in this directory (per account: fewer verification prompts).
    Persistent(PathBuf),
}

/// How to run the browser for one login.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub executable: PathBuf,
    pub profile: Profile,
    pub locators: Locators,
    pub timeouts: Timeouts,
    /// Show the browser and only wait for the callback (the person logs in).
    pub visible: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            executable: PathBuf::from(DEFAULT_BROWSER),
            profile: Profile::Fresh,
            locators: Locators::default(),
            timeouts: Timeouts::default(),
            visible: false,
        }
    }
}

/// The account to type into the form.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// What to log in.
pub struct Target<'a> {
    pub client: &'a LingmaClient,
    pub instance: &'a str,
    pub http_port: u16,
    /// Screenshots and page texts of failures go to `<work_dir>/login-diagnostics/`.
    pub work_dir: &'a Path,
    /// Stops the flow early (gateway shutdown); the browser is still closed and waited for.
    pub cancel: Option<&'a tokio_util::sync::CancellationToken>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_locators_follow_the_protocol() {
        let l = Locators::default();
        assert_eq!(l.frame[1], "iframe#alibaba-login-box");
        assert_eq!(l.username[0], "#fm-login-id");
        assert_eq!(l.password[0], "#fm-login-password");
        assert!(l.submit.contains(&"button.fm-submit".to_string()));
        assert!(l.captcha.contains(&"#nc_1_n1z".to_string()));
        let t = Timeouts::with_total(Duration::from_secs(10));
        assert_eq!(t.callback, Duration::from_secs(10));
        assert_eq!(t.field, Duration::from_secs(10));
    }
}
