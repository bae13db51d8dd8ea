//! The page side of a headless login, knowing nothing of the login page itself: one page in the
//! browser that `browser.rs` started, its frames, scripts evaluated in each frame's isolated world,
//! real mouse and key events, a screenshot, and a watch on the page's requests for the instance's
//! login callback.
//!
//! Frames are reached through an isolated world per frame (`Page.createIsolatedWorld`), so page
//! scripts cannot interfere and nested frames work the same way as the top page (a cross-origin
//! login iframe too, because Chromium runs with site isolation off). Every evaluation starts with
//! the helpers in `prelude.js`.
//!
//! [`Session::close`] always closes the browser and waits for it, whatever state it is in.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::types::{Command, Method, MethodId};
use chromiumoxide::{Browser, Page};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::browser;
use super::error::{HeadlessError, Stop, cdp};
use super::options::BrowserOptions;
use crate::login::{CallbackParams, state_matches};
use crate::util::lock;

/// A raw DevTools command: keeps this driver independent of the generated builders.
#[derive(Debug)]
struct Raw {
    method: &'static str,
    params: Value,
}

impl serde::Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.params.serialize(s)
    }
}

impl Method for Raw {
    fn identifier(&self) -> MethodId {
        Cow::Borrowed(self.method)
    }
}

impl Command for Raw {
    type Response = Value;
}

/// Helpers injected into every evaluation (an isolated world, so the page cannot see them):
/// visibility, `text=` and `>> nth=` selectors, the first visible match of a list.
const PRELUDE: &str = include_str!("prelude.js");

/// `body` as one expression, run with the prelude in scope.
fn js(body: &str) -> String {
    format!("(() => {{ {PRELUDE}\n{body} }})()")
}

fn js_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

fn js_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A frame found in the frame tree.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    id: String,
    pub(super) url: String,
}

/// A JS object handle.
#[derive(Debug, Clone)]
pub(super) struct Handle {
    object_id: String,
}

/// One running browser with its one page.
pub(super) struct Session {
    browser: tokio::sync::Mutex<Browser>,
    handler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    page: Page,
    callback_rx: watch::Receiver<Option<CallbackParams>>,
    callback_tx: watch::Sender<Option<CallbackParams>>,
    worlds: Mutex<HashMap<String, i64>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held for its drop: a fresh profile is removed after the browser is gone.
    _profile: Option<tempfile::TempDir>,
}

impl Session {
    /// Starts Chromium and opens a blank page in it.
    pub(super) async fn launch(opts: &BrowserOptions) -> Result<Self, HeadlessError> {
        let browser::Started {
            mut browser,
            handler,
            profile,
        } = browser::launch(opts).await?;
        let page = match browser.new_page("about:blank").await {
            Ok(p) => p,
            Err(e) => {
                browser::shutdown(&mut browser, handler).await;
                return Err(HeadlessError::Launch {
                    path: opts.executable.clone(),
                    reason: format!("cannot open a page: {e}"),
                });
            }
        };
        let (callback_tx, callback_rx) = watch::channel(None);
        Ok(Session {
            browser: tokio::sync::Mutex::new(browser),
            handler: Mutex::new(Some(handler)),
            page,
            callback_rx,
            callback_tx,
            worlds: Mutex::new(HashMap::new()),
            watcher: Mutex::new(None),
            _profile: profile,
        })
    }

    /// Closes the browser and waits for it, whatever state it is in.
    pub(super) async fn close(&self) {
        if let Some(w) = lock(&self.watcher).take() {
            w.abort();
        }
        let handler = lock(&self.handler).take();
        let mut browser = self.browser.lock().await;
        if let Some(h) = handler {
            browser::shutdown(&mut browser, h).await;
        }
    }

    async fn raw(&self, method: &'static str, params: Value) -> Result<Value, Stop> {
        self.page
            .execute(Raw { method, params })
            .await
            .map(|r| r.result)
            .map_err(|e| Stop::Cdp(format!("{method}: {e}")))
    }

