//! The local HTTP server on `--httpPort` (docs/simulator.md, "The HTTP side"): the OAuth return
//! `/auth/callback` and a test login page shaped like the Alibaba Cloud login widget, so a headless
//! browser driver is exercised against the same structure: an outer page with the
//! `#alibaba-login-box` iframe, a QR tab shown by default, a 账密登录 tab with the
//! `#fm-login-id` / `#fm-login-password` / `button.fm-submit` form, a slider-captcha mode and an
//! identity-verification mode. Only `localhost` / `127.0.0.1` Host headers are served.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Json, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use super::config::LoginChallenge;
use super::state::{CallbackError, Shared, account_identity, encode_b64};
use super::store::{UserInfo, random_token};

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let app = Router::new()
        .route("/auth/callback", get(callback))
        .route("/lingma/login", get(login_page))
        .route("/lingma/login/box", get(login_box))
        .route("/lingma/login/submit", post(login_submit))
        .route("/iv/verify", get(verify_page))
        .route("/", get(|| async { "Lingma local server (simulator)\n" }))
        .layer(middleware::from_fn(host_guard))
        .with_state(shared.clone());
    let shutdown = shared.shutdown.clone();
    let kill = shared.kill.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
    tokio::select! {
        r = server => if let Err(e) = r {
            shared.log.warn(&format!("http server failed: {e}"));
        },
        _ = kill.cancelled() => {}
    }
}

/// `localhost` and `127.0.0.1`, with or without a port.
pub fn host_allowed(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

async fn host_guard(req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(host_allowed);
    if !ok {
        return (StatusCode::FORBIDDEN, "forbidden host\n").into_response();
    }
    next.run(req).await
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string literal that is safe inside a `<script>` element.
fn js_str(s: &str) -> String {
    serde_json::Value::String(s.to_string())
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}.tabs-item{{display:inline-block;\
         padding:6px 12px;cursor:pointer;border-bottom:2px solid transparent}}\
         .tabs-item.active{{border-color:#1677ff}}.login-error{{color:#c00}}\
         #nc_1_wrapper{{margin-top:1em;border:1px solid #ccc;padding:8px;width:300px}}\
         #nc_1_n1z{{display:inline-block;width:40px;background:#eee;text-align:center}}</style>\
         </head><body>{body}</body></html>\n",
        esc(title)
    )
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (state, auth, token) = (get("state"), get("auth"), get("token"));
    if state.is_empty() || auth.is_empty() || token.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "登录失败",
                "<h1>登录失败</h1><p id=\"error\">missing state, auth or token</p>",
            )),
        )
            .into_response();
    }
    match shared.complete_callback(state, auth, token) {
        Ok(()) => Html(page(
            "登录成功",
            "<h1 id=\"login-success\">登录成功</h1><p>Login successful. You can close this page \
             and return to the IDE.</p>",
        ))
        .into_response(),
        Err(e) => {
            shared.log.warn(&format!("auth callback rejected: {e}"));
            let status = match e {
                CallbackError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = format!(
                "<h1>登录失败</h1><p id=\"error\" data-code=\"{}\">{}</p>",
                e.code(),
                esc(&e.to_string())
            );
            (status, Html(page("登录失败", &body))).into_response()
        }
    }
}

