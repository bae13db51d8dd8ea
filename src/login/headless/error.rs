//! How a headless login fails: [`HeadlessError`] for callers (one variant per outcome a person or
//! the auto-login service acts on differently, with what to do in its message), the
//! [`Diagnostics`] saved with it, and the flow's internal `Stop` before diagnostics are attached.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::lingma::LingmaError;

/// Files saved for diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub screenshot: Option<PathBuf>,
    pub text: Option<PathBuf>,
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.screenshot {
            parts.push(format!("screenshot {}", p.display()));
        }
        if let Some(p) = &self.text {
            parts.push(format!("page text {}", p.display()));
        }
        if !parts.is_empty() {
            write!(f, " [saved for diagnosis: {}]", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Why a headless login failed.
#[derive(Debug, Error)]
pub enum HeadlessError {
    #[error(
        "Chromium was not found at {0}: install it (Debian/Ubuntu: `apt-get install chromium`) or \
         point --browser, CHROME or AUTO_LOGIN_BROWSER at it"
    )]
    BrowserMissing(PathBuf),
    #[error("cannot start Chromium ({path}): {reason}")]
    Launch { path: PathBuf, reason: String },
    #[error(
        "--visible needs a display (DISPLAY or WAYLAND_DISPLAY); on a machine without one run \
         `lingma-gw login --no-browser` and open the URL on another machine"
    )]
    NoDisplay,
    #[error(
        "CaptchaRequired: the login page asks for a slider captcha (risk control). Automated login \
         stops here and is not retried, because retries make the checks stricter. Log in once by \
         hand: `lingma-gw login --instance {instance}` and open the URL in a browser (or add \
         --visible), then keep the session or export it with `lingma-gw session export`{diagnostics}"
    )]
    CaptchaRequired {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "VerificationRequired: the account must pass an identity check (SMS or e-mail code). \
         Automated login stops here and is not retried. Log in once by hand with \
         `lingma-gw login --instance {instance} --visible --persistent-profile` (the profile then \
         remembers this device) or `lingma-gw login --instance {instance}` and open the URL in a \
         browser{diagnostics}"
    )]
    VerificationRequired {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "BadCredentials: still on the login form after submitting, so the user name or password \
         was refused. Check the user name (--username, AUTO_LOGIN_USERNAME or the accounts file) and \
         the password (--password-stdin, the account's password_env or AUTO_LOGIN_PASSWORD). Not \
         retried, so the account is not locked{diagnostics}"
    )]
    BadCredentials {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "Timeout: {stage} did not happen within {}s. Check that this machine reaches the login \
         page, then try again (AUTO_LOGIN_TIMEOUT sets the limit){diagnostics}", after.as_secs()
    )]
    Timeout {
        stage: String,
        after: Duration,
        diagnostics: Diagnostics,
    },
    #[error("browser automation failed: {message}{diagnostics}")]
    Browser {
        message: String,
        diagnostics: Diagnostics,
    },
    #[error(transparent)]
    Lingma(#[from] LingmaError),
}

impl HeadlessError {
    /// A stable name for status endpoints and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BrowserMissing(_) => "browser_missing",
            Self::Launch { .. } => "browser_launch_failed",
            Self::NoDisplay => "no_display",
            Self::CaptchaRequired { .. } => "captcha_required",
            Self::VerificationRequired { .. } => "verification_required",
            Self::BadCredentials { .. } => "bad_credentials",
            Self::Timeout { .. } => "timeout",
            Self::Browser { .. } => "browser_error",
            Self::Lingma(_) => "lingma_error",
        }
    }

    /// Whether trying again can help. Never after a captcha, a verification or a refused
    /// password (retrying makes the login page's risk checks stricter and can lock the account),
    /// nor when the setup is wrong.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Browser { .. } | Self::Lingma(_) | Self::Launch { .. }
        )
    }

    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Self::CaptchaRequired { diagnostics, .. }
            | Self::VerificationRequired { diagnostics, .. }
            | Self::BadCredentials { diagnostics, .. }
            | Self::Timeout { diagnostics, .. }
            | Self::Browser { diagnostics, .. } => Some(diagnostics),
            _ => None,
        }
    }
}

/// Why the browser flow stopped (before diagnostics are attached).
#[derive(Debug)]
pub(super) enum Stop {
    Captcha,
    Verification,
    BadCredentials,
    Timeout(String, Duration),
    Cdp(String),
}

impl Stop {
    /// Names the diagnostics files.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Stop::Captcha => "captcha",
            Stop::Verification => "verification",
            Stop::BadCredentials => "bad-credentials",
            Stop::Timeout(..) => "timeout",
            Stop::Cdp(_) => "browser-error",
        }
    }

    pub(super) fn into_error(self, instance: &str, diagnostics: Diagnostics) -> HeadlessError {
        let instance = instance.to_string();
        match self {
            Stop::Captcha => HeadlessError::CaptchaRequired {
                instance,
                diagnostics,
            },
            Stop::Verification => HeadlessError::VerificationRequired {
                instance,
                diagnostics,
            },
            Stop::BadCredentials => HeadlessError::BadCredentials {
                instance,
                diagnostics,
            },
            Stop::Timeout(stage, after) => HeadlessError::Timeout {
                stage,
                after,
                diagnostics,
            },
            Stop::Cdp(message) => HeadlessError::Browser {
                message,
                diagnostics,
            },
        }
    }
}

/// For `map_err`: a DevTools failure, kept as its message.
pub(super) fn cdp(e: impl std::fmt::Display) -> Stop {
    Stop::Cdp(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        let d = Diagnostics::default();
        let captcha = HeadlessError::CaptchaRequired {
            instance: "i".into(),
            diagnostics: d.clone(),
        };
        assert!(!captcha.retryable());
        assert!(captcha.to_string().starts_with("CaptchaRequired"));
        assert!(captcha.to_string().contains("lingma-gw login --instance i"));
        assert!(
            !HeadlessError::BadCredentials {
                instance: "i".into(),
                diagnostics: d.clone()
            }
            .retryable()
        );
        assert!(
            HeadlessError::Timeout {
                stage: "x".into(),
                after: Duration::from_secs(1),
                diagnostics: d
            }
            .retryable()
        );
    }
}