    /// Watches the page's requests for the login callback (before anything is loaded).
    pub(super) async fn start_watching(&self, http_port: u16, expected: &str) -> Result<(), Stop> {
        let mut events = self
            .page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(cdp)?;
        let _ = self.raw("Network.enable", json!({})).await;
        let tx = self.callback_tx.clone();
        let expected = expected.to_string();
        let task = tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let Some(cb) = match_callback(&ev.request.url, http_port, &expected) {
                    tracing::debug!("saw the login callback request");
                    let _ = tx.send(Some(cb));
                    break;
                }
            }
        });
        *lock(&self.watcher) = Some(task);
        Ok(())
    }

    /// The login callback, once the watcher has seen it.
    pub(super) fn callback(&self) -> Option<CallbackParams> {
        self.callback_rx.borrow().clone()
    }

    /// A receiver to wait on for [`Session::callback`].
    pub(super) fn callback_watch(&self) -> watch::Receiver<Option<CallbackParams>> {
        self.callback_rx.clone()
    }

    pub(super) async fn navigate(&self, url: &str, limit: Duration) -> Result<(), Stop> {
        match tokio::time::timeout(limit, self.page.goto(url)).await {
            Ok(Ok(_)) => Ok(()),
            // A navigation that ends elsewhere (a redirect to the callback) is not an error here.
            Ok(Err(e)) if self.callback().is_some() => {
                tracing::debug!(error = %e, "navigation ended at the callback");
                Ok(())
            }
            Ok(Err(e)) => Err(Stop::Cdp(format!("cannot open the login page: {e}"))),
            Err(_) => Err(Stop::Timeout("loading the login page".into(), limit)),
        }
    }

    pub(super) async fn frames(&self) -> Result<Vec<Frame>, Stop> {
        let tree = self.raw("Page.getFrameTree", json!({})).await?;
        let mut out = Vec::new();
        fn walk(node: &Value, out: &mut Vec<Frame>) {
            if let Some(f) = node.get("frame") {
                out.push(Frame {
                    id: f["id"].as_str().unwrap_or_default().to_string(),
                    url: f["url"].as_str().unwrap_or_default().to_string(),
                });
            }
            if let Some(children) = node.get("childFrames").and_then(Value::as_array) {
                for c in children {
                    walk(c, out);
                }
            }
        }
        walk(&tree["frameTree"], &mut out);
        Ok(out)
    }

    /// The child frame whose owner element is `sel`'s match in the top page, if any. `frames` is
    /// [`Session::frames`], the top page first.
    pub(super) async fn frame_of_element(
        &self,
        frames: &[Frame],
        sel: &str,
    ) -> Result<Option<Frame>, Stop> {
        let Some(top) = frames.first() else {
            return Ok(None);
        };
        let r = self
            .eval(top, &js(&format!("return __find({});", js_str(sel))), false)
            .await?;
        let Some(obj) = r["objectId"].as_str() else {
            return Ok(None);
        };
        let node = self
            .raw("DOM.describeNode", json!({"objectId": obj}))
            .await?;
        if let Some(id) = node["node"]["frameId"].as_str()
            && let Some(f) = frames.iter().skip(1).find(|f| f.id == id)
        {
            return Ok(Some(f.clone()));
        }
        // Match the element against each frame's owner element.
        let backend = node["node"]["backendNodeId"].as_i64();
        for f in frames.iter().skip(1) {
            let owner = self
                .raw("DOM.getFrameOwner", json!({"frameId": f.id}))
                .await
                .ok()
                .and_then(|o| o["backendNodeId"].as_i64());
            if owner.is_some() && owner == backend {
                return Ok(Some(f.clone()));
            }
        }
        Ok(None)
    }

    async fn world(&self, frame: &Frame) -> Result<i64, Stop> {
        if let Some(id) = lock(&self.worlds).get(&frame.id) {
            return Ok(*id);
        }
        let r = self
            .raw(
                "Page.createIsolatedWorld",
                json!({"frameId": frame.id, "worldName": "lingma-gw", "grantUniveralAccess": true}),
            )
            .await?;
        let id = r["executionContextId"]
            .as_i64()
            .ok_or_else(|| Stop::Cdp("no execution context for a frame".into()))?;
        lock(&self.worlds).insert(frame.id.clone(), id);
        Ok(id)
    }

    /// Evaluates in a frame's isolated world; a world lost to a navigation is made again once.
    async fn eval(&self, frame: &Frame, expr: &str, by_value: bool) -> Result<Value, Stop> {
        for attempt in 0..2 {
            let ctx = self.world(frame).await?;
            let r = self
                .raw(
                    "Runtime.evaluate",
                    json!({"expression": expr, "contextId": ctx, "returnByValue": by_value}),
                )
                .await;
            match r {
                Ok(v) => {
                    if let Some(ex) = v.get("exceptionDetails") {
                        return Err(Stop::Cdp(format!("script error: {ex}")));
                    }
                    return Ok(v["result"].clone());
                }
                Err(e) if attempt == 0 => {
                    tracing::trace!(error = ?e, "re-creating a frame's world");
                    lock(&self.worlds).remove(&frame.id);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Stop::Cdp("evaluation failed".into()))
    }

    async fn eval_value(&self, frame: &Frame, body: &str) -> Result<Value, Stop> {
        Ok(self.eval(frame, &js(body), true).await?["value"].clone())
    }

    pub(super) async fn visible(&self, frame: &Frame, sels: &[String]) -> Result<bool, Stop> {
        let v = self
            .eval_value(frame, &format!("return !!__first({});", js_list(sels)))
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    pub(super) async fn element(
        &self,
        frame: &Frame,
        sels: &[String],
    ) -> Result<Option<Handle>, Stop> {
        let r = self
            .eval(
                frame,
                &js(&format!("return __first({});", js_list(sels))),
                false,
            )
            .await?;
        Ok(r["objectId"].as_str().map(|id| Handle {
            object_id: id.to_string(),
        }))
    }

    pub(super) async fn text(&self, frame: &Frame) -> String {
        self.eval_value(
            frame,
            "return document.body ? document.body.innerText : '';",
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    async fn call_on(&self, h: &Handle, function: &str) -> Result<Value, Stop> {
        let r = self
            .raw(
                "Runtime.callFunctionOn",
                json!({"objectId": h.object_id, "functionDeclaration": function, "returnByValue": true}),
            )
            .await?;
        Ok(r["result"]["value"].clone())
    }

    /// A real mouse click at the element's centre; a script click if it has no box.
    pub(super) async fn click(&self, h: &Handle) -> Result<(), Stop> {
        let _ = self
            .raw(
                "DOM.scrollIntoViewIfNeeded",
                json!({"objectId": h.object_id}),
            )
            .await;
        let quads = self
            .raw("DOM.getContentQuads", json!({"objectId": h.object_id}))
            .await
            .ok()
            .and_then(|v| v["quads"].as_array().and_then(|q| q.first().cloned()));
        let point = quads.and_then(|q| {
            let q: Vec<f64> = q.as_array()?.iter().filter_map(Value::as_f64).collect();
            (q.len() == 8).then(|| {
                (
                    (q[0] + q[2] + q[4] + q[6]) / 4.0,
                    (q[1] + q[3] + q[5] + q[7]) / 4.0,
                )
            })
        });
        match point {
            Some((x, y)) => {
                for (kind, extra) in [
                    ("mouseMoved", json!({})),
                    ("mousePressed", json!({"button": "left", "clickCount": 1})),
                    ("mouseReleased", json!({"button": "left", "clickCount": 1})),
                ] {
                    let mut p = json!({"type": kind, "x": x, "y": y});
                    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
                        p.extend(e.clone());
                    }
                    self.raw("Input.dispatchMouseEvent", p).await?;
                }
                Ok(())
            }
            None => self
                .call_on(
                    h,
                    "function() { if (this.focus) this.focus(); this.click(); }",
                )
                .await
                .map(|_| ()),
        }
    }

    /// Clicks the field, clears it, types `text` with real key events 50–100 ms apart, and
    /// falls back to setting the value if the page swallowed keys.
    pub(super) async fn fill(
        &self,
        frame: &Frame,
        sels: &[String],
        text: &str,
    ) -> Result<(), Stop> {
        let field = self
            .element(frame, sels)
            .await?
            .ok_or_else(|| Stop::Cdp(format!("no visible field for {}", js_list(sels))))?;
        self.click(&field).await?;
        self.call_on(
            &field,
            "function() { if (document.activeElement !== this) this.focus(); \
             if (this.select) this.select(); this.value = ''; }",
        )
        .await?;
        for c in text.chars() {
            let s = c.to_string();
            self.raw(
                "Input.dispatchKeyEvent",
                json!({"type": "keyDown", "text": s, "unmodifiedText": s, "key": s}),
            )
            .await?;
            self.raw("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": s}))
                .await?;
            let pause = rand::rng().random_range(50..=100);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let typed = self
            .call_on(&field, "function() { return (this.value || '').length; }")
            .await?;
        if typed.as_u64() != Some(text.chars().count() as u64) {
            tracing::debug!("typed keys did not land in the field; setting its value");
            let set = format!(
                "function() {{ this.value = {}; this.dispatchEvent(new Event('input', {{bubbles: true}})); \
                 this.dispatchEvent(new Event('change', {{bubbles: true}})); }}",
                serde_json::to_string(text).unwrap_or_else(|_| "''".into())
            );
            self.call_on(&field, &set).await?;
        }
        Ok(())
    }

    /// The PNG of what the page shows now.
    pub(super) async fn screenshot(&self) -> Result<Vec<u8>, Stop> {
        let v = self
            .raw("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = v["data"]
            .as_str()
            .ok_or_else(|| Stop::Cdp("no screenshot data".into()))?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(cdp)
    }

    pub(super) async fn press_enter(&self) -> Result<(), Stop> {
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({"type": kind, "key": "Enter", "code": "Enter",
                               "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
            if kind == "keyDown" {
                p["text"] = json!("\r");
            }
            self.raw("Input.dispatchKeyEvent", p).await?;
        }
        Ok(())
    }
}

/// The callback's values when `url` is the instance's `/auth/callback` for this login.
fn match_callback(url: &str, http_port: u16, expected: &str) -> Option<CallbackParams> {
    let u = url::Url::parse(url).ok()?;
    let host_ok = matches!(u.host_str(), Some("127.0.0.1") | Some("localhost"));
    if u.scheme() != "http" || !host_ok || u.port_or_known_default() != Some(http_port) {
        return None;
    }
    if u.path() != "/auth/callback" {
        return None;
    }
    let cb = CallbackParams::parse(url).ok()?;
    state_matches(&cb.state, expected).then_some(cb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_matching() {
        let ok = "http://127.0.0.1:37510/auth/callback?state=abc&auth=a&token=t";
        assert!(match_callback(ok, 37510, "abc").is_some());
        assert!(
            match_callback(
                "http://localhost:37510/auth/callback?state=2-abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_some()
        );
        assert!(match_callback(ok, 37511, "abc").is_none());
        assert!(match_callback(ok, 37510, "abd").is_none());
        assert!(
            match_callback(
                "http://evil.example:37510/auth/callback?state=abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_none()
        );
        assert!(
            match_callback(
                "http://127.0.0.1:37510/other?state=abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_none()
        );
    }
}