async fn login_page(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let state = q
        .get("state")
        .or_else(|| q.get("nonce"))
        .cloned()
        .unwrap_or_default();
    let src = format!("/lingma/login/box?state={}", urlencode(&state));
    Html(page(
        "通义灵码 - 登录",
        &format!(
            "<h1>通义灵码</h1><p>Sign in with your Alibaba Cloud account (Lingma simulator).</p>\
             <div id=\"alibaba-login-iframe\"><iframe id=\"alibaba-login-box\" \
             name=\"alibaba-login-box\" src=\"{}\" width=\"420\" height=\"460\" \
             frameborder=\"0\"></iframe></div>",
            esc(&src)
        ),
    ))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn login_box(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let state = q.get("state").cloned().unwrap_or_default();
    let body = format!(
        r#"<div class="login-box" id="login">
<div class="tabs"><div class="tabs-item active" id="tab-qr" onclick="showTab('qr')">扫码登录</div><div class="tabs-item" id="tab-password" onclick="showTab('password')">账密登录</div></div>
<div id="qr-panel" class="qrcode-login"><div class="qrcode-img" style="width:160px;height:160px;background:repeating-linear-gradient(45deg,#000 0 6px,#fff 6px 12px)"></div><p>请使用阿里云 App 扫码登录</p></div>
<div id="password-panel" class="password-login" style="display:none">
<form id="login-form" onsubmit="return submitLogin(event)">
<div class="fm-field"><input id="fm-login-id" name="fm-login-id" type="text" autocomplete="username" placeholder="账号名/邮箱/手机号"></div>
<div class="fm-field"><input id="fm-login-password" name="fm-login-password" type="password" autocomplete="current-password" placeholder="请输入登录密码"></div>
<div class="fm-btn"><button type="submit" class="fm-button fm-submit password-login" id="fm-login-submit">登录</button></div>
<div id="login-error" class="login-error" style="display:none"></div>
</form>
<div id="nc_1_wrapper" class="nc-container" style="display:none"><span id="nc_1_n1z" class="nc_iconfont btn_slide">&gt;&gt;</span> <span class="nc-lang-cnt">请按住滑块，拖动到最右边</span></div>
</div></div>
<script>
const STATE = {state};
function showTab(name) {{
  document.getElementById('qr-panel').style.display = name === 'qr' ? '' : 'none';
  document.getElementById('password-panel').style.display = name === 'qr' ? 'none' : '';
  document.getElementById('tab-qr').classList.toggle('active', name === 'qr');
  document.getElementById('tab-password').classList.toggle('active', name !== 'qr');
}}
function showError(text) {{
  const e = document.getElementById('login-error');
  e.textContent = text;
  e.style.display = '';
}}
async function submitLogin(ev) {{
  if (ev) ev.preventDefault();
  const body = {{
    state: STATE,
    loginId: document.getElementById('fm-login-id').value,
    password: document.getElementById('fm-login-password').value,
  }};
  try {{
    const r = await fetch('/lingma/login/submit', {{
      method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify(body),
    }});
    const j = await r.json();
    if (j.result === 'ok' || j.result === 'verification') {{
      window.top.location.href = j.redirect;
    }} else if (j.result === 'captcha') {{
      document.getElementById('nc_1_wrapper').style.display = '';
    }} else {{
      showError(j.message || '登录失败');
    }}
  }} catch (e) {{
    showError('网络错误: ' + e);
  }}
  return false;
}}
</script>"#,
        state = js_str(&state)
    );
    Html(page("登录", &body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Submit {
    #[serde(default)]
    state: String,
    #[serde(default)]
    login_id: String,
    #[serde(default)]
    password: String,
}

async fn login_submit(State(shared): State<Arc<Shared>>, Json(s): Json<Submit>) -> Response {
    let fail = |msg: &str| Json(json!({"result": "error", "message": msg})).into_response();
    if shared.nonce_known(&s.state).is_err() {
        return fail("登录已失效，请重新发起登录 (unknown or used login state)");
    }
    let login_id = s.login_id.trim();
    let Some(account) = shared
        .cfg
        .accounts
        .iter()
        .find(|a| a.username.eq_ignore_ascii_case(login_id))
    else {
        shared
            .log
            .info(&format!("login page: unknown account {login_id:?}"));
        return fail("账号名或登录密码不正确");
    };
    if account.password != s.password {
        shared
            .log
            .info(&format!("login page: wrong password for {login_id:?}"));
        return fail("账号名或登录密码不正确");
    }
    let challenge = account.challenge.unwrap_or(shared.cfg.login_challenge);
    match challenge {
        LoginChallenge::Captcha => {
            shared.log.info("login page: slider captcha shown");
            Json(json!({"result": "captcha"})).into_response()
        }
        LoginChallenge::Verification => {
            shared
                .log
                .info("login page: identity verification required");
            let redirect = format!(
                "/iv/verify?havana_iv_token={}&state={}",
                random_token(""),
                urlencode(&s.state)
            );
            Json(json!({"result": "verification", "redirect": redirect})).into_response()
        }
        LoginChallenge::None => {
            let (uid, aid, name) = account_identity(&account.username);
            let user = UserInfo::new(&uid, &aid, &name);
            let auth = encode_b64(&format!("{uid}\n{aid}\n{name}"));
            let token = encode_b64(&format!(
                "{}\n{}\n{}",
                user.security_oauth_token, user.refresh_token, user.expire_time
            ));
            let redirect = format!(
                "http://127.0.0.1:{}/auth/callback?state={}&auth={}&token={}",
                shared.http_port,
                urlencode(&s.state),
                urlencode(&auth),
                urlencode(&token)
            );
            let mut headers = HeaderMap::new();
            // The cookie the real passport sets once the password is accepted.
            if let Ok(v) = HeaderValue::from_str(&format!(
                "login_aliyunid_ticket={}; Path=/",
                random_token("")
            )) {
                headers.insert(header::SET_COOKIE, v);
            }
            (headers, Json(json!({"result": "ok", "redirect": redirect}))).into_response()
        }
    }
}

async fn verify_page() -> Html<String> {
    Html(page(
        "安全验证",
        "<h1>安全验证</h1><p>Security Verification: 为了您的账号安全，请输入短信验证码 \
         (the simulator never completes this step).</p>\
         <input id=\"sms-code\" placeholder=\"短信验证码\"><button id=\"sms-submit\">确定</button>",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(host_allowed("127.0.0.1:37510"));
        assert!(host_allowed("localhost"));
        assert!(host_allowed("LOCALHOST:1"));
        assert!(!host_allowed("evil.example:37510"));
        assert!(!host_allowed("127.0.0.1.evil.example"));
        assert!(!host_allowed(""));
    }

    #[test]
    fn script_strings_cannot_close_the_script() {
        assert!(!js_str("</script>").contains('<'));
        assert_eq!(esc("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
    }
}
